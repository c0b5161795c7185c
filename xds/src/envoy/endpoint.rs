//! ClusterLoadAssignment → endpoints: addresses, weights, health and labels (for lanes and for
//! Istio's `tlsMode` transport socket match).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};

use super::common::{host_port, ip_addr, metadata_str, metadata_strings};
use super::reflect::check;
use super::report::{Cx, Tr};
use crate::model;

/// One lb_endpoint as listed: host (IP or name), port, weight, labels, and where it was.
pub(crate) struct Entry {
    pub field: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
}

/// Endpoints that may take traffic, with IP addresses. The same address listed twice (e.g. in two
/// localities) becomes one endpoint with both weights.
pub(crate) fn endpoints(cx: &mut Cx<'_>, path: &str, cla: &ClusterLoadAssignment) -> Tr<Vec<model::Endpoint>> {
    let mut out: Vec<model::Endpoint> = Vec::new();
    for e in entries(cx, path, cla)? {
        let address = ip_addr(cx, &e.field, &e.host, e.port)?;
        if let Some(dup) = out.iter_mut().find(|x| x.address == address) {
            dup.weight = dup.weight.saturating_add(e.weight);
            continue;
        }
        out.push(model::Endpoint { address, weight: e.weight, labels: e.labels });
    }
    Ok(out)
}

/// The hosts a STRICT_DNS / LOGICAL_DNS cluster resolves.
pub(crate) fn dns_hosts(cx: &mut Cx<'_>, path: &str, cla: &ClusterLoadAssignment) -> Tr<Vec<model::DnsHost>> {
    Ok(entries(cx, path, cla)?.into_iter().map(|e| model::DnsHost { host: e.host, port: e.port, weight: e.weight, labels: e.labels }).collect())
}

/// Every lb_endpoint that may take traffic. Envoy keeps UNHEALTHY / DRAINING / TIMEOUT hosts out
/// of load balancing, so they are left out here.
fn entries(cx: &mut Cx<'_>, path: &str, cla: &ClusterLoadAssignment) -> Tr<Vec<Entry>> {
    check(cx, path, cla, &["cluster_name", "endpoints"], &["policy", "named_endpoints"])?;
    let mut out: Vec<Entry> = Vec::new();
    for (i, group) in cla.endpoints.iter().enumerate() {
        let gpath = join(path, &format!("endpoints[{i}]"));
        check(cx, &gpath, group, &["locality", "lb_endpoints", "priority"], &["load_balancing_weight", "metadata", "proximity"])?;
        if group.priority > 0 {
            return Err(cx.reject(format!("{gpath}.priority"), "priority levels (locality failover) are not supported"));
        }
        for (j, lb) in group.lb_endpoints.iter().enumerate() {
            let epath = format!("{gpath}.lb_endpoints[{j}]");
            check(cx, &epath, lb, &["endpoint", "health_status", "metadata", "load_balancing_weight"], &[])?;
            let healthy = matches!(
                HealthStatus::try_from(lb.health_status),
                Ok(HealthStatus::Unknown | HealthStatus::Healthy | HealthStatus::Degraded)
            );
            if !healthy {
                continue;
            }
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                return Err(cx.reject(format!("{epath}.endpoint_name"), "named endpoints are not supported"));
            };
            check(cx, &format!("{epath}.endpoint"), ep, &["address"], &["health_check_config", "hostname"])?;
            let field = format!("{epath}.endpoint.address");
            let (host, port) = host_port(cx, &field, ep.address.as_ref())?;
            let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if weight == 0 {
                return Err(cx.reject(format!("{epath}.load_balancing_weight"), "must be at least 1"));
            }
            let mut labels = BTreeMap::new();
            let md = lb.metadata.as_ref();
            labels.extend(metadata_strings(md, "envoy.transport_socket_match"));
            labels.extend(metadata_strings(md, "envoy.lb"));
            labels.extend(metadata_strings(md, "istio").into_iter().filter(|(k, _)| k != "workload"));
            if let Some(w) = metadata_str(md, "istio", "workload") {
                // name;namespace;canonical service;canonical revision;cluster
                let parts: Vec<&str> = w.split(';').collect();
                for (k, idx) in [("workload", 0), ("namespace", 1), ("service.istio.io/canonical-name", 2), ("service.istio.io/canonical-revision", 3)] {
                    if let Some(v) = parts.get(idx).filter(|v| !v.is_empty()) {
                        labels.insert(k.to_string(), (*v).to_string());
                    }
                }
            }
            if let Some(loc) = &group.locality {
                for (k, v) in [("topology.kubernetes.io/region", &loc.region), ("topology.kubernetes.io/zone", &loc.zone), ("topology.istio.io/subzone", &loc.sub_zone)] {
                    if !v.is_empty() {
                        labels.insert(k.to_string(), v.clone());
                    }
                }
            }
            out.push(Entry { field, host, port, weight, labels });
        }
    }
    Ok(out)
}

fn join(path: &str, rest: &str) -> String {
    if path.is_empty() { rest.to_string() } else { format!("{path}.{rest}") }
}
