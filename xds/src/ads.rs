//! The ADS client: one gRPC stream to pilot-agent (its UDS) or istiod (TLS with a bearer
//! token), delta xDS by default (as pilot-agent's bootstrap asks of Envoy) or state of the world.
//!
//! It asks the way Envoy does — clusters first, then the endpoints of EDS clusters, then
//! listeners, then the route configs they name — and hands the proxy a snapshot only when every
//! cluster it needs has its endpoints and every listener its routes. Each response is ACKed, or
//! NACKed with the rejected resources and fields, in which case those resources keep their last
//! good version. On a broken stream it reconnects with backoff and resumes with the versions it
//! holds. Secrets (`default`, `ROOTCA`) come over ADS or from the agent's SDS socket and are
//! handed to the proxy's certificate store.

mod metrics;
mod node;
mod state;
mod stream;
mod transport;

pub use metrics::XdsMetrics;
pub use node::node_from_env;
pub use transport::XdsAddress;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio_util::sync::CancellationToken;

use crate::envoy::render::DumpView;
use crate::envoy::SdsSecret;
use crate::model::Snapshot;

/// Pilot-agent's xDS socket, relative to the working directory as in Istio's bootstrap.
pub const DEFAULT_AGENT_XDS_SOCKET: &str = "./etc/istio/proxy/XDS";
/// Pilot-agent's SDS socket.
pub const DEFAULT_AGENT_SDS_SOCKET: &str = "./var/run/secrets/workload-spiffe-uds/socket";
/// The projected service-account token istiod accepts.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/tokens/istio-token";
/// The CA that signed istiod's serving certificate.
pub const DEFAULT_ROOT_CA_PATH: &str = "/var/run/secrets/istio/root-cert.pem";

/// How to reach the control plane and what to ask for.
#[derive(Debug, Clone)]
pub struct AdsConfig {
    pub address: XdsAddress,
    /// Where workload secrets come from: the agent's SDS socket, or (None) the ADS stream.
    pub sds_address: Option<XdsAddress>,
    /// Delta xDS (default) or state of the world.
    pub delta: bool,
    pub node: Node,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// What the client holds, kept for the Envoy-shaped `/config_dump`.
    pub held: HeldView,
}

/// The resources the client holds (ADS and SDS), as last accepted, with versions, update times
/// and what was refused: shared with the admin endpoint.
pub type HeldView = Arc<std::sync::Mutex<DumpView>>;

/// What the proxy does with what the client receives.
pub trait Handler: Send + Sync + 'static {
    /// Puts a complete, translated snapshot in force. An error NACKs the update that produced it.
    fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), String>;
    /// A workload secret arrived or changed. An error (the certificate does not parse, the key
    /// does not match it, ...) NACKs the secret, and the one held before stays in force.
    fn secret(&self, secret: &SdsSecret) -> Result<(), String>;
}

/// Runs the client until `stop`: connects, streams, reconnects with backoff.
pub async fn run(config: AdsConfig, base: Snapshot, handler: Arc<dyn Handler>, metrics: XdsMetrics, stop: CancellationToken) {
    if let Ok(mut view) = config.held.lock() {
        view.node = Some(config.node.clone());
    }
    let state = Arc::new(tokio::sync::Mutex::new(state::State::new(base, config.sds_address.is_none(), config.held.clone())));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(sds) = config.sds_address.clone() {
        let (node, handler, metrics, stop, held) = (config.node.clone(), handler.clone(), metrics.clone(), stop.clone(), config.held.clone());
        let backoff = (config.initial_backoff, config.max_backoff);
        tasks.spawn(async move { stream::run_sds(sds, node, handler, metrics, backoff, held, stop).await });
    }
    let mut backoff = config.initial_backoff;
    loop {
        let started = std::time::Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = stream::run_ads(&config, &state, &handler, &metrics) => r,
        };
        metrics.connected.set(0);
        metrics.reconnects.inc();
        match result {
            Ok(()) => tracing::warn!(address = %config.address, "xDS stream closed by the server; reconnecting"),
            Err(e) => tracing::warn!(address = %config.address, error = %e, retry_in = ?backoff, "xDS stream failed; keeping the current config and reconnecting"),
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = config.initial_backoff;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
    tasks.abort_all();
}
