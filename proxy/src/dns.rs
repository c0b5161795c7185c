//! DNS clusters (Envoy's STRICT_DNS and LOGICAL_DNS): a control-plane task resolves each cluster's
//! `dns.hosts` with the system resolver now and every `refresh_rate`, keeps the addresses in a
//! cache that outlives config reloads, and rebuilds the tables when they change. A failed lookup
//! keeps the addresses found before (logged and counted), so a resolver hiccup never empties a
//! cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxidecar_xds::model::{self, ClusterKind, Dns};
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use crate::tables::Tables;

/// How often the running config is checked for new DNS clusters between refreshes.
const CONFIG_POLL: Duration = Duration::from_millis(200);
/// A lookup that takes longer counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What each host of a DNS cluster last resolved to, by cluster name.
#[derive(Debug, Default)]
pub struct DnsCache {
    clusters: Mutex<HashMap<String, Resolved>>,
}

#[derive(Debug, Clone)]
struct Resolved {
    /// The settings the addresses were found with; other settings start over.
    dns: Dns,
    kind: ClusterKind,
    /// Per host, in `dns.hosts` order: the addresses of its last successful lookup.
    addresses: Vec<Vec<SocketAddr>>,
}

impl Resolved {
    fn endpoints(&self) -> Vec<model::Endpoint> {
        let mut out: Vec<model::Endpoint> = Vec::new();
        for (host, addrs) in self.dns.hosts.iter().zip(&self.addresses) {
            for a in addrs {
                if !out.iter().any(|e| e.address == *a) {
                    out.push(model::Endpoint { address: *a, weight: host.weight, labels: host.labels.clone() });
                }
            }
        }
        out
    }
}

impl DnsCache {
    /// The endpoints of DNS cluster `c` as last resolved (none before the first answer).
    pub fn endpoints(&self, c: &model::Cluster) -> Vec<model::Endpoint> {
        let Some(dns) = &c.dns else { return Vec::new() };
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters.get(&c.name).filter(|r| r.dns == *dns && r.kind == c.kind).map(Resolved::endpoints).unwrap_or_default()
    }

    /// Records one host's lookup; returns whether the cluster's endpoints changed.
    fn store(&self, c: &model::Cluster, dns: &Dns, host: usize, addrs: Vec<SocketAddr>) -> bool {
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let entry = clusters.entry(c.name.clone()).or_insert_with(|| Resolved { dns: dns.clone(), kind: c.kind, addresses: Vec::new() });
        if entry.dns != *dns || entry.kind != c.kind {
            *entry = Resolved { dns: dns.clone(), kind: c.kind, addresses: Vec::new() };
        }
        entry.addresses.resize(dns.hosts.len(), Vec::new());
        let changed = entry.addresses[host] != addrs;
        entry.addresses[host] = addrs;
        changed
    }

    /// Forgets clusters the config no longer has.
    fn retain(&self, names: &[&str]) {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| names.contains(&k.as_str()));
    }
}

/// One lookup: the addresses of `host` the cluster's family and kind keep.
async fn lookup(kind: ClusterKind, dns: &Dns, host: &model::DnsHost) -> Result<Vec<SocketAddr>, String> {
    let name = host.host.trim_start_matches('[').trim_end_matches(']');
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, host.port)))
        .await
        .map_err(|_| format!("no answer within {LOOKUP_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let mut ips = Vec::new();
    for a in found {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    let mut ips = dns.lookup_family.select(&ips);
    if ips.is_empty() {
        return Err(format!("no address of family {:?}", dns.lookup_family));
    }
    if kind == ClusterKind::LogicalDns {
        ips.truncate(1);
    }
    Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, host.port)).collect())
}

/// Whether the tables' endpoints of some DNS cluster differ from the cache.
fn stale(tables: &Tables) -> bool {
    tables.snapshot.clusters.iter().filter(|c| c.kind.is_dns()).any(|c| {
        let want: Vec<SocketAddr> = tables.dns.endpoints(c).iter().map(|e| e.address).collect();
        let have: Vec<SocketAddr> = tables.cluster_by_name(&c.name).map(|s| s.endpoints.iter().map(|e| e.address).collect()).unwrap_or_default();
        want != have
    })
}

