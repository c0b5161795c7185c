//! Lookup tables built once per config snapshot: filter chains per listener, compiled route
//! tables, and cluster state (load balancer, endpoints, limits). Endpoint counters survive a reload
//! when the cluster and address stay the same, so `/clusters` does not reset on every edit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oxidecar_filters::ClusterId;
use oxidecar_filters::breaker::{ConnectionGate, Limits};
use oxidecar_filters::lb::LoadBalancer;
use oxidecar_filters::outlier::{OutlierDetector, Outcome};
use oxidecar_filters::route::{Destination, RouteTable};
use oxidecar_filters::weighted::WeightedChoice;
use oxidecar_xds::model::{self, ClusterKind, Protocol, Snapshot, TrafficDirection, TransportProtocol, UpstreamProtocol};

/// Counters of one endpoint, shown by `/clusters`.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub rq_active: AtomicU64,
    pub rq_total: AtomicU64,
    pub rq_error: AtomicU64,
    pub cx_connect_fail: AtomicU64,
    /// Set by active health checking while the endpoint fails its checks.
    pub hc_failed: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
pub struct EndpointState {
    pub address: SocketAddr,
    /// The endpoint's lane (its `lanes.label` label); `None` is the base lane.
    pub lane: Option<Arc<str>>,
    pub weight: u32,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Connections to this endpoint use the cluster's mesh mTLS.
    pub tls: bool,
    pub stats: Arc<EndpointStats>,
}

/// Per-cluster counters that gate admission (circuit breakers).
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub rq_active: AtomicU64,
    pub rq_retry_active: AtomicU64,
    /// Requests refused by `max_requests` (Envoy counts them in `upstream_rq_pending_overflow`
    /// together with the pending-queue refusals the gate counts).
    pub upstream_rq_pending_overflow: AtomicU64,
    /// `max_connections` and `max_pending_requests`.
    pub gate: Arc<ConnectionGate>,
}

impl ClusterStats {
    /// Envoy's `upstream_rq_pending_overflow`: refused by `max_requests` or a full pending queue.
    pub fn pending_overflow_total(&self) -> u64 {
        self.upstream_rq_pending_overflow.load(Ordering::Relaxed) + self.gate.stats().pending_overflow
    }
}

#[derive(Debug)]
pub struct ClusterState {
    pub name: Arc<str>,
    /// Full service name (`destination_service`).
    pub service: Arc<str>,
    /// Short service name (`destination_service_name`): the first label of `service`.
    pub service_name: Arc<str>,
    pub kind: ClusterKind,
    pub connect_timeout: Duration,
    pub protocol: UpstreamProtocol,
    pub circuit_breakers: model::CircuitBreakers,
    pub lb: LoadBalancer,
    pub endpoints: Vec<EndpointState>,
    pub stats: Arc<ClusterStats>,
    /// Passive health, when the cluster configures outlier detection.
    pub outlier: Option<OutlierDetector>,
    /// Lanes that have endpoints here.
    pub lanes: std::collections::HashSet<Arc<str>>,
    /// Whether some endpoint is in the base lane (else base traffic may use every endpoint).
    pub has_base: bool,
    /// Mesh mTLS settings, when some endpoint uses them.
    pub tls: Option<crate::tls::upstream::ClusterTls>,
    /// New requests stop reusing connections older than this (Envoy's max_connection_duration).
    pub max_connection_duration: Option<Duration>,
}

impl ClusterState {
    /// The connection circuit breakers' thresholds.
    pub fn gate_limits(&self) -> Limits {
        Limits { max_connections: self.circuit_breakers.max_connections, max_pending_requests: self.circuit_breakers.max_pending_requests }
    }

    /// Picks an endpoint of the request's lane (or the base lane when `lane` has no endpoints
    /// here) that is neither in `tried` nor ejected; `None` when there is none.
    pub fn pick(&self, tried: &[usize], lane: Option<&str>, hash_key: Option<u64>) -> Option<usize> {
        let now = std::time::Instant::now();
        let lane = lane.filter(|l| self.lanes.contains(*l));
        let any_lane = lane.is_none() && !self.has_base;
        let usable = |i: usize| {
            (any_lane || self.endpoints[i].lane.as_deref() == lane) && !tried.contains(&i) && !self.is_ejected(i, now)
        };
        self.lb.pick(hash_key, usable, |i| self.endpoints[i].stats.rq_active.load(Ordering::Relaxed))
    }

