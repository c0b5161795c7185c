//! Loads Dapr `Component` and `Subscription` resources from YAML files (several documents per
//! file), honouring `scopes` and resolving `secretKeyRef` through the component's `auth.secretStore`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_norway::Value;

use crate::Component;
use crate::catalog::{self, Use};
use crate::lock::prefix::{PrefixedLockStore, lock_prefix};
use crate::metadata::Metadata;
use crate::registry::Registry;
use crate::resiliency::{Resiliency, ResiliencyResource};
use crate::state::prefix::{PrefixedStateStore, prefix_for};
use crate::subscription::{Match, Routes, Rule, Subscription};

/// A resource file or component that cannot be used; names the file, the resource and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {resource}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub resource: String,
    pub message: String,
}

/// A component ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedComponent {
    pub name: String,
    pub type_name: String,
    pub version: String,
    /// The file it came from; `None` for embedded defaults.
    pub file: Option<PathBuf>,
    pub component: Component,
}

/// Everything the resources path defines for this app.
#[derive(Debug, Default)]
pub struct Resources {
    pub components: Vec<LoadedComponent>,
    pub subscriptions: Vec<Subscription>,
    /// Timeouts, retries and circuit breakers from `kind: Resiliency` resources.
    pub resiliency: Resiliency,
}

