//! ClusterLoadAssignment → endpoints: addresses, weights, health and labels (for lanes and for
//! Istio's `tlsMode` transport socket match).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};

use super::common::{metadata_str, metadata_strings, socket_addr};
use super::reflect::check;
use super::report::{Cx, Tr};
use crate::model;

/// Endpoints that may take traffic. Envoy keeps UNHEALTHY / DRAINING / TIMEOUT hosts out of load
/// balancing, so they are left out here.
pub(crate) fn endpoints(cx: &mut Cx<'_>, path: &str, cla: &ClusterLoadAssignment) -> Tr<Vec<model::Endpoint>> {
    check(cx, path, cla, &["cluster_name", "endpoints"], &["policy", "named_endpoints"])?;
    let mut out: Vec<model::Endpoint> = Vec::new();
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
            let address = socket_addr(cx, &format!("{epath}.endpoint.address"), ep.address.as_ref())?;
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
            if let Some(dup) = out.iter_mut().find(|e| e.address == address) {
                // The same address twice (e.g. two localities): one endpoint with both weights.
                dup.weight = dup.weight.saturating_add(weight);
                continue;
            }
            out.push(model::Endpoint { address, weight, labels });
        }
    }
    Ok(out)
}

fn join(path: &str, rest: &str) -> String {
    if path.is_empty() { rest.to_string() } else { format!("{path}.{rest}") }
}