    /// The lane a request in `lane` is served in here (`None`: base).
    pub fn served_lane<'a>(&self, lane: Option<&'a str>) -> Option<&'a str> {
        lane.filter(|l| self.lanes.contains(*l))
    }

    /// Out of load balancing: ejected by outlier detection or failing active health checks.
    pub fn is_ejected(&self, i: usize, now: std::time::Instant) -> bool {
        self.endpoints[i].stats.hc_failed.load(Ordering::Relaxed) || self.outlier.as_ref().is_some_and(|o| o.is_ejected(i, now))
    }

    /// Envoy's health flag for endpoint `i`.
    pub fn health_flag(&self, i: usize, now: std::time::Instant) -> &'static str {
        if self.endpoints[i].stats.hc_failed.load(Ordering::Relaxed) {
            "/failed_active_hc"
        } else if self.outlier.as_ref().is_some_and(|o| o.is_ejected(i, now)) {
            "/failed_outlier_check"
        } else {
            "healthy"
        }
    }

    /// Feeds an attempt's outcome to outlier detection.
    pub fn record(&self, i: usize, outcome: Outcome) {
        if let Some(o) = &self.outlier
            && let Some(d) = o.record(i, outcome, std::time::Instant::now()) {
                tracing::info!(cluster = %self.name, endpoint = %self.endpoints[i].address, ejected_for = ?d, "outlier ejected");
            }
    }
}

/// What a matched filter chain does with the connection.
#[derive(Debug)]
pub enum ChainAction {
    Http { routes: Arc<RouteTable> },
    Tcp { destination: Destination },
}

#[derive(Debug)]
pub struct ChainEntry {
    pub name: Arc<str>,
    pub destination_port: Option<u16>,
    /// Destination CIDRs; empty: any address.
    pub prefix_ranges: Vec<ipnet::IpNet>,
    pub protocol: Protocol,
    pub transport: Option<TransportProtocol>,
    pub server_names: Vec<String>,
    pub application_protocols: Vec<String>,
    /// Terminate TLS with the workload identity.
    pub tls: Option<model::DownstreamTls>,
    pub action: ChainAction,
}

/// What sniffing learned about a connection's first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub transport: TransportProtocol,
    /// For plaintext, HTTP or opaque TCP; inside TLS the chain decides.
    pub protocol: Protocol,
    pub hello: Option<crate::tls::accept::ClientHello>,
}

/// `*.example.com` matches `a.example.com` and `a.b.example.com`; other names match exactly.
fn server_name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(suffix) && name.as_bytes()[name.len() - suffix.len() - 1] == b'.',
        None => pattern.eq_ignore_ascii_case(name),
    }
}

impl ChainEntry {
    /// Whether the chain's TLS conditions hold for a connection sniffed as `s`.
    pub fn matches(&self, s: &Sniffed) -> bool {
        if self.transport.is_some_and(|t| t != s.transport) {
            return false;
        }
        match (&s.hello, s.transport) {
            (Some(hello), TransportProtocol::Tls) => {
                let sni_ok = self.server_names.is_empty()
                    || hello.server_name.as_deref().is_some_and(|n| self.server_names.iter().any(|p| server_name_matches(p, n)));
                let alpn_ok = self.application_protocols.is_empty() || hello.alpn.iter().any(|a| self.application_protocols.contains(a));
                // A TLS connection goes to a chain that terminates it or passes it through as TCP.
                sni_ok && alpn_ok && (self.tls.is_some() || self.protocol == Protocol::Tcp)
            }
            _ => self.server_names.is_empty() && self.application_protocols.is_empty() && self.tls.is_none() && self.protocol == s.protocol,
        }
    }

    /// Whether choosing this chain needs more than the destination port.
    fn needs_sniff(&self) -> bool {
        self.transport.is_some() || !self.server_names.is_empty() || !self.application_protocols.is_empty() || self.tls.is_some()
    }
}

