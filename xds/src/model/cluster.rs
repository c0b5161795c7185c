//! Clusters: groups of endpoints with a load balancer, limits and an upstream protocol.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Istio's default connect timeout for mesh clusters.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Envoy's default for every circuit-breaker threshold except retries.
pub const DEFAULT_CIRCUIT_BREAKER_LIMIT: u32 = 1024;
/// Envoy's default for concurrent retries per cluster.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    /// The `destination_service` metric label; defaults to the cluster name.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: ClusterKind,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default)]
    pub lb_policy: LbPolicy,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(default)]
    pub tls: UpstreamTls,
    /// New requests stop reusing an upstream connection older than this (Envoy's
    /// `max_connection_duration`); it closes once idle.
    #[serde(default, with = "humantime_serde")]
    pub max_connection_duration: Option<Duration>,
    #[serde(default)]
    pub circuit_breakers: CircuitBreakers,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Active health checking; without it every endpoint counts as healthy until proven otherwise.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// For `strict_dns` and `logical_dns`: the names whose addresses become the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

/// Envoy's default DNS refresh interval.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);

/// How a DNS cluster finds its endpoints: each host is resolved with the system resolver now and
/// every `refresh_rate`; a failed resolution keeps the addresses last found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    pub hosts: Vec<DnsHost>,
    #[serde(default = "default_dns_refresh", with = "humantime_serde")]
    pub refresh_rate: Duration,
    #[serde(default)]
    pub lookup_family: LookupFamily,
}

fn default_dns_refresh() -> Duration {
    DEFAULT_DNS_REFRESH_RATE
}

/// A name to resolve, with the port, weight and labels each of its addresses gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsHost {
    pub host: String,
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Which address families of a resolved name are used (Envoy's `dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LookupFamily {
    /// IPv6 addresses when there are any, else IPv4.
    #[default]
    Auto,
    /// IPv4 addresses when there are any, else IPv6.
    V4Preferred,
    V4Only,
    V6Only,
    /// Every address of both families.
    All,
}

impl LookupFamily {
    /// The addresses of `found` this family keeps, in resolver order.
    pub fn select(self, found: &[IpAddr]) -> Vec<IpAddr> {
        let v4: Vec<IpAddr> = found.iter().copied().filter(IpAddr::is_ipv4).collect();
        let v6: Vec<IpAddr> = found.iter().copied().filter(IpAddr::is_ipv6).collect();
        match self {
            LookupFamily::Auto if !v6.is_empty() => v6,
            LookupFamily::Auto | LookupFamily::V4Only => v4,
            LookupFamily::V4Preferred if !v4.is_empty() => v4,
            LookupFamily::V4Preferred | LookupFamily::V6Only => v6,
            LookupFamily::All => found.to_vec(),
        }
    }
}

/// Probes every endpoint each `interval`: an HTTP GET of `http_path` that must answer 2xx, or a
/// TCP connect when `http_path` is absent. `unhealthy_threshold` failures in a row take an
/// endpoint out of load balancing; `healthy_threshold` successes bring it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "default_hc_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_hc_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_hc_threshold")]
    pub unhealthy_threshold: u32,
    #[serde(default = "default_hc_healthy")]
    pub healthy_threshold: u32,
    #[serde(default)]
    pub http_path: Option<String>,
}

fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_hc_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_hc_threshold() -> u32 {
    2
}
fn default_hc_healthy() -> u32 {
    1
}

impl Cluster {
    /// The service name metrics report for this cluster.
    pub fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or(&self.name)
    }
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// The endpoints listed in the config.
    #[default]
    Static,
    /// The connection's original destination (passthrough), as Envoy's ORIGINAL_DST.
    OriginalDst,
    /// The original destination's port on this host's loopback (127.0.0.1, or ::1 for IPv6):
    /// captured inbound traffic handed to the app in the pod, which then only needs to listen
    /// on localhost. The sidecar's own connections to loopback are never captured, so this
    /// cannot loop.
    OriginalDstLoopback,
    /// Refuses everything, as Istio's `BlackHoleCluster` (outboundTrafficPolicy REGISTRY_ONLY):
    /// HTTP gets a 502 local reply, TCP connections are closed.
    Blackhole,
    /// Endpoints delivered by the control plane (Envoy's EDS); the list may be empty while a
    /// service has no ready instance (requests then get 503 `UH`).
    Eds,
    /// Every address of every name in `dns.hosts` is an endpoint, re-resolved every refresh.
    StrictDns,
    /// The first address of the one name in `dns.hosts` is the endpoint, re-resolved every refresh.
    LogicalDns,
}

