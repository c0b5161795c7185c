//! Envoy admin config dumps written by oxidecar (`/config_dump?format=envoy`), in the JSON shape
//! Envoy's admin endpoint and `istioctl proxy-config ... -o json` use: `{"configs": [...]}` with a
//! Bootstrap, Clusters, Endpoints, Listeners, Routes and Secrets dump. Private keys never leave
//! the process: they are written as `[redacted]`, as Envoy does.

mod answer;
mod from_model;

pub use from_model::resources_from_snapshot;

use std::collections::BTreeMap;
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::{DataSource, Node, data_source};
use envoy_types::pb::envoy::config::endpoint::v3::cluster_load_assignment::Policy;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{CertificateValidationContext, Secret, TlsCertificate, secret};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage, SerializeOptions, Value as Field};
use serde_json::{Map, Value, json};

use super::reflect::{STRING_VALUE, UNKNOWN_PREFIX, pool};
use super::{Kind, ResourceSet};

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";
/// What Envoy writes in place of key material.
pub const REDACTED: &str = "[redacted]";

/// When and at which version a resource was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMeta {
    pub version: String,
    pub last_updated: Option<SystemTime>,
}

/// A resource the proxy refused (its last good version, if any, stays in `resources`).
#[derive(Debug, Clone, PartialEq)]
pub struct FailedResource {
    pub resource: Any,
    pub version: String,
    pub details: String,
    pub at: SystemTime,
}

/// Everything a config dump shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DumpView {
    /// The node sent to the control plane (the bootstrap's `node`).
    pub node: Option<Node>,
    /// The resources in force, as last accepted.
    pub resources: ResourceSet,
    pub meta: BTreeMap<(Kind, String), ResourceMeta>,
    /// Refused resources by type and name (Envoy's `error_state`).
    pub failed: BTreeMap<(Kind, String), FailedResource>,
}

impl DumpView {
    /// Records `kind`'s held resources after a response: a resource whose version changed gets
    /// it and `now` as its last update.
    pub fn record(&mut self, kind: Kind, held: &ResourceSet, versions: &BTreeMap<String, String>, now: SystemTime) {
        self.meta.retain(|(k, n), _| *k != kind || held.contains(kind, n));
        for name in held.names(kind) {
            let version = versions.get(&name).cloned().unwrap_or_default();
            let entry = self.meta.entry((kind, name)).or_insert_with(|| ResourceMeta { version: String::new(), last_updated: None });
            if entry.version != version || entry.last_updated.is_none() {
                *entry = ResourceMeta { version, last_updated: Some(now) };
            }
        }
        match kind {
            Kind::Cluster => self.resources.clusters = held.clusters.clone(),
            Kind::Endpoint => self.resources.endpoints = held.endpoints.clone(),
            Kind::Listener => self.resources.listeners = held.listeners.clone(),
            Kind::Route => self.resources.routes = held.routes.clone(),
            Kind::Secret => self.resources.secrets = held.secrets.clone(),
        }
    }

    /// `names` of `kind` were accepted (or removed): whatever failed before is resolved.
    pub fn accepted(&mut self, kind: Kind, names: impl IntoIterator<Item = String>) {
        for name in names {
            self.failed.remove(&(kind, name));
        }
    }
}

fn timestamp(t: Option<SystemTime>) -> Option<Value> {
    t.map(|t| Value::String(humantime::format_rfc3339_millis(t).to_string()))
}

/// Protobuf JSON of `msg` with Envoy's field names. `Any`s of types the descriptor set does not
/// know (Istio's own filter configs) are written as `{"@type": URL}` without their contents.
pub fn to_json<M: Message + prost::Name>(msg: &M) -> Value {
    dynamic_json(&M::full_name(), &msg.encode_to_vec())
}

/// Protobuf JSON of the message an `Any` holds, with its `@type` first.
fn any_to_json(any: &Any) -> Value {
    let json = dynamic_json(any.type_url.rsplit('/').next().unwrap_or_default(), &any.value);
    let mut out = Map::new();
    out.insert("@type".into(), Value::String(any.type_url.clone()));
    if let Value::Object(fields) = json {
        out.extend(fields);
    }
    Value::Object(out)
}

fn dynamic_json(full_name: &str, bytes: &[u8]) -> Value {
    let Some(desc) = pool().get_message_by_name(full_name) else { return Value::Null };
    let Ok(mut dynamic) = DynamicMessage::decode(desc, bytes) else { return Value::Null };
    mask_unknown(&mut dynamic);
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut out = dynamic.serialize_with_options(serde_json::value::Serializer, &options).unwrap_or(Value::Null);
    unmask(&mut out);
    out
}

