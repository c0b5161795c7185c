//! Istio's standard label set for one request or connection: who the source and destination
//! are (this node, the peer's exchanged metadata, or `unknown`), the service, the protocol and
//! the outcome. Values a peer controls are bounded; labels the config drops are left empty
//! (Prometheus treats an empty label as an absent one).

use std::collections::HashSet;
use std::sync::RwLock;

use oxidecar_xds::model::{ISTIO_REQUEST_LABELS, MetricsSettings, Node, TrafficDirection};

use crate::peer::PeerInfo;

/// The value a label takes once it has seen its maximum of distinct values.
pub const OVERFLOW: &str = "other";
/// Labels whose values come from a finite set we produce, never from a peer.
const FIXED: [&str; 6] = ["reporter", "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy"];

/// One side of a request, as Istio labels it.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub workload: &'a str,
    pub namespace: &'a str,
    pub principal: &'a str,
    pub app: &'a str,
    pub version: &'a str,
    pub canonical_service: &'a str,
    pub canonical_revision: &'a str,
    pub cluster: &'a str,
}

impl<'a> Workload<'a> {
    pub const UNKNOWN: Workload<'static> = Workload {
        workload: "unknown",
        namespace: "unknown",
        principal: "unknown",
        app: "unknown",
        version: "unknown",
        canonical_service: "unknown",
        canonical_revision: "unknown",
        cluster: "unknown",
    };

    /// This proxy's own workload.
    pub fn node(node: &'a Node, principal: Option<&'a str>) -> Self {
        Workload {
            workload: node.workload_name(),
            namespace: node.namespace_name(),
            principal: principal.unwrap_or("unknown"),
            app: node.app_name(),
            version: node.version_name(),
            canonical_service: node.canonical_service_name(),
            canonical_revision: node.canonical_revision_name(),
            cluster: node.cluster_name(),
        }
    }

    /// The peer, from the metadata it sent (or `unknown` for what it did not say).
    pub fn peer(info: Option<&'a PeerInfo>, principal: Option<&'a str>) -> Self {
        let Some(p) = info else { return Workload { principal: principal.unwrap_or("unknown"), ..Workload::UNKNOWN } };
        let v = |s: &'a Option<String>| s.as_deref().unwrap_or("unknown");
        Workload {
            workload: v(&p.workload),
            namespace: v(&p.namespace),
            principal: principal.unwrap_or("unknown"),
            app: v(&p.app),
            version: v(&p.version),
            canonical_service: v(&p.canonical_service),
            canonical_revision: v(&p.canonical_revision),
            cluster: v(&p.cluster),
        }
    }
}

/// Every input of Istio's labels for one request (HTTP/gRPC) or connection (TCP).
#[derive(Debug, Clone, Copy)]
pub struct IstioLabels<'a> {
    pub direction: TrafficDirection,
    pub source: Workload<'a>,
    pub destination: Workload<'a>,
    /// `destination_service` (FQDN) and `destination_service_name`.
    pub service: &'a str,
    pub service_name: &'a str,
    pub protocol: &'a str,
    pub flags: &'a str,
    /// `mutual_tls` or `none` as the destination reports it; the source reports `unknown`.
    pub security_policy: &'a str,
    pub response_code: &'a str,
    pub grpc_status: &'a str,
}

/// The namespace part of a Kubernetes service FQDN (`reviews.shop.svc.cluster.local` → `shop`).
fn service_namespace(service: &str) -> &str {
    let mut parts = service.split('.');
    match (parts.next(), parts.next()) {
        (Some(_), Some(ns)) if !ns.is_empty() => ns,
        _ => "unknown",
    }
}