/// Rebuilds the running tables from their own snapshot, picking up the cache.
fn rebuild(shared: &Shared) {
    shared.tables.rcu(|current| match Tables::build(current.snapshot.clone(), Some(current), None) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            tracing::warn!(error = %e, "cannot apply DNS results; keeping the endpoints in force");
            current.clone()
        }
    });
}

/// Resolves DNS clusters until `stop`.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    // Next lookup per (cluster, host); a changed config starts the cluster over.
    let mut due: HashMap<(String, usize), (Instant, Dns)> = HashMap::new();
    loop {
        let tables = shared.tables.load_full();
        let now = Instant::now();
        let clusters: Vec<&model::Cluster> = tables.snapshot.clusters.iter().filter(|c| c.kind.is_dns()).collect();
        tables.dns.retain(&clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>());
        due.retain(|(name, _), _| clusters.iter().any(|c| &c.name == name));
        for c in &clusters {
            let Some(dns) = &c.dns else { continue };
            for (i, host) in dns.hosts.iter().enumerate() {
                let key = (c.name.clone(), i);
                if due.get(&key).is_some_and(|(at, d)| *at > now && d == dns) {
                    continue;
                }
                due.insert(key, (now + dns.refresh_rate, dns.clone()));
                let result = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = lookup(c.kind, dns, host) => r,
                };
                let m = &shared.metrics.dns_resolutions;
                match result {
                    Ok(addrs) => {
                        m.with_label_values(&[&c.name, "success"]).inc();
                        if tables.dns.store(c, dns, i, addrs.clone()) {
                            tracing::info!(cluster = %c.name, host = %host.host, addresses = ?addrs, "DNS cluster endpoints changed");
                        }
                    }
                    Err(e) => {
                        m.with_label_values(&[&c.name, "failure"]).inc();
                        tracing::warn!(cluster = %c.name, host = %host.host, error = %e, "DNS lookup failed; keeping the addresses found before");
                    }
                }
            }
        }
        // Also catches a reload that raced a lookup and built tables from an older cache.
        if stale(&shared.tables.load()) {
            rebuild(&shared);
        }
        let next = due.values().map(|(at, _)| *at).min().map_or(CONFIG_POLL, |at| at.saturating_duration_since(Instant::now()).min(CONFIG_POLL));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(json: &str) -> model::Cluster {
        serde_json::from_str(json).expect("cluster")
    }

    #[tokio::test]
    async fn localhost_resolves_per_family_and_kind() {
        let strict = cluster(r#"{"name": "a", "type": "strict_dns", "dns": {"hosts": [{"host": "localhost", "port": 8080}], "lookup_family": "v4_only"}}"#);
        let dns = strict.dns.clone().expect("dns");
        let v4 = lookup(strict.kind, &dns, &dns.hosts[0]).await.expect("localhost resolves");
        assert_eq!(v4, [SocketAddr::from(([127, 0, 0, 1], 8080))]);
        let literal = cluster(r#"{"name": "b", "type": "logical_dns", "dns": {"hosts": [{"host": "::1", "port": 9}], "lookup_family": "v4_only"}}"#);
        let dns = literal.dns.clone().expect("dns");
        let err = lookup(literal.kind, &dns, &dns.hosts[0]).await.expect_err("no v4 address");
        assert!(err.contains("V4Only"), "{err}");
    }

    #[test]
    fn cache_keeps_addresses_per_host_and_forgets_changed_settings() {
        let c = cluster(r#"{"name": "a", "type": "strict_dns", "dns": {"hosts": [{"host": "x", "port": 1, "weight": 2}, {"host": "y", "port": 1}]}}"#);
        let dns = c.dns.clone().expect("dns");
        let cache = DnsCache::default();
        let a = SocketAddr::from(([10, 0, 0, 1], 1));
        let b = SocketAddr::from(([10, 0, 0, 2], 1));
        assert!(cache.store(&c, &dns, 0, vec![a]));
        assert!(cache.store(&c, &dns, 1, vec![a, b]));
        assert!(!cache.store(&c, &dns, 1, vec![a, b]));
        let eps: Vec<(SocketAddr, u32)> = cache.endpoints(&c).iter().map(|e| (e.address, e.weight)).collect();
        assert_eq!(eps, [(a, 2), (b, 1)], "one endpoint per address, the first host's weight");
        let mut other = c.clone();
        other.dns.as_mut().expect("dns").refresh_rate = Duration::from_secs(1);
        assert!(cache.endpoints(&other).is_empty(), "changed settings start over");
    }
}
