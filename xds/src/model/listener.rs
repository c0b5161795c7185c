//! Listeners and their filter chains: which traffic a socket takes and what handles it.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

use super::route::WeightedCluster;

/// How long a listener waits for the client's first bytes before it treats the connection as a
/// server-first protocol (MySQL, SMTP, redis replies) — Istio's default protocol detection timeout.
pub const DEFAULT_PROTOCOL_SNIFF_TIMEOUT: Duration = Duration::from_millis(100);

/// A socket the proxy accepts connections on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// Outbound listeners report as `source`, inbound as `destination` (Istio's `reporter` label).
    #[serde(default)]
    pub direction: TrafficDirection,
    #[serde(default = "default_sniff_timeout", with = "humantime_serde")]
    pub protocol_sniff_timeout: Duration,
    /// Tried in order; the first whose match fits the connection handles it.
    #[serde(default)]
    pub filter_chains: Vec<FilterChain>,
}

fn default_sniff_timeout() -> Duration {
    DEFAULT_PROTOCOL_SNIFF_TIMEOUT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrafficDirection {
    #[default]
    Outbound,
    Inbound,
}

impl TrafficDirection {
    /// Istio's `reporter` label value for traffic seen on this side.
    pub fn reporter(self) -> &'static str {
        match self {
            TrafficDirection::Outbound => "source",
            TrafficDirection::Inbound => "destination",
        }
    }
}

/// One way of handling a connection: HTTP routing or a plain TCP forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChain {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub filter_chain_match: FilterChainMatch,
    /// HTTP connection manager: routes every request by host, path and headers.
    #[serde(default)]
    pub http: Option<HttpConnectionManager>,
    /// TCP proxy: forwards the byte stream to a cluster.
    #[serde(default)]
    pub tcp: Option<TcpProxy>,
    /// Terminate TLS on this chain with the workload certificate (Istio's inbound mTLS).
    #[serde(default)]
    pub tls: Option<DownstreamTls>,
}

/// TLS termination with the workload identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamTls {
    /// Mutual TLS: the client must present a certificate the trust bundle signs.
    #[serde(default = "yes")]
    pub require_client_certificate: bool,
    /// ALPN accepted, in preference order; empty means `h2`, `http/1.1` and Istio's values.
    #[serde(default)]
    pub alpn: Vec<String>,
}

fn yes() -> bool {
    true
}

impl FilterChain {
    /// The protocol this chain serves (validation guarantees exactly one of `http` / `tcp`).
    pub fn protocol(&self) -> Protocol {
        if self.http.is_some() { Protocol::Http } else { Protocol::Tcp }
    }
}

/// Conditions on a connection; an absent field matches anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterChainMatch {
    /// The original destination port (SO_ORIGINAL_DST), or the listener's own port without capture.
    #[serde(default)]
    pub destination_port: Option<u16>,
    /// The original destination address must be in one of these CIDRs (Envoy's `prefix_ranges`):
    /// how an outbound listener tells a known service's address from an unknown one. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_ranges: Vec<ipnet::IpNet>,
    /// The sniffed protocol of the first bytes (inside TLS when the chain terminates it).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// `tls` when the connection starts with a TLS ClientHello, else `raw_buffer`.
    #[serde(default)]
    pub transport_protocol: Option<TransportProtocol>,
    /// SNI of the ClientHello; `*.example.com` matches one or more leading labels. Empty: any.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// ALPN offered in the ClientHello; the chain matches when any is offered. Empty: any.
    #[serde(default)]
    pub application_protocols: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TransportProtocol {
    RawBuffer,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.x or HTTP/2 (h2c, gRPC).
    Http,
    /// Anything else: opaque bytes.
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectionManager {
    /// Name of an entry in `route_configs`.
    pub route_config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProxy {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub weighted_clusters: Vec<WeightedCluster>,
}
