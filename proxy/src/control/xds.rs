//! xDS as the config source: the ADS client's snapshots go through the same build-and-swap path
//! as a reloaded file, and its SDS secrets into the certificate store. Until the first complete
//! config is in force the proxy reports not ready.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use oxidecar_xds::ads::Handler;
use oxidecar_xds::envoy::SdsSecret;
use oxidecar_xds::model::Snapshot;

use super::{ConfigSource, warn_on_listener_changes};
use crate::shared::Shared;
use crate::tables::Tables;

/// Applies what the ADS client delivers.
pub struct XdsHandler {
    pub shared: Arc<Shared>,
    pub source: Arc<ConfigSource>,
    /// The latest `default` (chain + key) and `ROOTCA` (trust bundle), installed once both are in.
    secrets: Mutex<(Option<SdsSecret>, Option<SdsSecret>)>,
}

impl XdsHandler {
    pub fn new(shared: Arc<Shared>, source: Arc<ConfigSource>) -> Self {
        Self { shared, source, secrets: Mutex::default() }
    }
}

impl Handler for XdsHandler {
    fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), String> {
        let old = self.shared.tables.load();
        warn_on_listener_changes(&old.snapshot, &snapshot);
        let tables = Tables::build(snapshot.clone(), Some(&old), None).map_err(|e| e.to_string());
        let tables = match tables {
            Ok(t) => t,
            Err(e) => {
                self.shared.metrics.config_reloads.with_label_values(&["failure"]).inc();
                tracing::warn!(error = %e, "xDS snapshot refused by the data plane; keeping the running config");
                return Err(e);
            }
        };
        self.shared.tables.store(Arc::new(tables));
        let version = self.source.version.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.metrics.config_reloads.with_label_values(&["success"]).inc();
        if !self.shared.drain.config_ready() {
            tracing::info!(listeners = snapshot.listeners.len(), clusters = snapshot.clusters.len(), "first complete xDS config in force");
        }
        self.shared.drain.set_config_ready();
        tracing::info!(version, listeners = snapshot.listeners.len(), route_configs = snapshot.route_configs.len(), clusters = snapshot.clusters.len(), "xDS snapshot applied");
        Ok(())
    }

    fn secret(&self, s: &SdsSecret) -> Result<(), String> {
        let refused = |e: String| {
            self.shared.tls.metrics.identity_updates.with_label_values(&["rejected"]).inc();
            e
        };
        // Each secret is checked on its own when it arrives, so a bad one is NACKed by name even
        // while its partner is still missing.
        match s.name.as_str() {
            "ROOTCA" => {
                let pem = s.trusted_ca_pem.as_deref().ok_or("ROOTCA carries no trusted_ca").map_err(|e| refused(e.to_string()))?;
                crate::tls::identity::trust_bundle_from_pem(pem.as_bytes()).map_err(|e| refused(e.to_string()))?;
            }
            "default" => {
                let (Some(chain), Some(key)) = (&s.cert_chain_pem, &s.private_key_pem) else {
                    return Err(refused("default carries no certificate_chain and private_key".into()));
                };
                crate::tls::identity::LeafCertificate::from_pem(chain.as_bytes(), key.as_bytes()).map_err(|e| refused(e.to_string()))?;
            }
            other => return Err(refused(format!("secret {other:?} is not one oxidecar uses (default, ROOTCA)"))),
        }
        let mut held = self.secrets.lock().map_err(|_| "secret store poisoned".to_string())?;
        let mut next = held.clone();
        match s.name.as_str() {
            "ROOTCA" => next.1 = Some(s.clone()),
            _ => next.0 = Some(s.clone()),
        }
        if let (Some(cert), Some(root)) = (&next.0, &next.1)
            && let (Some(chain), Some(key), Some(roots)) = (&cert.cert_chain_pem, &cert.private_key_pem, &root.trusted_ca_pem)
        {
            crate::tls::WorkloadCerts::from_pem(chain.as_bytes(), key.as_bytes(), roots.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|c| self.shared.tls.set_identity(c).map_err(|e| e.to_string()))
                .map_err(refused)?;
            tracing::info!(secret = %s.name, "workload identity installed from SDS");
        }
        *held = next;
        Ok(())
    }
}
