//! The mesh model: listeners, filter chains, route configs, clusters and endpoints.
//!
//! One vocabulary for the whole data plane. The static loader (and later the xDS translator)
//! produce a [`Snapshot`]; the proxy builds its lookup tables from it once per snapshot.

mod cluster;
mod listener;
mod route;
mod telemetry;
mod validate;

pub use cluster::*;
pub use listener::*;
pub use route::*;
pub use telemetry::*;
pub use validate::{ConfigError, ConfigErrors};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Default drain deadline on SIGTERM: long enough for ordinary requests, far below Pingora's 300 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin endpoint, loopback only (Envoy's and Istio's port).
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:15000";
/// Istio's merged-metrics port and the proxy's own metrics port.
pub const DEFAULT_METRICS_ADDRESSES: [&str; 2] = ["0.0.0.0:15090", "0.0.0.0:15020"];
/// The kubelet's readiness probe port.
pub const DEFAULT_HEALTH_ADDRESS: &str = "0.0.0.0:15021";

/// An immutable, validated mesh configuration. Swapped atomically as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Who this proxy is: fills the `source_*` / `destination_*` metric labels.
    #[serde(default)]
    pub node: Node,
    #[serde(default)]
    pub admin: Admin,
    /// Deadline for in-flight requests after SIGTERM.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub route_configs: Vec<RouteConfig>,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// How service invocation (Dapr's InvokeService) enters the mesh.
    #[serde(default)]
    pub invocation: Invocation,
    /// Where requests carry their lane and how endpoints declare theirs.
    #[serde(default)]
    pub lanes: Lanes,
    /// The workload's certificate, key and trust bundle (files, reloaded when they change). With
    /// xDS they come from SDS instead.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// Access log, metric labels and tracing.
    #[serde(default)]
    pub telemetry: Telemetry,
}

/// PEM files of the workload identity: the certificate chain carrying the SPIFFE ID in a URI SAN,
/// its private key, and the CA certificates peers are verified against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub cert_chain: std::path::PathBuf,
    pub private_key: std::path::PathBuf,
    pub trust_bundle: std::path::PathBuf,
}

/// Lane settings. Defaults: header `x-lane`, baggage key `lane`, endpoint label `lane`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lanes {
    #[serde(default = "default_lane_header")]
    pub header: String,
    #[serde(default = "default_lane_key")]
    pub baggage_key: String,
    /// The endpoint label naming an endpoint's lane; endpoints without it are the base lane.
    #[serde(default = "default_lane_key")]
    pub label: String,
}

impl Default for Lanes {
    fn default() -> Self {
        Self { header: default_lane_header(), baggage_key: default_lane_key(), label: default_lane_key() }
    }
}

fn default_lane_header() -> String {
    "x-lane".to_string()
}
fn default_lane_key() -> String {
    "lane".to_string()
}

/// The outbound listener Dapr's default for service invocation rides.
pub const DEFAULT_INVOCATION_LISTENER: &str = "virtualOutbound";

/// Service invocation rides the proxy's own outbound path: a call to app `X` becomes a request to
/// the outbound `listener` with authority `apps[X]` (default: `X` itself), so it is routed, balanced,
/// retried and counted like any other mesh request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    #[serde(default = "default_invocation_listener")]
    pub listener: String,
    /// App id → the authority (host[:port]) its calls are routed by.
    #[serde(default)]
    pub apps: std::collections::BTreeMap<String, String>,
}

impl Default for Invocation {
    fn default() -> Self {
        Self { listener: default_invocation_listener(), apps: Default::default() }
    }
}

fn default_invocation_listener() -> String {
    DEFAULT_INVOCATION_LISTENER.to_string()
}

impl Invocation {
    /// The authority calls to `app_id` are routed by.
    pub fn authority<'a>(&'a self, app_id: &'a str) -> &'a str {
        self.apps.get(app_id).map_or(app_id, String::as_str)
    }
}

fn default_drain_timeout() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}

/// The workload this sidecar serves, as Istio's node metadata describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Workload name (`source_workload` / `destination_workload`).
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Pod labels: `app`, `version` and Istio's canonical-name/revision labels fill defaults.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub canonical_service: Option<String>,
    #[serde(default)]
    pub canonical_revision: Option<String>,
    /// Istio's `CLUSTER_ID` (default `Kubernetes`).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Istio's `MESH_ID` (default `cluster.local`).
    #[serde(default)]
    pub mesh_id: Option<String>,
}

/// Where the operator-facing endpoints listen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `/ready`, `/config_dump`, `/clusters`.
    #[serde(default = "default_admin")]
    pub address: SocketAddr,
    /// Each serves `/stats/prometheus` (and `/healthz/ready`).
    #[serde(default = "default_metrics")]
    pub metrics_addresses: Vec<SocketAddr>,
    /// `/healthz/ready` for the kubelet.
    #[serde(default = "default_health")]
    pub health_address: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            address: default_admin(),
            metrics_addresses: default_metrics(),
            health_address: default_health(),
        }
    }
}

fn parse_const(s: &str) -> SocketAddr {
    s.parse().expect("built-in default address parses")
}
fn default_admin() -> SocketAddr {
    parse_const(DEFAULT_ADMIN_ADDRESS)
}
fn default_metrics() -> Vec<SocketAddr> {
    DEFAULT_METRICS_ADDRESSES.iter().map(|s| parse_const(s)).collect()
}
fn default_health() -> SocketAddr {
    parse_const(DEFAULT_HEALTH_ADDRESS)
}

impl Snapshot {
    /// Looks up a cluster by name.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Looks up a route config by name.
    pub fn route_config(&self, name: &str) -> Option<&RouteConfig> {
        self.route_configs.iter().find(|r| r.name == name)
    }
}

impl Snapshot {
    /// A snapshot with defaults and no listeners, routes or clusters.
    pub fn empty() -> Snapshot {
        crate::static_file::parse_str("{}").expect("the empty config is valid")
    }
}
