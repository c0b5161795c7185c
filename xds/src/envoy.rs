//! Envoy v3 xDS resources → [`crate::model`]: what istiod sends (Listener, RouteConfiguration,
//! Cluster, ClusterLoadAssignment, Secret) becomes one validated [`Snapshot`](crate::Snapshot).
//!
//! Every field of a translated message is either used, ignored on purpose (harmless for this data
//! plane: stats, access logs, tracing, Istio's metadata exchange; counted in
//! `oxidecar_xds_ignored_fields_total`) or refused: a resource with a field that would change
//! behaviour and that oxidecar does not implement is rejected with its name and the field's path,
//! so the control plane sees a NACK instead of a silently different proxy.

mod answer;
mod assemble;
mod cluster;
mod common;
pub mod dump;
mod endpoint;
mod http;
mod listener;
mod reflect;
pub mod render;
mod report;
mod route;
mod secret;

pub use assemble::{Options, Translation, rds_names, translate};
pub use report::{Kind, Rejection, Report};
pub use secret::SdsSecret;

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

/// Type URLs of the resources oxidecar subscribes to.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}

/// Envoy resources by type and name: what the ADS client holds, or what a config dump contains.
/// Resources are shared (`Arc`): the ADS client's working copy, its last good set and the admin's
/// config dump hold the same decoded messages, and copying a set of thousands is cheap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    pub listeners: BTreeMap<String, Arc<Listener>>,
    pub routes: BTreeMap<String, Arc<RouteConfiguration>>,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    pub endpoints: BTreeMap<String, Arc<ClusterLoadAssignment>>,
    pub secrets: BTreeMap<String, Arc<Secret>>,
}

impl ResourceSet {
    /// Decodes one resource of `kind` and stores it under its own name; returns that name.
    pub fn insert_any(&mut self, kind: Kind, any: &Any) -> Result<String, String> {
        if any.type_url != kind.type_url() {
            return Err(format!("type {:?} where {} was expected", any.type_url, kind.type_url()));
        }
        let bytes = any.value.as_slice();
        let bad = |e: prost::DecodeError| format!("cannot decode {}: {e}", kind.type_url());
        let name = match kind {
            Kind::Listener => {
                let r = Listener::decode(bytes).map_err(bad)?;
                let n = r.name.clone();
                self.listeners.insert(n.clone(), Arc::new(r));
                n
            }
            Kind::Route => {
                let r = RouteConfiguration::decode(bytes).map_err(bad)?;
                let n = r.name.clone();
                self.routes.insert(n.clone(), Arc::new(r));
                n
            }
            Kind::Cluster => {
                let r = Cluster::decode(bytes).map_err(bad)?;
                let n = r.name.clone();
                self.clusters.insert(n.clone(), Arc::new(r));
                n
            }
            Kind::Endpoint => {
                let r = ClusterLoadAssignment::decode(bytes).map_err(bad)?;
                let n = r.cluster_name.clone();
                self.endpoints.insert(n.clone(), Arc::new(r));
                n
            }
            Kind::Secret => {
                let r = Secret::decode(bytes).map_err(bad)?;
                let n = r.name.clone();
                self.secrets.insert(n.clone(), Arc::new(r));
                n
            }
        };
        Ok(name)
    }

    /// Removes a resource by type and name; returns whether it was held.
    pub fn remove(&mut self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Listener => self.listeners.remove(name).is_some(),
            Kind::Route => self.routes.remove(name).is_some(),
            Kind::Cluster => self.clusters.remove(name).is_some(),
            Kind::Endpoint => self.endpoints.remove(name).is_some(),
            Kind::Secret => self.secrets.remove(name).is_some(),
        }
    }

    /// Every held resource of `kind` as `(name, Any)`, for serving it (tests, config dumps).
    pub fn to_any(&self, kind: Kind) -> Vec<(String, Any)> {
        fn pack<M: Message>(url: &str, items: &BTreeMap<String, Arc<M>>) -> Vec<(String, Any)> {
            items
                .iter()
                .map(|(n, m)| (n.clone(), Any { type_url: url.to_string(), value: m.encode_to_vec() }))
                .collect()
        }
        match kind {
            Kind::Listener => pack(kind.type_url(), &self.listeners),
            Kind::Route => pack(kind.type_url(), &self.routes),
            Kind::Cluster => pack(kind.type_url(), &self.clusters),
            Kind::Endpoint => pack(kind.type_url(), &self.endpoints),
            Kind::Secret => pack(kind.type_url(), &self.secrets),
        }
    }

    /// Whether a resource of `kind` named `name` is held.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Listener => self.listeners.contains_key(name),
            Kind::Route => self.routes.contains_key(name),
            Kind::Cluster => self.clusters.contains_key(name),
            Kind::Endpoint => self.endpoints.contains_key(name),
            Kind::Secret => self.secrets.contains_key(name),
        }
    }

    /// How many resources of `kind` are held.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Listener => self.listeners.len(),
            Kind::Route => self.routes.len(),
            Kind::Cluster => self.clusters.len(),
            Kind::Endpoint => self.endpoints.len(),
            Kind::Secret => self.secrets.len(),
        }
    }

    /// Names held for `kind`.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Listener => self.listeners.keys().cloned().collect(),
            Kind::Route => self.routes.keys().cloned().collect(),
            Kind::Cluster => self.clusters.keys().cloned().collect(),
            Kind::Endpoint => self.endpoints.keys().cloned().collect(),
            Kind::Secret => self.secrets.keys().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
