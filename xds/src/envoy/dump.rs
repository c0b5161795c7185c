//! Envoy admin config dumps (`/config_dump`, `istioctl proxy-config all -o json`), JSON or YAML,
//! read into a [`ResourceSet`].

use serde_json::Value;

use super::reflect::from_json;
use super::{Kind, ResourceSet};

/// The resources of a dump, plus what Envoy itself had refused.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub resources: ResourceSet,
    /// Resources Envoy holds in `error_state` (its NACKs): `(type, name, Envoy's error text)`.
    /// Their last attempted version is in `resources`.
    pub envoy_rejected: Vec<(Kind, String, String)>,
    /// Entries that could not be read: `(where, why)`.
    pub unreadable: Vec<(String, String)>,
}

/// Parses a dump: `{"configs": [...]}` with `envoy.admin.v3.*ConfigDump` entries. JSON or YAML.
pub fn read_config_dump(text: &str) -> Result<Dump, String> {
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(json_err) => serde_norway::from_str(text).map_err(|e| format!("neither JSON ({json_err}) nor YAML ({e})"))?,
    };
    let configs = root.get("configs").and_then(Value::as_array).ok_or("no `configs` list: not an Envoy config dump")?;
    let mut dump = Dump::default();
    for (i, config) in configs.iter().enumerate() {
        let ty = config.get("@type").and_then(Value::as_str).unwrap_or_default();
        let ty = ty.rsplit('/').next().unwrap_or_default();
        let at = format!("configs[{i}]");
        match ty {
            "envoy.admin.v3.ClustersConfigDump" => {
                // static_* entries come from Envoy's bootstrap, not from xDS: oxidecar has its own.
                for key in ["dynamic_active_clusters", "dynamic_warming_clusters"] {
                    for (j, c) in list(config, key).iter().enumerate() {
                        add(&mut dump, Kind::Cluster, &format!("{at}.{key}[{j}].cluster"), c.get("cluster"));
                    }
                }
            }
            "envoy.admin.v3.EndpointsConfigDump" => {
                for key in ["dynamic_endpoint_configs"] {
                    for (j, e) in list(config, key).iter().enumerate() {
                        add(&mut dump, Kind::Endpoint, &format!("{at}.{key}[{j}].endpoint_config"), e.get("endpoint_config"));
                    }
                }
            }
            "envoy.admin.v3.ListenersConfigDump" => {
                for (j, l) in list(config, "dynamic_listeners").iter().enumerate() {
                    let path = format!("{at}.dynamic_listeners[{j}]");
                    if let Some(active) = l.pointer("/active_state/listener") {
                        add(&mut dump, Kind::Listener, &format!("{path}.active_state.listener"), Some(active));
                    } else if let Some(warming) = l.pointer("/warming_state/listener") {
                        add(&mut dump, Kind::Listener, &format!("{path}.warming_state.listener"), Some(warming));
                    }
                    if let Some(err) = l.get("error_state") {
                        let failed = err.get("failed_configuration");
                        let name = failed.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
                        let details = err.get("details").and_then(Value::as_str).unwrap_or_default();
                        let already = dump.envoy_rejected.iter().any(|(k, n, _)| *k == Kind::Listener && n == name);
                        if !already {
                            dump.envoy_rejected.push((Kind::Listener, name.to_string(), details.trim().to_string()));
                        }
                        if l.get("active_state").is_none() && !dump.resources.listeners.contains_key(name) {
                            add(&mut dump, Kind::Listener, &format!("{path}.error_state.failed_configuration"), failed);
                        }
                    }
                }
            }
            "envoy.admin.v3.RoutesConfigDump" => {
                for key in ["dynamic_route_configs"] {
                    for (j, r) in list(config, key).iter().enumerate() {
                        add(&mut dump, Kind::Route, &format!("{at}.{key}[{j}].route_config"), r.get("route_config"));
                    }
                }
            }
            "envoy.admin.v3.SecretsConfigDump" => {
                for key in ["dynamic_active_secrets", "dynamic_warming_secrets"] {
                    for (j, s) in list(config, key).iter().enumerate() {
                        add(&mut dump, Kind::Secret, &format!("{at}.{key}[{j}].secret"), s.get("secret"));
                    }
                }
            }
            // Bootstrap, scoped routes, ECDS: not resources oxidecar subscribes to.
            _ => {}
        }
    }
    Ok(dump)
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn add(dump: &mut Dump, kind: Kind, at: &str, value: Option<&Value>) {
    let Some(value) = value else { return };
    use envoy_types::pb::envoy::config::{cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment};
    use envoy_types::pb::envoy::config::{listener::v3::Listener, route::v3::RouteConfiguration};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    let set = &mut dump.resources;
    let result = match kind {
        Kind::Cluster => from_json::<Cluster>(value).map(|r| {
            set.clusters.insert(r.name.clone(), std::sync::Arc::new(r));
        }),
        Kind::Endpoint => from_json::<ClusterLoadAssignment>(value).map(|r| {
            set.endpoints.insert(r.cluster_name.clone(), std::sync::Arc::new(r));
        }),
        Kind::Listener => from_json::<Listener>(value).map(|r| {
            set.listeners.insert(r.name.clone(), std::sync::Arc::new(r));
        }),
        Kind::Route => from_json::<RouteConfiguration>(value).map(|r| {
            set.routes.insert(r.name.clone(), std::sync::Arc::new(r));
        }),
        Kind::Secret => from_json::<Secret>(value).map(|r| {
            set.secrets.insert(r.name.clone(), std::sync::Arc::new(r));
        }),
    };
    if let Err(e) = result {
        dump.unreadable.push((at.to_string(), e));
    }
}
