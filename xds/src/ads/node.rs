//! The Envoy `Node` pilot-agent would send: id `sidecar~IP~POD.NS~NS.svc.cluster.local` and the
//! metadata istiod reads (ISTIO_META_* variables, pod name, namespace, IPs, service account, ...).

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value};

/// The Istio version oxidecar presents itself as (istiod gates features on it).
pub const ISTIO_VERSION: &str = "1.24.0";

fn s(v: impl Into<String>) -> Value {
    Value { kind: Some(value::Kind::StringValue(v.into())) }
}

/// Builds the node from environment variables as pilot-agent does. `lookup` reads one variable.
pub fn node_from_env(lookup: impl Fn(&str) -> Option<String>, all: impl Iterator<Item = (String, String)>) -> Node {
    let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
    let pod = get("POD_NAME").unwrap_or_else(|| "oxidecar".to_string());
    let ns = get("POD_NAMESPACE").unwrap_or_else(|| "default".to_string());
    let ip = get("INSTANCE_IP").unwrap_or_else(|| "127.0.0.1".to_string());
    let domain = format!("{ns}.svc.{}", get("DNS_DOMAIN").unwrap_or_else(|| "cluster.local".to_string()));
    let mut fields: HashMap<String, Value> = HashMap::new();
    for (k, v) in all {
        if let Some(key) = k.strip_prefix("ISTIO_META_") {
            fields.insert(key.to_string(), s(v));
        } else if let Some(key) = k.strip_prefix("ISTIO_METAJSON_")
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&v)
        {
            fields.insert(key.to_string(), json_value(&json));
        }
    }
    fields.insert("NAME".into(), s(pod.clone()));
    fields.insert("NAMESPACE".into(), s(ns.clone()));
    fields.insert("INSTANCE_IPS".into(), s(get("INSTANCE_IPS").unwrap_or_else(|| ip.clone())));
    fields.entry("ISTIO_VERSION".into()).or_insert_with(|| s(ISTIO_VERSION));
    for (env, key) in [("SERVICE_ACCOUNT", "SERVICE_ACCOUNT"), ("CLUSTER_ID", "CLUSTER_ID"), ("MESH_ID", "MESH_ID"), ("ISTIO_META_WORKLOAD_NAME", "WORKLOAD_NAME")] {
        if let Some(v) = get(env) {
            fields.entry(key.into()).or_insert_with(|| s(v));
        }
    }
    if let Some(labels) = get("LABELS").and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok()) {
        fields.entry("LABELS".into()).or_insert_with(|| json_value(&labels));
    }
    let app = get("ISTIO_META_APP_CONTAINERS").map(|_| pod.clone()).unwrap_or_else(|| pod.split('-').next().unwrap_or(&pod).to_string());
    Node {
        id: format!("sidecar~{ip}~{pod}.{ns}~{domain}"),
        cluster: get("ISTIO_META_CLUSTER_NAME").unwrap_or_else(|| format!("{app}.{ns}")),
        metadata: Some(Struct { fields }),
        user_agent_name: "oxidecar".into(),
        ..Default::default()
    }
}

fn json_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => value::Kind::NullValue(0),
        serde_json::Value::Bool(b) => value::Kind::BoolValue(*b),
        serde_json::Value::Number(n) => value::Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => value::Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => value::Kind::ListValue(envoy_types::pb::google::protobuf::ListValue { values: a.iter().map(json_value).collect() }),
        serde_json::Value::Object(o) => value::Kind::StructValue(Struct { fields: o.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_and_metadata_follow_pilot_agent() {
        let env: HashMap<&str, &str> = [
            ("POD_NAME", "reviews-v1-abc"),
            ("POD_NAMESPACE", "bookinfo"),
            ("INSTANCE_IP", "10.1.2.3"),
            ("SERVICE_ACCOUNT", "reviews"),
            ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
            ("ISTIO_META_MESH_ID", "cluster.local"),
            ("LABELS", r#"{"app":"reviews","version":"v1"}"#),
        ]
        .into();
        let node = node_from_env(|k| env.get(k).map(|v| v.to_string()), env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(node.id, "sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local");
        let md = node.metadata.expect("metadata").fields;
        let str_of = |k: &str| match md.get(k).and_then(|v| v.kind.clone()) {
            Some(value::Kind::StringValue(s)) => s,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(str_of("CLUSTER_ID"), "Kubernetes");
        assert_eq!(str_of("MESH_ID"), "cluster.local");
        assert_eq!(str_of("NAMESPACE"), "bookinfo");
        assert_eq!(str_of("SERVICE_ACCOUNT"), "reviews");
        assert_eq!(str_of("INSTANCE_IPS"), "10.1.2.3");
        assert!(matches!(md.get("LABELS").and_then(|v| v.kind.clone()), Some(value::Kind::StructValue(_))));
    }
}
