//! Start-up wiring: config → tables → Pingora listeners, plus the control runtime (admin, metrics,
//! reload, readiness) and the SIGTERM drain.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use oxidecar_xds::Snapshot;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::control::{self, ConfigSource};
use crate::http::MeshHttp;
use crate::listener::MeshListener;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::invoke::{InProcessListeners, MeshInvoker};
use crate::tables::{LocalRuntime, Tables};
use oxidecar_runtime_apis::{LoopbackInvoker, Runtime, RuntimeConfig};

/// Upstream connections kept alive per process (Pingora's default, 128, is small for a sidecar).
const UPSTREAM_POOL_SIZE: usize = 1024;

/// What `oxidecar run` needs beyond the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    /// The runtime API's settings (app id, ports, components).
    pub runtime: RuntimeConfig,
    pub concurrency: usize,
    pub admin_port: Option<u16>,
    pub metrics_port: Option<u16>,
    /// Take the mesh config from xDS.
    pub xds: Option<XdsOptions>,
}

/// `--xds-address` and friends, as given.
#[derive(Debug, Clone)]
pub struct XdsOptions {
    pub address: String,
    pub sds_address: Option<String>,
    pub delta: bool,
    pub root_ca: PathBuf,
    pub token: PathBuf,
}

impl XdsOptions {
    fn ads_config(&self) -> Result<oxidecar_xds::ads::AdsConfig, String> {
        use oxidecar_xds::ads::XdsAddress;
        let parse = |s: &str| XdsAddress::parse(s, self.root_ca.clone(), self.token.clone());
        Ok(oxidecar_xds::ads::AdsConfig {
            address: parse(&self.address).map_err(|e| format!("--xds-address: {e}"))?,
            sds_address: self.sds_address.as_deref().map(parse).transpose().map_err(|e| format!("--sds-address: {e}"))?,
            delta: self.delta,
            node: oxidecar_xds::ads::node_from_env(|k| std::env::var(k).ok(), std::env::vars()),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            held: oxidecar_xds::ads::HeldView::default(),
        })
    }
}

/// Why start-up failed; `main` prints it and exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct StartupError(pub Vec<String>);

fn with_port(mut addr: SocketAddr, port: Option<u16>) -> SocketAddr {
    if let Some(p) = port {
        addr.set_port(p);
    }
    addr
}

/// Binds an operator endpoint now, so a busy port is a start-up error naming it.
fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("{what} {addr}: cannot listen: {e}"))?;
    l.set_nonblocking(true).map_err(|e| format!("{what} {addr}: {e}"))?;
    Ok(l)
}

/// Checks that every listener address is free before Pingora binds it (Pingora would panic).
fn check_listeners(snapshot: &Snapshot) -> Result<(), Vec<String>> {
    let errors: Vec<String> = snapshot
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            TcpListener::bind(l.address).err().map(|e| format!("listeners[{i}] {}: cannot listen on {}: {e}", l.name, l.address))
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// SIGTERM: report not ready, let Pingora stop accepting, then exit as soon as in-flight work is
/// done (or at the drain deadline). SIGINT exits at once.
struct DrainOnSignal {
    shared: Arc<Shared>,
    control_stop: CancellationToken,
    /// Signals when the control runtime (admin, runtime API, components) has shut down.
    control_done: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How long the runtime API may take to finish its calls and close components after the drain.
const CONTROL_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers; SIGTERM will not drain");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {
                tracing::info!("SIGINT: exiting now");
                return ShutdownSignal::FastShutdown;
            }
        }
        let deadline = self.shared.tables.load().snapshot.drain_timeout;
        tracing::info!(deadline = ?deadline, in_flight = self.shared.drain.in_flight(), "SIGTERM: draining");
        self.shared.drain.start_draining();
        let shared = self.shared.clone();
        let control_stop = self.control_stop.clone();
        let control_done = self.control_done.lock().ok().and_then(|mut d| d.take());
        std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let start = Instant::now();
                // Give Pingora a moment to stop accepting, then wait for in-flight work.
                std::thread::sleep(Duration::from_millis(20));
                while shared.drain.in_flight() > 0 && start.elapsed() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let left = shared.drain.in_flight();
                if left > 0 {
                    tracing::warn!(left, "drain deadline reached; closing remaining requests and connections");
                } else {
                    tracing::info!(took = ?start.elapsed(), "drained; exiting");
                }
                control_stop.cancel();
                if let Some(done) = control_done
                    && done.recv_timeout(CONTROL_SHUTDOWN_DEADLINE).is_err() {
                        tracing::warn!("runtime API did not stop in time; exiting anyway");
                    }
                std::process::exit(0);
            })
            .ok();
        ShutdownSignal::GracefulTerminate
    }
}

