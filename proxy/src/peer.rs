//! Istio's HTTP metadata exchange: each sidecar tells the other who it is in the
//! `x-envoy-peer-metadata` header (base64 of a protobuf `google.protobuf.Struct` with `NAME`,
//! `NAMESPACE`, `WORKLOAD_NAME`, `CLUSTER_ID`, `MESH_ID`, `LABELS`, ...) and
//! `x-envoy-peer-metadata-id`. The outbound side sends it on the request, the inbound side on the
//! response; each side reads the other's to fill the peer half of Istio's metric labels.
//! Envoy sidecars use the same headers, so the labels work across a mixed mesh.

use std::collections::BTreeMap;

use base64::Engine as _;
use http::HeaderValue;
use oxidecar_xds::model::Node;
use prost::Message as _;
use prost_types::value::Kind;
use prost_types::{Struct, Value};

pub const METADATA_HEADER: &str = "x-envoy-peer-metadata";
pub const METADATA_ID_HEADER: &str = "x-envoy-peer-metadata-id";
/// Decoded headers larger than this are ignored (a peer cannot make us parse megabytes).
const MAX_METADATA_BYTES: usize = 8 * 1024;

/// What a peer said about itself; absent fields are `unknown` in the labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub workload: Option<String>,
    pub namespace: Option<String>,
    pub app: Option<String>,
    pub version: Option<String>,
    pub canonical_service: Option<String>,
    pub canonical_revision: Option<String>,
    pub cluster: Option<String>,
}

fn string(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.to_string())) }
}

/// This node's metadata, as the two headers Istio sidecars exchange.
pub fn encode(node: &Node) -> (HeaderValue, HeaderValue) {
    let mut labels: BTreeMap<String, Value> = node.labels.iter().map(|(k, v)| (k.clone(), string(v))).collect();
    labels.insert("service.istio.io/canonical-name".into(), string(node.canonical_service_name()));
    labels.insert("service.istio.io/canonical-revision".into(), string(node.canonical_revision_name()));
    if let Some(app) = &node.app {
        labels.insert("app".into(), string(app));
    }
    if let Some(version) = &node.version {
        labels.insert("version".into(), string(version));
    }
    let mut fields = BTreeMap::new();
    fields.insert("NAME".to_string(), string(node.workload_name()));
    fields.insert("WORKLOAD_NAME".to_string(), string(node.workload_name()));
    fields.insert("NAMESPACE".to_string(), string(node.namespace_name()));
    fields.insert("CLUSTER_ID".to_string(), string(node.cluster_name()));
    fields.insert("MESH_ID".to_string(), string(node.mesh_name()));
    fields.insert("LABELS".to_string(), Value { kind: Some(Kind::StructValue(Struct { fields: labels })) });
    let bytes = Struct { fields }.encode_to_vec();
    let value = base64::engine::general_purpose::STANDARD.encode(bytes);
    let id = format!("sidecar~0.0.0.0~{}.{}~{}.svc.cluster.local", node.workload_name(), node.namespace_name(), node.namespace_name());
    (
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")),
        HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

fn field<'a>(s: &'a Struct, key: &str) -> Option<&'a str> {
    match s.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(v) if !v.is_empty() => Some(v),
        _ => None,
    }
}

/// Reads a peer's `x-envoy-peer-metadata`; `None` when absent or not decodable.
pub fn decode(value: &HeaderValue) -> Option<PeerInfo> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_bytes()).ok()?;
    if bytes.len() > MAX_METADATA_BYTES {
        return None;
    }
    let s = Struct::decode(bytes.as_slice()).ok()?;
    let labels = match s.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(l)) => Some(l),
        _ => None,
    };
    let label = |keys: &[&str]| labels.and_then(|l| keys.iter().find_map(|k| field(l, k))).map(str::to_owned);
    let workload = field(&s, "WORKLOAD_NAME").or_else(|| field(&s, "NAME")).map(str::to_owned);
    Some(PeerInfo {
        canonical_service: label(&["service.istio.io/canonical-name", "app.kubernetes.io/name", "app"]).or_else(|| workload.clone()),
        canonical_revision: label(&["service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"])
            .or_else(|| Some("latest".into())),
        app: label(&["app", "app.kubernetes.io/name"]),
        version: label(&["version", "app.kubernetes.io/version"]),
        namespace: field(&s, "NAMESPACE").map(str::to_owned),
        cluster: field(&s, "CLUSTER_ID").map(str::to_owned),
        workload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_round_trips_through_the_headers() {
        let mut node = Node { workload: Some("reviews-v2".into()), namespace: Some("shop".into()), ..Node::default() };
        node.labels.insert("app".into(), "reviews".into());
        node.labels.insert("version".into(), "v2".into());
        node.cluster_id = Some("east".into());
        let (value, id) = encode(&node);
        assert_eq!(id.to_str().ok(), Some("sidecar~0.0.0.0~reviews-v2.shop~shop.svc.cluster.local"));
        let peer = decode(&value).expect("decodes");
        assert_eq!(
            peer,
            PeerInfo {
                workload: Some("reviews-v2".into()),
                namespace: Some("shop".into()),
                app: Some("reviews".into()),
                version: Some("v2".into()),
                canonical_service: Some("reviews".into()),
                canonical_revision: Some("v2".into()),
                cluster: Some("east".into()),
            }
        );
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(decode(&HeaderValue::from_static("not base64!")), None);
        assert_eq!(decode(&HeaderValue::from_static("AAAA")), None, "not a Struct");
    }
}