impl ClusterKind {
    /// Whether endpoints come from each connection rather than from the config.
    pub fn is_original_dst(self) -> bool {
        matches!(self, ClusterKind::OriginalDst | ClusterKind::OriginalDstLoopback)
    }

    /// Whether endpoints come from resolving `dns.hosts`.
    pub fn is_dns(self) -> bool {
        matches!(self, ClusterKind::StrictDns | ClusterKind::LogicalDns)
    }

    /// Where a connection whose original destination was `original` goes, for the original_dst kinds.
    pub fn passthrough_address(self, original: SocketAddr) -> SocketAddr {
        match self {
            ClusterKind::OriginalDstLoopback => {
                let ip = if original.is_ipv6() { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) };
                SocketAddr::new(ip, original.port())
            }
            _ => original,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// The endpoint with fewer active requests of two random picks (weight-aware).
    LeastRequest,
    /// Consistent hashing on a ring, keyed by the route's `hash_policy` (Envoy's RING_HASH).
    RingHash,
    /// Consistent hashing with a Maglev table, keyed by the route's `hash_policy`.
    Maglev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 (cleartext h2c, or h2 over TLS), multiplexed.
    H2,
    /// The downstream request's own version.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Disabled,
    /// Istio mTLS: present the workload certificate, verify the peer's SPIFFE ID.
    IstioMutual,
}

/// ALPN a sidecar offers a peer sidecar by default, as Istio's clusters do.
pub const ISTIO_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];

/// How connections to a cluster's endpoints are secured. Written either as a bare mode
/// (`tls: istio_mutual`) or as a map with the details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct UpstreamTls {
    pub mode: TlsMode,
    /// Server name sent in the ClientHello (Istio: `outbound_.PORT_._.HOST`).
    pub sni: Option<String>,
    /// Accepted peer identities (`spiffe://TD/ns/NS/sa/SA`); empty accepts any identity the trust
    /// bundle signs.
    pub subject_alt_names: Vec<String>,
    /// ALPN offered; empty means Istio's (`istio-peer-exchange`, `istio`), plus `h2` when the
    /// cluster speaks HTTP/2.
    pub alpn: Vec<String>,
    /// Only endpoints whose labels hold all of these pairs get TLS (Istio's transport socket
    /// match on `tlsMode: istio`); empty means every endpoint.
    pub endpoint_match: BTreeMap<String, String>,
}

impl UpstreamTls {
    /// Whether connections to an endpoint with these labels use TLS.
    pub fn applies_to(&self, labels: &BTreeMap<String, String>) -> bool {
        self.mode == TlsMode::IstioMutual && self.endpoint_match.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl<'de> Deserialize<'de> for UpstreamTls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            mode: TlsMode,
            #[serde(default)]
            sni: Option<String>,
            #[serde(default)]
            subject_alt_names: Vec<String>,
            #[serde(default)]
            alpn: Vec<String>,
            #[serde(default)]
            endpoint_match: BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Mode(TlsMode),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Mode(mode) => UpstreamTls { mode, ..Default::default() },
            Form::Full(f) => UpstreamTls {
                mode: f.mode,
                sni: f.sni,
                subject_alt_names: f.subject_alt_names,
                alpn: f.alpn,
                endpoint_match: f.endpoint_match,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    #[serde(default = "default_limit")]
    pub max_connections: u32,
    #[serde(default = "default_limit")]
    pub max_pending_requests: u32,
    /// Active requests to the cluster; beyond it a request gets 503 with flag `UO` at once.
    #[serde(default = "default_limit")]
    pub max_requests: u32,
    /// Retries in flight to the cluster; beyond it a failed attempt is not retried.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_CIRCUIT_BREAKER_LIMIT,
            max_pending_requests: DEFAULT_CIRCUIT_BREAKER_LIMIT,
            max_requests: DEFAULT_CIRCUIT_BREAKER_LIMIT,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

fn default_limit() -> u32 {
    DEFAULT_CIRCUIT_BREAKER_LIMIT
}
fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

/// Passive health: eject an endpoint after consecutive failures, for longer each time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    #[serde(default = "default_consecutive")]
    pub consecutive_5xx: u32,
    #[serde(default = "default_consecutive")]
    pub consecutive_gateway_errors: u32,
    #[serde(default = "default_base_ejection", with = "humantime_serde")]
    pub base_ejection_time: Duration,
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

fn default_consecutive() -> u32 {
    5
}
fn default_base_ejection() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ejection_percent() -> u32 {
    10
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: SocketAddr,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Labels such as `version: v2` or `lane: dev-alice`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    1
}
