//! The config source and hot reload: the static file is watched (and SIGHUP forces a reload);
//! a new file is parsed, validated and built into tables before it is swapped in atomically.
//! An invalid file is logged with every problem and the running config stays in force.

pub mod xds;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notify::Watcher;
use oxidecar_xds::Snapshot;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use crate::tables::Tables;

/// The config every `oxidecar run` without `--config` starts from.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// Where the config comes from and which version is running.
#[derive(Debug)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    /// Increments on every successful (re)load.
    pub version: AtomicU64,
}

impl ConfigSource {
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "embedded default".to_string(),
        }
    }

    /// Reads and validates the config; every problem is listed, each naming file and path.
    pub fn load(&self) -> Result<Snapshot, Vec<String>> {
        let snapshot = match &self.path {
            Some(path) => oxidecar_xds::load_file(path).map_err(|e| e.problems()),
            None => oxidecar_xds::parse_str(EMBEDDED_DEFAULT)
                .map_err(|errs| errs.iter().map(|e| format!("embedded default: {e}")).collect()),
        };
        // Under Istio's injector, the pod's identity for the metric labels comes from its variables.
        snapshot.map(|mut s| {
            s.node = std::mem::take(&mut s.node).with_env_defaults(|k| std::env::var(k).ok());
            s
        })
    }
}

/// Loads the file again and swaps it in if it is valid; returns whether it was applied.
pub fn reload(shared: &Shared, source: &ConfigSource) -> bool {
    let result = source.load().and_then(|snapshot| {
        let old = shared.tables.load();
        if *old.snapshot == snapshot {
            return Ok(None);
        }
        warn_on_listener_changes(&old.snapshot, &snapshot);
        Tables::build(Arc::new(snapshot), Some(&old), None).map(Some).map_err(|e| vec![e.to_string()])
    });
    match result {
        Ok(None) => {
            tracing::debug!(source = %source.describe(), "config unchanged");
            false
        }
        Ok(Some(tables)) => {
            shared.tables.store(Arc::new(tables));
            let version = source.version.fetch_add(1, Ordering::SeqCst) + 1;
            shared.metrics.config_reloads.with_label_values(&["success"]).inc();
            tracing::info!(source = %source.describe(), version, "config reloaded");
            true
        }
        Err(problems) => {
            shared.metrics.config_reloads.with_label_values(&["failure"]).inc();
            for p in &problems {
                tracing::warn!(problem = %p, "config rejected");
            }
            tracing::warn!(source = %source.describe(), errors = problems.len(), "invalid config; keeping the running config");
            false
        }
    }
}

/// Listener sockets are bound at start-up; address changes and new listeners need a restart.
pub(crate) fn warn_on_listener_changes(old: &Snapshot, new: &Snapshot) {
    for l in &new.listeners {
        match old.listeners.iter().find(|o| o.name == l.name) {
            Some(o) if o.address != l.address => tracing::warn!(
                listener = %l.name, old = %o.address, new = %l.address,
                "listener address changes take effect after a restart"
            ),
            None => tracing::warn!(listener = %l.name, address = %l.address, "new listeners take effect after a restart"),
            _ => {}
        }
    }
    if old.admin != new.admin {
        tracing::warn!("admin and metrics address changes take effect after a restart");
    }
}

/// Reloads on file changes and on SIGHUP until `stop` is cancelled.
pub async fn watch(shared: Arc<Shared>, source: Arc<ConfigSource>, stop: CancellationToken) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by editing the file");
            None
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = source.path.as_deref().and_then(|path| file_watcher(path, tx));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading config");
                reload(&shared, &source);
            }
            Some(()) = rx.recv() => {
                // Editors write in several steps; let them finish, then reload once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while rx.try_recv().is_ok() {}
                reload(&shared, &source);
            }
        }
    }
}

/// Watches the file's directory (editors replace files by rename) and signals changes to `path`.
fn file_watcher(path: &Path, tx: tokio::sync::mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = path.file_name()?.to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()));
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP"))
    .ok()?;
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

/// How often the identity files are checked for rotation.
const IDENTITY_POLL: Duration = Duration::from_millis(500);

/// Reloads the workload identity when its files change (checked by modification time and size,
/// which also catches Kubernetes' symlink swaps of mounted secrets). A bad or half-written set is
/// refused and the identity in force stays; the next change is tried again.
pub async fn watch_identity(shared: Arc<Shared>, stop: CancellationToken) {
    let stamp = |id: &oxidecar_xds::model::Identity| {
        [&id.cert_chain, &id.private_key, &id.trust_bundle]
            .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len())))
    };
    let mut seen = shared.tables.load().snapshot.identity.clone().map(|id| (stamp(&id), id));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(IDENTITY_POLL) => {}
        }
        let Some(id) = shared.tables.load().snapshot.identity.clone() else { continue };
        let now = stamp(&id);
        if seen.as_ref().is_some_and(|(s, old)| *s == now && *old == id) {
            continue;
        }
        match crate::tls::WorkloadCerts::from_files(&id).map_err(|e| e.to_string()).and_then(|c| shared.tls.set_identity(c).map_err(|e| e.to_string())) {
            Ok(()) => tracing::info!("workload identity reloaded from its files"),
            Err(e) => {
                shared.tls.metrics.identity_updates.with_label_values(&["rejected"]).inc();
                tracing::warn!(error = %e, "new identity files refused; keeping the identity in force");
            }
        }
        seen = Some((now, id));
    }
}