fn any_parts(m: &DynamicMessage) -> Option<(String, Vec<u8>)> {
    let url = m.get_field_by_name("type_url")?.as_str()?.to_string();
    let value = m.get_field_by_name("value")?.as_bytes()?.to_vec();
    Some((url, value))
}

/// Rewrites every nested `Any` so the serializer can write it: known types are walked into,
/// unknown ones become a placeholder naming their type.
fn mask_unknown(m: &mut DynamicMessage) {
    if m.descriptor().full_name() == "google.protobuf.Any" {
        let Some((url, bytes)) = any_parts(m) else { return };
        let name = url.rsplit('/').next().unwrap_or_default();
        let replacement = match pool().get_message_by_name(name) {
            Some(desc) => match DynamicMessage::decode(desc, bytes.as_slice()) {
                Ok(mut inner) => {
                    mask_unknown(&mut inner);
                    (url, inner.encode_to_vec())
                }
                Err(_) => (STRING_VALUE.to_string(), format!("{UNKNOWN_PREFIX}{url}").encode_to_vec()),
            },
            None => (STRING_VALUE.to_string(), format!("{UNKNOWN_PREFIX}{url}").encode_to_vec()),
        };
        m.set_field_by_name("type_url", Field::String(replacement.0));
        m.set_field_by_name("value", Field::Bytes(replacement.1.into()));
        return;
    }
    for (_, value) in m.fields_mut() {
        walk(value);
    }
}

fn walk(v: &mut Field) {
    match v {
        Field::Message(m) => mask_unknown(m),
        Field::List(items) => items.iter_mut().for_each(walk),
        Field::Map(map) => map.values_mut().for_each(walk),
        _ => {}
    }
}

/// `{"@type": StringValue, "value": "<prefix>URL"}` → `{"@type": URL}`.
fn unmask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let marker = (map.get("@type").and_then(Value::as_str) == Some(STRING_VALUE))
                .then(|| map.get("value").and_then(Value::as_str).and_then(|s| s.strip_prefix(UNKNOWN_PREFIX)).map(str::to_string))
                .flatten();
            if let Some(url) = marker {
                map.clear();
                map.insert("@type".into(), Value::String(url));
                return;
            }
            map.values_mut().for_each(unmask);
        }
        Value::Array(items) => items.iter_mut().for_each(unmask),
        _ => {}
    }
}

fn inline(pem: Vec<u8>) -> Option<DataSource> {
    Some(DataSource { specifier: Some(data_source::Specifier::InlineBytes(pem)), ..Default::default() })
}

/// The SDS secret `default`: a certificate chain and its key (PEM), as pilot-agent sends them.
pub fn certificate_secret(chain_pem: Vec<u8>, key_pem: Vec<u8>) -> Secret {
    Secret {
        name: "default".into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate { certificate_chain: inline(chain_pem), private_key: inline(key_pem), ..Default::default() })),
    }
}

/// The SDS secret `ROOTCA`: the trust bundle (PEM).
pub fn root_secret(roots_pem: Vec<u8>) -> Secret {
    Secret {
        name: "ROOTCA".into(),
        r#type: Some(secret::Type::ValidationContext(CertificateValidationContext { trusted_ca: inline(roots_pem), ..Default::default() })),
    }
}

/// A copy of `s` without key material: the private key (and any other secret value) becomes
/// `[redacted]`; certificates and trust bundles are public and stay.
pub fn redact_secret(s: &Secret) -> Secret {
    let redacted = || Some(DataSource { specifier: Some(data_source::Specifier::InlineString(REDACTED.into())), ..Default::default() });
    let mut out = s.clone();
    match &mut out.r#type {
        Some(secret::Type::TlsCertificate(c)) => {
            if c.private_key.is_some() {
                c.private_key = redacted();
            }
            if c.password.is_some() {
                c.password = redacted();
            }
            c.private_key_provider = None;
        }
        Some(secret::Type::ValidationContext(_)) | None => {}
        Some(secret::Type::SessionTicketKeys(k)) => {
            for key in &mut k.keys {
                *key = redacted().unwrap_or_default();
            }
        }
        Some(secret::Type::GenericSecret(g)) => g.secret = redacted(),
    }
    out
}