#[derive(Debug, Deserialize)]
struct ObjectMeta {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Auth {
    secret_store: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretKeyRef {
    name: String,
    #[serde(default)]
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetadataEntry {
    name: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ComponentSpec {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    metadata: Vec<MetadataEntry>,
    #[serde(default)]
    init_timeout: Option<String>,
    #[serde(default)]
    ignore_errors: bool,
}

#[derive(Debug, Deserialize)]
struct ComponentDoc {
    metadata: ObjectMeta,
    spec: ComponentSpec,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    auth: Option<Auth>,
}

#[derive(Debug, Deserialize)]
struct RuleDoc {
    #[serde(rename = "match", default)]
    matcher: String,
    path: String,
}

#[derive(Debug, Deserialize, Default)]
struct RoutesDoc {
    #[serde(default)]
    rules: Vec<RuleDoc>,
    #[serde(default)]
    default: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionSpec {
    pubsubname: String,
    topic: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    routes: RoutesDoc,
    #[serde(default)]
    dead_letter_topic: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct SubscriptionDoc {
    metadata: ObjectMeta,
    spec: SubscriptionSpec,
    #[serde(default)]
    scopes: Vec<String>,
}

struct Pending {
    file: PathBuf,
    doc: ComponentDoc,
}

/// Loads every `*.yaml` / `*.yml` file in `paths` (files or directories, not recursive).
pub async fn load_resources(paths: &[PathBuf], app_id: &str, registry: &Registry) -> Result<Resources, ConfigError> {
    load_resources_in_lane(paths, app_id, None, registry).await
}

/// Like [`load_resources`], for a workload in `lane`: its pub/sub components consume in a consumer
/// group of their own (see [`crate::pubsub::lane_consumer_id`]), so the lane's copy of the app sees
/// every message instead of competing with the base copy for them.
pub async fn load_resources_in_lane(paths: &[PathBuf], app_id: &str, lane: Option<&str>, registry: &Registry) -> Result<Resources, ConfigError> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(yaml_files(p)?);
    }
    let mut pending = Vec::new();
    let mut subscriptions = Vec::new();
    let mut resiliency = Vec::new();
    for file in &files {
        parse_file(file, app_id, &mut pending, &mut subscriptions, &mut resiliency)?;
    }
    let resiliency = Resiliency::merge(resiliency)?;
    // Secret stores first, so other components can reference their secrets.
    pending.sort_by_key(|p| !p.doc.spec.type_name.starts_with("secretstores."));
    let mut components: Vec<LoadedComponent> = Vec::new();
    for Pending { file, doc } in pending {
        let err = |message: String| ConfigError {
            file: file.display().to_string(),
            resource: format!("component {:?}", doc.metadata.name),
            message,
        };
        if let Some(other) = components.iter().find(|c| c.name == doc.metadata.name) {
            let where_ = other.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
            return Err(err(format!("name already used by a component in {where_}")));
        }
        let declared = catalog::find(&doc.spec.type_name);
        let ctor = registry.get(&doc.spec.type_name).ok_or_else(|| match declared {
            Some(info) if !info.feature.is_empty() => err(format!(
                "spec.type: {:?} is not built into this binary (cargo feature {:?} of oxidecar-components)",
                doc.spec.type_name, info.feature
            )),
            _ => err(format!("spec.type: unknown component type {:?} (known: {})", doc.spec.type_name, registry.known_types().join(", "))),
        })?;
        let _ = (&doc.spec.init_timeout, doc.spec.ignore_errors);
        let mut values = BTreeMap::new();
        for (i, entry) in doc.spec.metadata.iter().enumerate() {
            let value = resolve_entry(entry, doc.auth.as_ref(), &components)
                .await
                .map_err(|m| err(format!("spec.metadata[{i}] ({}): {m}", entry.name)))?;
            values.insert(entry.name.clone(), value);
        }
        // Checked against the type's declaration (docs/components.md); keys Dapr defines that make no
        // difference here are dropped so the backend only sees what it uses.
        if let Some(info) = declared {
            info.validate(&values).map_err(|e| err(format!("spec.metadata: {e}")))?;
            values.retain(|k, _| info.key(k).is_none_or(|k| k.usage == Use::Used));
        }
        // daprd applies `keyPrefix` to every state and lock store: keys live under a prefix in the backend.
        let (state_prefix, lock_prefix) = match doc.spec.type_name.split('.').next() {
            Some("state") => (prefix_for(values.remove("keyPrefix").as_deref(), app_id, &doc.metadata.name), None),
            Some("lock") => (None, Some(lock_prefix(values.remove("keyPrefix").as_deref(), app_id, &doc.metadata.name))),
            _ => (None, None),
        };
        // Like daprd, a pub/sub without `consumerID` consumes as the app: replicas of one app share
        // a consumer group, different apps each get every message.
        if doc.spec.type_name.starts_with("pubsub.") && values.get(crate::pubsub::CONSUMER_ID).is_none_or(|v| v.is_empty()) {
            values.insert(crate::pubsub::CONSUMER_ID.to_string(), app_id.to_string());
        }
        if let Some(lane) = lane.filter(|_| doc.spec.type_name.starts_with("pubsub.")) {
            for key in crate::pubsub::GROUP_KEYS {
                if let Some(v) = values.get_mut(key).filter(|v| !v.is_empty()) {
                    *v = crate::pubsub::lane_consumer_id(v, lane);
                }
            }
        }
        let component = match ctor(Metadata::new(values)).map_err(|e| err(format!("spec.metadata: {e}")))? {
            Component::State(store) => match state_prefix {
                Some(prefix) => Component::State(Arc::new(PrefixedStateStore::new(store, prefix))),
                None => Component::State(store),
            },
            Component::Lock(store) => match lock_prefix {
                Some(prefix) => Component::Lock(Arc::new(PrefixedLockStore::new(store, prefix))),
                None => Component::Lock(store),
            },
            other => other,
        };
        components.push(LoadedComponent {
            name: doc.metadata.name,
            type_name: doc.spec.type_name,
            version: if doc.spec.version.is_empty() { "v1".to_string() } else { doc.spec.version },
            file: Some(file),
            component,
        });
    }
    for name in resiliency.component_targets() {
        if !components.iter().any(|c| c.name == name) {
            tracing::warn!(component = name, "resiliency policies name a component this app does not have");
        }
    }
    for name in resiliency.inbound_targets() {
        match components.iter().find(|c| c.name == name) {
            None => tracing::warn!(component = name, "inbound resiliency policies name a component this app does not have"),
            Some(c) if !(c.type_name.starts_with("pubsub.") || c.type_name.starts_with("bindings.")) => {
                tracing::warn!(component = name, r#type = %c.type_name, "inbound resiliency policies apply to pub/sub and input binding deliveries; this component delivers nothing to the app")
            }
            Some(_) => {}
        }
    }
    Ok(Resources { components, subscriptions, resiliency })
}

async fn resolve_entry(entry: &MetadataEntry, auth: Option<&Auth>, built: &[LoadedComponent]) -> Result<String, String> {
    match (&entry.value, &entry.secret_key_ref) {
        (Some(_), Some(_)) => Err("set either value or secretKeyRef, not both".to_string()),
        (Some(v), None) => scalar(v),
        (None, None) => Ok(String::new()),
        (None, Some(r)) => {
            let store_name = auth
                .map(|a| a.secret_store.as_str())
                .ok_or("secretKeyRef needs auth.secretStore naming a secret store component")?;
            let store = built
                .iter()
                .find_map(|c| match &c.component {
                    Component::SecretStore(s) if c.name == store_name => Some(s.clone()),
                    _ => None,
                })
                .ok_or_else(|| format!("secret store {store_name:?} (auth.secretStore) is not defined"))?;
            let secret = store
                .get(&r.name, &HashMap::new())
                .await
                .map_err(|e| format!("secretKeyRef {:?} in store {store_name:?}: {e}", r.name))?;
            let key = if r.key.is_empty() { &r.name } else { &r.key };
            secret
                .get(key)
                .cloned()
                .ok_or_else(|| format!("secret {:?} in store {store_name:?} has no key {key:?}", r.name))
        }
    }
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err("value must be a string, number or boolean".to_string()),
    }
}

fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let err = |message: String| ConfigError { file: path.display().to_string(), resource: "resources path".to_string(), message };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(format!("cannot be listed: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

fn parse_file(
    file: &Path,
    app_id: &str,
    pending: &mut Vec<Pending>,
    subs: &mut Vec<Subscription>,
    resiliency: &mut Vec<ResiliencyResource>,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.display().to_string(),
        resource: "file".to_string(),
        message: format!("cannot be read: {e}"),
    })?;
    for (index, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let err = |resource: String, message: String| ConfigError { file: file.display().to_string(), resource, message };
        let value = Value::deserialize(doc).map_err(|e| err(format!("document {index}"), format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        let resource = format!("{} {name:?} (document {index})", kind.to_lowercase());
        match kind.as_str() {
            "Component" => {
                let doc: ComponentDoc = serde_norway::from_value(value).map_err(|e| err(resource, e.to_string()))?;
                if doc.scopes.is_empty() || doc.scopes.iter().any(|s| s == app_id) {
                    pending.push(Pending { file: file.to_path_buf(), doc });
                }
            }
            "Subscription" => {
                let doc: SubscriptionDoc = serde_norway::from_value(value).map_err(|e| err(resource.clone(), e.to_string()))?;
                if doc.scopes.is_empty() || doc.scopes.iter().any(|s| s == app_id) {
                    subs.push(subscription(doc).map_err(|m| err(resource, m))?);
                }
            }
            "Resiliency" => {
                let path = file.display().to_string();
                if let Some(r) = crate::resiliency::parse_resource(value, &path, app_id).map_err(|m| err(resource, m))? {
                    resiliency.push(r);
                }
            }
            // Configuration, HTTPEndpoint, ... are not ours to load; Dapr shares the folder.
            other => tracing::debug!(file = %file.display(), kind = other, name, "resource kind ignored"),
        }
    }
    Ok(())
}

fn subscription(doc: SubscriptionDoc) -> Result<Subscription, String> {
    let s = doc.spec;
    let _ = doc.metadata.name;
    let mut rules = Vec::with_capacity(s.routes.rules.len());
    for (i, r) in s.routes.rules.into_iter().enumerate() {
        let matcher = Match::parse(&r.matcher).map_err(|m| format!("spec.routes.rules[{i}].match: {m}"))?;
        rules.push(Rule { matcher, path: r.path });
    }
    let default = if s.routes.default.is_empty() { s.route } else { s.routes.default };
    if rules.is_empty() && default.is_empty() {
        return Err("spec needs route or routes.default".to_string());
    }
    Ok(Subscription {
        pubsub_name: s.pubsubname,
        topic: s.topic,
        routes: Routes { rules, default },
        dead_letter_topic: (!s.dead_letter_topic.is_empty()).then_some(s.dead_letter_topic),
        metadata: s.metadata,
    })
}

#[cfg(test)]
mod tests;