impl<'a> IstioLabels<'a> {
    /// Values in [`ISTIO_REQUEST_LABELS`] order, bounded and with dropped labels emptied.
    pub fn values(&self, bounds: &Bounds, settings: &MetricsSettings) -> [&'a str; 25] {
        let (s, d) = (&self.source, &self.destination);
        let mut v = [
            self.direction.reporter(),
            s.workload,
            s.namespace,
            s.principal,
            s.app,
            s.version,
            s.canonical_service,
            s.canonical_revision,
            s.cluster,
            d.workload,
            d.namespace,
            d.principal,
            d.app,
            d.version,
            self.service,
            self.service_name,
            service_namespace(self.service),
            d.canonical_service,
            d.canonical_revision,
            d.cluster,
            self.protocol,
            self.flags,
            self.security_policy,
            self.response_code,
            self.grpc_status,
        ];
        for (i, value) in v.iter_mut().enumerate() {
            if !settings.drop_labels.is_empty() && settings.drop_labels.iter().any(|l| l == ISTIO_REQUEST_LABELS[i]) {
                *value = "";
            } else if !FIXED.contains(&ISTIO_REQUEST_LABELS[i]) {
                *value = bounds.admit(i, value, settings.max_label_values);
            }
        }
        v
    }

    /// The 23 TCP labels (no response code or gRPC status).
    pub fn tcp_values(&self, bounds: &Bounds, settings: &MetricsSettings) -> [&'a str; 23] {
        let all = self.values(bounds, settings);
        let mut out = [""; 23];
        out.copy_from_slice(&all[..23]);
        out
    }
}

/// Distinct values seen per label; once a label has `max` of them, new values become `other`.
pub struct Bounds {
    seen: Vec<RwLock<HashSet<Box<str>>>>,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { seen: (0..ISTIO_REQUEST_LABELS.len()).map(|_| RwLock::new(HashSet::new())).collect() }
    }
}

impl Bounds {
    /// `value` if label `i` already has it or has room for it, else [`OVERFLOW`].
    fn admit<'v>(&self, i: usize, value: &'v str, max: u32) -> &'v str {
        let Some(lock) = self.seen.get(i) else { return value };
        if lock.read().is_ok_and(|s| s.contains(value)) {
            return value;
        }
        let Ok(mut set) = lock.write() else { return OVERFLOW };
        if set.contains(value) {
            return value;
        }
        if set.len() >= max as usize {
            return OVERFLOW;
        }
        set.insert(value.into());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(dest: Workload<'a>) -> IstioLabels<'a> {
        IstioLabels {
            direction: TrafficDirection::Outbound,
            source: Workload::UNKNOWN,
            destination: dest,
            service: "reviews.shop.svc.cluster.local",
            service_name: "reviews",
            protocol: "http",
            flags: "-",
            security_policy: "unknown",
            response_code: "200",
            grpc_status: "-",
        }
    }

    #[test]
    fn values_follow_istios_label_order_and_namespace_comes_from_the_fqdn() {
        let bounds = Bounds::default();
        let v = labels(Workload::UNKNOWN).values(&bounds, &MetricsSettings::default());
        let get = |name: &str| v[ISTIO_REQUEST_LABELS.iter().position(|l| *l == name).expect("label")];
        assert_eq!(get("reporter"), "source");
        assert_eq!(get("destination_service_namespace"), "shop");
        assert_eq!(get("response_code"), "200");
        assert_eq!(service_namespace("localhost"), "unknown");
    }

    #[test]
    fn peer_values_beyond_the_cap_become_other_and_dropped_labels_are_empty() {
        let bounds = Bounds::default();
        let settings = MetricsSettings { max_label_values: 2, drop_labels: vec!["destination_version".into()], ..MetricsSettings::default() };
        let names: Vec<String> = (0..4).map(|i| format!("w{i}")).collect();
        let got: Vec<&str> = names
            .iter()
            .map(|n| {
                let v = labels(Workload { workload: n, ..Workload::UNKNOWN }).values(&bounds, &settings);
                v[9]
            })
            .collect();
        assert_eq!(got, ["w0", "w1", OVERFLOW, OVERFLOW]);
        let again = labels(Workload { workload: "w1", version: "v9", ..Workload::UNKNOWN }).values(&bounds, &settings);
        assert_eq!((again[9], again[13]), ("w1", ""), "known values stay; dropped label is empty");
    }
}