#[derive(Debug)]
pub struct ListenerTable {
    pub direction: TrafficDirection,
    pub sniff_timeout: Duration,
    pub chains: Vec<ChainEntry>,
    /// Positions in `chains` by what they match on, each list ascending. Istio's `virtualOutbound`
    /// holds a chain per service address and port of the mesh (thousands), so a connection only
    /// looks at the chains for its own destination address and port, and at the less specific
    /// ones: keyed by (port or any, host address or other).
    index: HashMap<(Option<u16>, Option<IpAddr>), Vec<usize>>,
    /// Position of each chain by name (HTTP requests find the chain their connection picked).
    by_name: HashMap<Arc<str>, usize>,
}

impl ListenerTable {
    pub fn new(direction: TrafficDirection, sniff_timeout: Duration, chains: Vec<ChainEntry>) -> Self {
        let mut index: HashMap<(Option<u16>, Option<IpAddr>), Vec<usize>> = HashMap::new();
        let mut by_name = HashMap::with_capacity(chains.len());
        for (i, c) in chains.iter().enumerate() {
            let hosts: Option<Vec<IpAddr>> = c.prefix_ranges.iter().map(|r| (r.prefix_len() == r.max_prefix_len()).then(|| r.addr())).collect();
            match hosts {
                // Only single addresses: filed under each (the range check below still runs).
                Some(hosts) if !hosts.is_empty() => {
                    for ip in hosts {
                        let list = index.entry((c.destination_port, Some(ip))).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                _ => index.entry((c.destination_port, None)).or_default().push(i),
            }
            by_name.entry(c.name.clone()).or_insert(i);
        }
        Self { direction, sniff_timeout, chains, index, by_name }
    }

    /// Chains that may take a connection to `ip`:`port` (the original destination, or the
    /// listener's own address without capture), in config order.
    pub fn candidates(&self, ip: Option<IpAddr>, port: u16) -> impl Iterator<Item = &ChainEntry> {
        let list = |port: Option<u16>, ip: Option<IpAddr>| self.index.get(&(port, ip)).map_or(&[][..], Vec::as_slice);
        let host = |port| if ip.is_some() { list(port, ip) } else { &[][..] };
        let mut lists = [host(Some(port)), list(Some(port), None), host(None), list(None, None)];
        // Each list ascends: taking the smallest head each time keeps config order.
        std::iter::from_fn(move || {
            let (k, _) = lists.iter().enumerate().filter_map(|(k, l)| l.first().map(|i| (k, *i))).min_by_key(|(_, i)| *i)?;
            let (first, rest) = lists[k].split_first()?;
            lists[k] = rest;
            Some(*first)
        })
        .map(|i| &self.chains[i])
        .filter(move |c| c.prefix_ranges.is_empty() || ip.is_some_and(|ip| c.prefix_ranges.iter().any(|r| r.contains(&ip))))
    }

    /// The chain for a connection to `port` without reading its bytes, when that is decided
    /// already: one protocol among the candidates and no TLS conditions.
    pub fn chain_without_sniffing(&self, ip: Option<IpAddr>, port: u16) -> Option<Option<&ChainEntry>> {
        let mut candidates = self.candidates(ip, port);
        let Some(first) = candidates.next() else { return Some(None) };
        let decided = !first.needs_sniff() && self.candidates(ip, port).all(|c| c.protocol == first.protocol && !c.needs_sniff());
        decided.then_some(Some(first))
    }

    pub fn chain_named(&self, name: &str) -> Option<&ChainEntry> {
        self.by_name.get(name).map(|&i| &self.chains[i])
    }
}

/// Everything the data plane reads for one snapshot.
#[derive(Debug)]
pub struct Tables {
    pub snapshot: Arc<Snapshot>,
    /// The local runtime HTTP API, where invocations arriving from the mesh are handed over.
    pub runtime: Option<Arc<LocalRuntime>>,
    pub listeners: HashMap<String, ListenerTable>,
    pub clusters: Vec<Arc<ClusterState>>,
    /// Position in `clusters` by name.
    cluster_ids: HashMap<Arc<str>, ClusterId>,
    /// Addresses DNS clusters resolved to; shared by every generation of tables.
    pub dns: Arc<crate::dns::DnsCache>,
}

/// The local runtime as an upstream of inbound listeners.
#[derive(Debug)]
pub struct LocalRuntime {
    pub cluster: Arc<ClusterState>,
    /// The local app itself when it speaks HTTP: invocations skip the runtime hop and go straight
    /// to it (a gRPC app needs the runtime to turn them into `OnInvoke`).
    pub http_app: Option<Arc<ClusterState>>,
    /// The local app when it speaks gRPC: gRPC calls proxied to it by a peer's runtime
    /// (`dapr-app-id`) are handed to it as they are, over HTTP/2.
    pub grpc_app: Option<Arc<ClusterState>>,
    /// `DAPR_API_TOKEN`, added to handed-over invocations when the runtime requires it.
    pub api_token: Option<http::HeaderValue>,
}

impl LocalRuntime {
    pub fn new(http_addr: SocketAddr, http_app: Option<SocketAddr>, grpc_app: Option<SocketAddr>, api_token: Option<&str>) -> Self {
        Self {
            cluster: Arc::new(local_cluster("dapr-runtime", http_addr, UpstreamProtocol::Http1)),
            http_app: http_app.map(|a| Arc::new(local_cluster("dapr-app", a, UpstreamProtocol::Http1))),
            grpc_app: grpc_app.map(|a| Arc::new(local_cluster("dapr-app", a, UpstreamProtocol::H2))),
            api_token: api_token.and_then(|t| http::HeaderValue::from_str(t).ok()),
        }
    }
}

/// A one-endpoint cluster for something on this host.
fn local_cluster(name: &str, address: SocketAddr, protocol: UpstreamProtocol) -> ClusterState {
        ClusterState {
            name: name.into(),
            service: name.into(),
            service_name: name.into(),
            kind: ClusterKind::Static,
            connect_timeout: Duration::from_secs(1),
            protocol,
            circuit_breakers: model::CircuitBreakers::default(),
            lb: LoadBalancer::new(model::LbPolicy::RoundRobin, &[1], &[]),
            endpoints: vec![EndpointState {
                address,
                lane: None,
                weight: 1,
                labels: Default::default(),
                tls: false,
                stats: Default::default(),
            }],
            stats: Default::default(),
            outlier: None,
            lanes: Default::default(),
            has_base: true,
            tls: None,
            max_connection_duration: None,
        }
}

/// Why a validated snapshot still could not become tables.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl Tables {
    /// Builds tables for `snapshot`, reusing endpoint counters from `previous`.
    /// `runtime` is taken from `previous` when `None` (it does not change on reload).
    pub fn build(snapshot: Arc<Snapshot>, previous: Option<&Tables>, runtime: Option<Arc<LocalRuntime>>) -> Result<Tables, BuildError> {
        let runtime = runtime.or_else(|| previous.and_then(|p| p.runtime.clone()));
        let dns = previous.map(|p| p.dns.clone()).unwrap_or_default();
        let ids: HashMap<&str, ClusterId> =
            snapshot.clusters.iter().enumerate().map(|(i, c)| (c.name.as_str(), ClusterId(i))).collect();
        let resolve = |name: &str| ids.get(name).copied();
        let mut clusters = Vec::with_capacity(snapshot.clusters.len());
        for c in &snapshot.clusters {
            let old = previous.and_then(|p| p.cluster_by_name(&c.name));
            let old_endpoints: HashMap<SocketAddr, &EndpointState> =
                old.map(|o| o.endpoints.iter().rev().map(|e| (e.address, e)).collect()).unwrap_or_default();
            let resolved = if c.kind.is_dns() { dns.endpoints(c) } else { Vec::new() };
            let listed = if c.kind.is_dns() { &resolved } else { &c.endpoints };
            let endpoints = listed
                .iter()
                .map(|e| EndpointState {
                    address: e.address,
                    lane: e.labels.get(&snapshot.lanes.label).map(|l| Arc::from(l.as_str())),
                    weight: e.weight,
                    labels: e.labels.clone(),
                    tls: c.tls.applies_to(&e.labels),
                    stats: old_endpoints.get(&e.address).map(|oe| oe.stats.clone()).unwrap_or_default(),
                })
                .collect::<Vec<_>>();
            let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
            let lanes = endpoints.iter().filter_map(|e| e.lane.clone()).collect();
            let has_base = endpoints.iter().any(|e| e.lane.is_none());
            let service = c.service_name();
            clusters.push(Arc::new(ClusterState {

                name: c.name.as_str().into(),
                service: service.into(),
                service_name: service.split('.').next().unwrap_or(service).into(),
                kind: c.kind,
                connect_timeout: c.connect_timeout,
                protocol: c.protocol,
                circuit_breakers: c.circuit_breakers.clone(),
                lb: LoadBalancer::new(c.lb_policy, &weights, &listed.iter().map(|e| e.address.to_string()).collect::<Vec<_>>()),
                outlier: c.outlier_detection.clone().map(|od| OutlierDetector::new(od, endpoints.len())),
                lanes,
                has_base,
                tls: endpoints.iter().any(|e| e.tls).then(|| crate::tls::upstream::ClusterTls::new(&c.tls, c.protocol)),
                max_connection_duration: c.max_connection_duration,
                endpoints,
                stats: old.map(|o| o.stats.clone()).unwrap_or_default(),
            }));
        }
        let mut routes = HashMap::new();
        for rc in &snapshot.route_configs {
            let table = RouteTable::new(rc, resolve).map_err(|e| BuildError(e.to_string()))?;
            routes.insert(rc.name.clone(), Arc::new(table));
        }
        let mut listeners = HashMap::new();
        for l in &snapshot.listeners {
            let mut chains = Vec::new();
            for (j, fc) in l.filter_chains.iter().enumerate() {
                let name: Arc<str> = fc.name.clone().unwrap_or_else(|| format!("{}#{j}", l.name)).into();
                let action = match (&fc.http, &fc.tcp) {
                    (Some(http), _) => ChainAction::Http {
                        routes: routes.get(&http.route_config).cloned().ok_or_else(|| {
                            BuildError(format!("listener {}: unknown route config {:?}", l.name, http.route_config))
                        })?,
                    },
                    (None, Some(tcp)) => ChainAction::Tcp { destination: tcp_destination(tcp, &resolve, &l.name)? },
                    (None, None) => return Err(BuildError(format!("listener {}: chain {name} has no filter", l.name))),
                };
                let m = &fc.filter_chain_match;
                chains.push(ChainEntry {
                    name,
                    destination_port: m.destination_port,
                    prefix_ranges: m.prefix_ranges.clone(),
                    protocol: fc.protocol(),
                    transport: m.transport_protocol,
                    server_names: m.server_names.clone(),
                    application_protocols: m.application_protocols.clone(),
                    tls: fc.tls.clone(),
                    action,
                });
            }
            listeners.insert(
                l.name.clone(),
                ListenerTable::new(l.direction, l.protocol_sniff_timeout, chains),
            );
        }
        let cluster_ids = clusters.iter().enumerate().map(|(i, c)| (c.name.clone(), ClusterId(i))).collect();
        Ok(Tables { snapshot, runtime, listeners, clusters, cluster_ids, dns })
    }

    pub fn cluster_by_name(&self, name: &str) -> Option<&Arc<ClusterState>> {
        self.cluster_ids.get(name).map(|&id| &self.clusters[id.0])
    }

    pub fn cluster(&self, id: ClusterId) -> &Arc<ClusterState> {
        &self.clusters[id.0]
    }
}

fn tcp_destination(
    tcp: &model::TcpProxy,
    resolve: &impl Fn(&str) -> Option<ClusterId>,
    listener: &str,
) -> Result<Destination, BuildError> {
    let unknown = |n: &str| BuildError(format!("listener {listener}: unknown cluster {n:?}"));
    if let Some(name) = &tcp.cluster {
        return Ok(Destination::Cluster(resolve(name).ok_or_else(|| unknown(name))?));
    }
    let items = tcp
        .weighted_clusters
        .iter()
        .map(|w| Ok((resolve(&w.name).ok_or_else(|| unknown(&w.name))?, w.weight)))
        .collect::<Result<Vec<_>, BuildError>>()?;
    WeightedChoice::new(items)
        .map(Destination::Weighted)
        .ok_or_else(|| BuildError(format!("listener {listener}: tcp weights add up to 0")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_match_the_destination_address_and_port() {
        let yaml = r#"
listeners:
  - name: out
    address: 127.0.0.1:15001
    filter_chains:
      - { name: db, match: { destination_port: 5432, prefix_ranges: ["10.1.0.0/16", "fd00::/64"] }, tcp: { cluster: db } }
      - { name: other, tcp: { cluster: passthrough } }
clusters:
  - { name: db, endpoints: [{ address: 10.1.0.5:5432 }] }
  - { name: passthrough, type: original_dst }
"#;
        let snapshot = oxidecar_xds::static_file::parse_str(yaml).expect("valid");
        let tables = Tables::build(Arc::new(snapshot), None, None).expect("tables");
        let out = &tables.listeners["out"];
        let first = |ip: Option<&str>, port| out.candidates(ip.map(|i| i.parse().expect("ip")), port).next().map(|c| c.name.to_string());
        assert_eq!(first(Some("10.1.2.3"), 5432).as_deref(), Some("db"));
        assert_eq!(first(Some("fd00::7"), 5432).as_deref(), Some("db"));
        assert_eq!(first(Some("10.2.0.1"), 5432).as_deref(), Some("other"), "unknown address");
        assert_eq!(first(Some("10.1.2.3"), 5433).as_deref(), Some("other"), "other port");
        assert_eq!(first(None, 5432).as_deref(), Some("other"), "no address known");
    }

    #[test]
    fn indexed_chain_lookup_agrees_with_a_scan_in_config_order() {
        // Host addresses, a range, per-port and any-port chains, interleaved, as Istio's
        // virtualOutbound mixes them.
        let yaml = r#"
listeners:
  - name: out
    address: 127.0.0.1:15001
    filter_chains:
      - { name: a, match: { destination_port: 8080, prefix_ranges: ["10.0.0.1/32"] }, tcp: { cluster: c } }
      - { name: b, match: { destination_port: 8080, prefix_ranges: ["10.0.0.0/24"] }, tcp: { cluster: c } }
      - { name: c, match: { prefix_ranges: ["10.0.0.1/32", "10.0.0.2/32"] }, tcp: { cluster: c } }
      - { name: d, match: { destination_port: 8080, prefix_ranges: ["10.0.0.2/32"] }, tcp: { cluster: c } }
      - { name: e, match: { destination_port: 8080 }, tcp: { cluster: c } }
      - { name: f, match: { destination_port: 9090, prefix_ranges: ["10.0.0.1/32"] }, tcp: { cluster: c } }
      - { name: g, match: { prefix_ranges: ["fd00::1/128"] }, tcp: { cluster: c } }
      - { name: h, tcp: { cluster: c } }
clusters:
  - { name: c, endpoints: [{ address: 10.9.0.5:80 }] }
"#;
        let snapshot = oxidecar_xds::static_file::parse_str(yaml).expect("valid");
        let tables = Tables::build(Arc::new(snapshot), None, None).expect("tables");
        let out = &tables.listeners["out"];
        let names = |ip: Option<IpAddr>, port| out.candidates(ip, port).map(|c| c.name.to_string()).collect::<Vec<_>>();
        let scan = |ip: Option<IpAddr>, port: u16| {
            out.chains
                .iter()
                .filter(|c| {
                    c.destination_port.is_none_or(|p| p == port)
                        && (c.prefix_ranges.is_empty() || ip.is_some_and(|ip| c.prefix_ranges.iter().any(|r| r.contains(&ip))))
                })
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Some("10.0.0.1".parse().expect("ip")), 8080), ["a", "b", "c", "e", "h"]);
        for ip in [None, Some("10.0.0.1"), Some("10.0.0.2"), Some("10.0.0.3"), Some("10.1.0.1"), Some("fd00::1"), Some("fd00::2")] {
            let ip = ip.map(|i| i.parse::<IpAddr>().expect("ip"));
            for port in [8080, 9090, 80] {
                assert_eq!(names(ip, port), scan(ip, port), "{ip:?}:{port}");
            }
        }
        assert_eq!(out.chain_named("d").map(|c| c.name.to_string()).as_deref(), Some("d"));
        assert!(out.chain_named("zz").is_none());
    }
}