fn typed(kind: Kind, json: Value) -> Value {
    let mut json = json;
    if let Value::Object(map) = &mut json {
        let mut with_type = Map::new();
        with_type.insert("@type".into(), Value::String(kind.type_url().to_string()));
        with_type.extend(std::mem::take(map));
        *map = with_type;
    }
    json
}

/// The Envoy admin `ConfigDump` of `view`.
pub fn config_dump(view: &DumpView) -> Value {
    let meta = |kind: Kind, name: &str| view.meta.get(&(kind, name.to_string()));
    let entry = |kind: Kind, name: &str, key: &str, resource: Value| {
        let mut e = Map::new();
        if let Some(m) = meta(kind, name) {
            e.insert("version_info".into(), Value::String(m.version.clone()));
            if let Some(t) = timestamp(m.last_updated) {
                e.insert("last_updated".into(), t);
            }
        }
        e.insert(key.into(), typed(kind, resource));
        e
    };
    let failed = |kind: Kind, name: &str| view.failed.get(&(kind, name.to_string()));
    let error_state = |f: &FailedResource| {
        let resource = any_to_json(&f.resource);
        json!({ "failed_configuration": resource, "last_update_attempt": timestamp(Some(f.at)), "details": f.details })
    };
    let r = &view.resources;
    let clusters: Vec<Value> = r.clusters.iter().map(|(n, c)| Value::Object(entry(Kind::Cluster, n, "cluster", to_json(c.as_ref())))).collect();
    let mut endpoints: Vec<Value> = r.endpoints.iter().map(|(n, e)| Value::Object(entry(Kind::Endpoint, n, "endpoint_config", to_json(e.as_ref())))).collect();
    // Envoy lists the endpoints of every cluster, not only of EDS ones: a non-EDS cluster's are
    // its own load assignment (none for ORIGINAL_DST), with Envoy's default overprovisioning.
    for (name, c) in r.clusters.iter().filter(|(n, _)| !r.endpoints.contains_key(*n)) {
        use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
        if c.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)) {
            continue;
        }
        let mut cla = c.load_assignment.clone().unwrap_or_default();
        cla.cluster_name = name.clone();
        cla.policy = Some(Policy { overprovisioning_factor: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 140 }), ..Default::default() });
        endpoints.push(json!({ "endpoint_config": typed(Kind::Endpoint, to_json(&cla)) }));
    }
    let routes: Vec<Value> = r.routes.iter().map(|(n, rc)| Value::Object(entry(Kind::Route, n, "route_config", to_json(rc.as_ref())))).collect();
    let mut listener_names: Vec<&String> = r.listeners.keys().collect();
    listener_names.extend(view.failed.keys().filter(|(k, n)| *k == Kind::Listener && !r.listeners.contains_key(n)).map(|(_, n)| n));
    listener_names.sort();
    let listeners: Vec<Value> = listener_names
        .into_iter()
        .map(|n| {
            let mut l = Map::new();
            l.insert("name".into(), Value::String(n.clone()));
            if let Some(listener) = r.listeners.get(n) {
                l.insert("active_state".into(), Value::Object(entry(Kind::Listener, n, "listener", to_json(listener.as_ref()))));
            }
            if let Some(f) = failed(Kind::Listener, n) {
                l.insert("error_state".into(), error_state(f));
            }
            Value::Object(l)
        })
        .collect();
    let secrets: Vec<Value> = r
        .secrets
        .iter()
        .map(|(n, s)| {
            let mut e = entry(Kind::Secret, n, "secret", to_json(&redact_secret(s)));
            e.insert("name".into(), Value::String(n.clone()));
            Value::Object(e)
        })
        .collect();
    let mut bootstrap = Map::new();
    if let Some(node) = &view.node {
        bootstrap.insert("node".into(), to_json(node));
    }
    let admin = |name: &str, key: &str, items: Vec<Value>| json!({ "@type": format!("{ADMIN}{name}"), key: items });
    json!({
        "configs": [
            { "@type": format!("{ADMIN}BootstrapConfigDump"), "bootstrap": Value::Object(bootstrap) },
            admin("ClustersConfigDump", "dynamic_active_clusters", clusters),
            admin("EndpointsConfigDump", "dynamic_endpoint_configs", endpoints),
            admin("ListenersConfigDump", "dynamic_listeners", listeners),
            admin("RoutesConfigDump", "dynamic_route_configs", routes),
            admin("SecretsConfigDump", "dynamic_active_secrets", secrets),
        ]
    })
}

#[cfg(test)]
mod tests;