/// Runs the proxy until it is told to stop. Returns only on start-up errors.
pub fn run(opts: RunOptions) -> Result<(), StartupError> {
    let source = Arc::new(ConfigSource { path: opts.config.clone(), version: AtomicU64::new(1) });
    let snapshot = source.load().map_err(StartupError)?;
    check_listeners(&snapshot).map_err(StartupError)?;
    let admin_cfg = snapshot.admin.clone();
    let admin_listener = bind("admin", with_port(admin_cfg.address, opts.admin_port)).map_err(|e| StartupError(vec![e]))?;
    let mut metrics_listeners = Vec::new();
    for (i, addr) in admin_cfg.metrics_addresses.iter().enumerate() {
        // --metrics-port moves the proxy's own metrics port (the first entry, 15090 by default).
        let addr = if i == 0 { with_port(*addr, opts.metrics_port) } else { *addr };
        metrics_listeners.push(bind("metrics", addr).map_err(|e| StartupError(vec![e]))?);
    }
    let health_listener = bind("health", admin_cfg.health_address).map_err(|e| StartupError(vec![e]))?;

    let metrics = Metrics::new().map_err(|e| StartupError(vec![format!("metrics registry: {e}")]))?;
    let app_on = |protocol| match opts.runtime.app_port {
        Some(port) if opts.runtime.app_protocol == protocol => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => None,
    };
    let (http_app, grpc_app) = (app_on(oxidecar_runtime_apis::AppProtocol::Http), app_on(oxidecar_runtime_apis::AppProtocol::Grpc));
    let runtime = LocalRuntime::new(opts.runtime.http_addr, http_app, grpc_app, opts.runtime.api_token.as_deref());
    let tables = Tables::build(Arc::new(snapshot), None, Some(Arc::new(runtime))).map_err(|e| StartupError(vec![e.to_string()]))?;
    let tls_metrics = crate::tls::TlsMetrics::new(&metrics.registry).map_err(|e| StartupError(vec![format!("metrics registry: {e}")]))?;
    let tls = crate::tls::TlsContext::new(tls_metrics).map_err(|e| StartupError(vec![format!("TLS: {e}")]))?;
    if let Some(id) = &tables.snapshot.identity {
        let certs = crate::tls::WorkloadCerts::from_files(id).map_err(|e| StartupError(vec![format!("identity.{e}")]))?;
        tls.set_identity(certs).map_err(|e| StartupError(vec![format!("identity.{e}")]))?;
    }
    let ads = opts.xds.as_ref().map(XdsOptions::ads_config).transpose().map_err(|e| StartupError(vec![e]))?;
    let xds_metrics = match &ads {
        Some(_) => Some(oxidecar_xds::ads::XdsMetrics::new(&metrics.registry).map_err(|e| StartupError(vec![format!("metrics registry: {e}")]))?),
        None => None,
    };
    let shared = Shared::new(tables, metrics, tls);
    if ads.is_some() {
        shared.drain.set_config_pending();
    }
    let control_stop = CancellationToken::new();

    let snapshot = shared.tables.load().snapshot.clone();
    let conf = ServerConf {
        threads: opts.concurrency.max(1),
        // One current-thread runtime per worker: a connection stays on its thread, no cross-thread wakeups.
        work_stealing: false,
        upstream_keepalive_pool_size: UPSTREAM_POOL_SIZE,
        // Our drain thread exits as soon as in-flight work is done; this is only the backstop.
        grace_period_seconds: Some(snapshot.drain_timeout.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();
    let mut listen_addrs = Vec::new();
    let mut in_process = std::collections::HashMap::new();
    for l in &snapshot.listeners {
        let name: Arc<str> = l.name.as_str().into();
        let mut http = pingora::proxy::http_proxy(&conf, MeshHttp { listener: name.clone(), shared: shared.clone() });
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        http.server_options = Some(options);
        let http = Arc::new(http);
        in_process.insert(name.clone(), (http.clone(), l.address));
        let app = MeshListener { name: name.clone(), shared: shared.clone(), http };
        let mut service = Service::new(format!("listener {name}"), app);
        service.add_tcp(&l.address.to_string());
        server.add_service(service);
        listen_addrs.push(l.address);
    }

    let in_process = Arc::new(InProcessListeners::new(in_process));
    let xds_held = ads.as_ref().map(|a| a.held.clone());
    let state = AdminState { shared: shared.clone(), source: source.clone(), started: Instant::now(), app_scrape: admin::app_scrape_from_env(), xds_held };
    let control_shared = shared.clone();
    let stop = control_stop.clone();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut runtime_cfg = opts.runtime.clone();
    runtime_cfg.tracer = Some(Arc::new(crate::trace::runtime::RuntimeTracer(shared.clone())));
    runtime_cfg.lanes = Some(Arc::new(crate::lanes::MeshLanes(shared.clone())));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("control").enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started_tx.send(Err(format!("cannot start the control runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let local = LoopbackInvoker::new(runtime_cfg.app_id.clone(), runtime_cfg.app_port, runtime_cfg.app_protocol);
                let grpc_app = match runtime_cfg.app_port {
                    Some(port) if runtime_cfg.app_protocol == oxidecar_runtime_apis::AppProtocol::Grpc => Some(SocketAddr::from(([127, 0, 0, 1], port))),
                    _ => None,
                };
                let invoker = Arc::new(MeshInvoker::new(&runtime_cfg.app_id, local, grpc_app, control_shared.clone(), in_process));
                // The Shutdown RPC drains the whole sidecar, exactly like SIGTERM.
                let on_shutdown: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {
                    tracing::info!("Shutdown requested through the runtime API");
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM);
                });
                let registry = control_shared.metrics.registry.clone();
                let runtime = match Runtime::start(runtime_cfg, invoker, &registry, stop.clone(), on_shutdown).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("runtime API: {e}")));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(()));
                let mut tasks = tokio::task::JoinSet::new();
                tasks.spawn(admin::serve(admin_listener, admin::admin_router(state.clone()), stop.clone()));
                for (i, l) in metrics_listeners.into_iter().enumerate() {
                    // The second metrics address (15020) merges the app's metrics, as pilot-agent does.
                    let router = if i == 1 { admin::merged_metrics_router(state.clone()) } else { admin::metrics_router(state.clone()) };
                    tasks.spawn(admin::serve(l, router, stop.clone()));
                }
                tasks.spawn(admin::serve(health_listener, admin::health_router(state.clone()), stop.clone()));
                match (ads, xds_metrics) {
                    (Some(ads), Some(xds_metrics)) => {
                        tracing::info!(address = %ads.address, delta = ads.delta, node = %ads.node.id, "config from xDS");
                        let handler = Arc::new(control::xds::XdsHandler::new(control_shared.clone(), state.source.clone()));
                        let base = (*control_shared.tables.load().snapshot).clone();
                        tasks.spawn(oxidecar_xds::ads::run(ads, base, handler, xds_metrics, stop.clone()));
                    }
                    _ => {
                        tasks.spawn(control::watch(control_shared.clone(), state.source.clone(), stop.clone()));
                    }
                }
                tasks.spawn(crate::health::run(control_shared.clone(), stop.clone()));
                tasks.spawn(crate::dns::run(control_shared.clone(), stop.clone()));
                tasks.spawn(control::watch_identity(control_shared.clone(), stop.clone()));
                tasks.spawn(crate::trace::export::run(control_shared.clone(), stop.clone()));
                tasks.spawn(mark_ready_when_listening(control_shared, listen_addrs));
                tasks.spawn(runtime.wait());
                while tasks.join_next().await.is_some() {}
            });
            let _ = done_tx.send(());
        })
        .context("spawning the control thread")
        .map_err(|e| StartupError(vec![e.to_string()]))?;
    match started_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(StartupError(vec![e])),
        Err(_) => return Err(StartupError(vec!["the control runtime stopped during start-up".into()])),
    }

    tracing::info!(
        source = %source.describe(),
        listeners = snapshot.listeners.len(),
        clusters = snapshot.clusters.len(),
        "oxidecar starting"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal { shared, control_stop, control_done: std::sync::Mutex::new(Some(done_rx)) }),
    });
    std::process::exit(0);
}

/// Ready once every listener socket is in LISTEN state. Read from /proc so the probe itself is
/// not a connection that the listeners would proxy and count.
async fn mark_ready_when_listening(shared: Arc<Shared>, addrs: Vec<SocketAddr>) {
    for addr in addrs {
        while !is_listening(addr.port()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    shared.drain.set_ready();
    tracing::info!("listeners up; ready");
}

/// Whether some socket listens on `port` (start-up checked the port was free, so it is ours).
fn is_listening(port: u16) -> bool {
    const TCP_LISTEN: &str = "0A";
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let mut cols = line.split_whitespace().skip(1);
                let local_port = cols.next().and_then(|l| l.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                let state = cols.nth(1);
                local_port == Some(port) && state == Some(TCP_LISTEN)
            })
        })
    })
}
