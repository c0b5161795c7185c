//! What the client holds between responses: the last good version of every resource, what it
//! is subscribed to, and the rule that turns a response into an ACK or a NACK.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::google::protobuf::Any;

use super::Handler;
use super::metrics::XdsMetrics;
use crate::envoy::render::FailedResource;
use crate::envoy::{Kind, Options, Rejection, ResourceSet, translate};
use crate::model::Snapshot;

/// One response, as both protocols deliver it.
pub(crate) struct Update {
    pub kind: Kind,
    /// `(name, version, resource)`.
    pub resources: Vec<(String, String, Any)>,
    pub removed: Vec<String>,
    /// State of the world for LDS/CDS: anything not listed is gone.
    pub replace_all: bool,
}

/// The answer to send back.
pub(crate) struct Verdict {
    /// None: ACK. Some: NACK with this detail.
    pub error: Option<String>,
}

pub(crate) struct State {
    pub base: Snapshot,
    pub accepted: ResourceSet,
    /// Per type, per resource: the version last accepted (delta's initial_resource_versions).
    pub versions: BTreeMap<Kind, BTreeMap<String, String>>,
    /// SotW: version_info last ACKed per type.
    pub type_versions: BTreeMap<Kind, String>,
    /// Types that answered at least once since start.
    pub received: BTreeSet<Kind>,
    pub secrets_over_ads: bool,
    /// The snapshot last put in force, to skip identical ones.
    applied: Option<std::sync::Arc<Snapshot>>,
    /// Load assignments the held EDS clusters name (kept up to date on every Cluster response).
    eds: BTreeSet<String>,
    /// Route configs the held listeners name through RDS (kept up to date on every Listener
    /// response, from the translation that response needed anyway).
    rds: BTreeSet<String>,
    /// What the admin's config dump shows.
    held: super::HeldView,
}

impl State {
    pub fn new(base: Snapshot, secrets_over_ads: bool, held: super::HeldView) -> State {
        State {
            base,
            accepted: ResourceSet::default(),
            versions: BTreeMap::new(),
            type_versions: BTreeMap::new(),
            received: BTreeSet::new(),
            secrets_over_ads,
            applied: None,
            eds: BTreeSet::new(),
            rds: BTreeSet::new(),
            held,
        }
    }

    /// Names to subscribe to for `kind`; None means wildcard.
    pub fn wanted(&self, kind: Kind) -> Option<BTreeSet<String>> {
        match kind {
            Kind::Cluster | Kind::Listener => None,
            Kind::Endpoint => Some(self.eds.clone()),
            Kind::Route => Some(self.rds.clone()),
            Kind::Secret => Some(["default".to_string(), "ROOTCA".to_string()].into()),
        }
    }

    fn options(&self) -> Options {
        Options { base: self.base.clone(), lenient_references: false, warming: true }
    }

    /// Takes a response in: decode, translate with everything else held, keep the last good
    /// version of whatever is rejected, put a complete snapshot in force, and say ACK or NACK.
    pub fn receive(&mut self, update: Update, handler: &dyn Handler, metrics: &XdsMetrics) -> Verdict {
        let kind = update.kind;
        self.received.insert(kind);
        let mut candidate = self.accepted.clone();
        let mut problems: Vec<String> = Vec::new();
        let mut touched = BTreeSet::new();
        // Refused resources with why, for the config dump's error state.
        let mut refused: Vec<(String, String)> = Vec::new();
        let mut versions = self.versions.get(&kind).cloned().unwrap_or_default();
        if update.replace_all {
            let listed: BTreeSet<&str> = update.resources.iter().map(|(n, _, _)| n.as_str()).collect();
            for name in candidate.names(kind) {
                if !listed.contains(name.as_str()) {
                    candidate.remove(kind, &name);
                    versions.remove(&name);
                }
            }
        }
        for name in &update.removed {
            candidate.remove(kind, name);
            versions.remove(name);
        }
        for (name, version, any) in &update.resources {
            match candidate.insert_any(kind, any) {
                Ok(decoded) if decoded == *name || name.is_empty() => {
                    touched.insert(decoded.clone());
                    versions.insert(decoded, version.clone());
                }
                Ok(decoded) => problems.push(format!("{kind} {name:?}: the resource is named {decoded:?}")),
                Err(e) => problems.push(format!("{kind} {name:?}: {e}")),
            }
        }
        let mut t = translate(&candidate, &self.options());
        let own: Vec<Rejection> = t.report.rejected.iter().filter(|r| r.kind == kind && touched.contains(&r.name)).cloned().collect();
        if !own.is_empty() {
            for r in &own {
                // The last good version stays in force (or nothing, for a new resource).
                match kind {
                    Kind::Listener => revert(&mut candidate.listeners, &self.accepted.listeners, &r.name),
                    Kind::Route => revert(&mut candidate.routes, &self.accepted.routes, &r.name),
                    Kind::Cluster => revert(&mut candidate.clusters, &self.accepted.clusters, &r.name),
                    Kind::Endpoint => revert(&mut candidate.endpoints, &self.accepted.endpoints, &r.name),
                    Kind::Secret => revert(&mut candidate.secrets, &self.accepted.secrets, &r.name),
                }
                match self.versions.get(&kind).and_then(|v| v.get(&r.name)) {
                    Some(old) => versions.insert(r.name.clone(), old.clone()),
                    None => versions.remove(&r.name),
                };
                tracing::warn!(resource = %r.name, kind = %kind, field = %r.field, reason = %r.reason, "xDS resource rejected; keeping its last good version");
                refused.push((r.name.clone(), format!("{}: {}", r.field, r.reason)));
                problems.push(r.to_string());
            }
            t = translate(&candidate, &self.options());
        }
        for r in t.report.rejected.iter().filter(|r| r.kind != kind || !touched.contains(&r.name)) {
            tracing::debug!(resource = %r.name, kind = %r.kind, reason = %r.reason, "held resource still rejected");
        }
        if kind == Kind::Secret {
            // The certificate store has the last word: a secret it refuses is NACKed like a
            // resource the translator refuses, and the one held before stays.
            for s in t.secrets.iter().filter(|s| touched.contains(&s.name)) {
                if let Err(e) = handler.secret(s) {
                    revert(&mut candidate.secrets, &self.accepted.secrets, &s.name);
                    match self.versions.get(&kind).and_then(|v| v.get(&s.name)) {
                        Some(old) => versions.insert(s.name.clone(), old.clone()),
                        None => versions.remove(&s.name),
                    };
                    tracing::warn!(secret = %s.name, error = %e, "SDS secret refused; keeping the one in force");
                    refused.push((s.name.clone(), e.clone()));
                    problems.push(format!("{kind} {:?}: {e}", s.name));
                }
            }
        }
        self.accepted = candidate;
        match kind {
            Kind::Cluster => self.eds = eds_names(&self.accepted),
            Kind::Listener => self.rds = std::mem::take(&mut t.rds_names),
            _ => {}
        }
        self.record(kind, &update, &touched, &refused, &versions);
        self.versions.insert(kind, versions);
        for ((k, field), n) in &t.report.ignored {
            let c = metrics.ignored_fields.with_label_values(&[k.label(), field]);
            if c.get() == 0 {
                tracing::info!(kind = %k, field, "ignoring a harmless Envoy field (logged once)");
            }
            if c.get() < *n {
                c.inc_by(*n - c.get());
            }
        }
        metrics.resources.with_label_values(&[kind.label()]).set(i64::try_from(self.accepted.count(kind)).unwrap_or(i64::MAX));
        if let Some(reason) = self.incomplete() {
            tracing::debug!(reason, "xDS config not complete yet; waiting before applying");
        } else if self.applied.as_deref() != Some(&t.snapshot) {
            // One copy of the model, shared by the data plane's tables and this comparison.
            let snapshot = std::sync::Arc::new(t.snapshot);
            match handler.apply(snapshot.clone()) {
                Ok(()) => {
                    metrics.snapshots.inc();
                    self.applied = Some(snapshot);
                }
                Err(e) => problems.push(format!("the proxy refused the snapshot: {e}")),
            }
        }
        let result = if problems.is_empty() { "ack" } else { "nack" };
        metrics.responses.with_label_values(&[kind.label(), result]).inc();
        if problems.is_empty() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            metrics.last_update.with_label_values(&[kind.label()]).set(i64::try_from(now).unwrap_or(0));
        }
        Verdict { error: (!problems.is_empty()).then(|| problems.join("; ")) }
    }

    /// Puts what this response changed in the config dump's view.
    fn record(&self, kind: Kind, update: &Update, touched: &BTreeSet<String>, refused: &[(String, String)], versions: &BTreeMap<String, String>) {
        let Ok(mut view) = self.held.lock() else { return };
        let now = std::time::SystemTime::now();
        view.record(kind, &self.accepted, versions, now);
        let failed: BTreeSet<&String> = refused.iter().map(|(n, _)| n).collect();
        view.accepted(kind, touched.iter().filter(|n| !failed.contains(n)).cloned().chain(update.removed.iter().cloned()));
        for (name, details) in refused {
            let Some((_, version, any)) = update.resources.iter().find(|(n, _, a)| n == name || (n.is_empty() && decoded_name(kind, a).as_deref() == Some(name.as_str()))) else { continue };
            let resource = FailedResource { resource: any.clone(), version: version.clone(), details: details.clone(), at: now };
            view.failed.insert((kind, name.clone()), resource);
        }
    }

    /// Why the held config cannot be applied yet (Envoy's warming), if it cannot.
    pub fn incomplete(&self) -> Option<String> {
        for k in [Kind::Cluster, Kind::Listener] {
            if !self.received.contains(&k) {
                return Some(format!("no {k} response yet"));
            }
        }
        if let Some(missing) = self.eds.iter().find(|n| !self.accepted.endpoints.contains_key(*n)) {
            return Some(format!("cluster load assignment {missing:?} not received"));
        }
        if let Some(missing) = self.rds.iter().find(|n| !self.accepted.routes.contains_key(*n)) {
            return Some(format!("route config {missing:?} not received"));
        }
        None
    }
}

/// The name a resource gives itself (state of the world sends no separate names).
fn decoded_name(kind: Kind, any: &Any) -> Option<String> {
    ResourceSet::default().insert_any(kind, any).ok()
}

fn revert<T: Clone>(into: &mut BTreeMap<String, T>, from: &BTreeMap<String, T>, name: &str) {
    match from.get(name) {
        Some(old) => {
            into.insert(name.to_string(), old.clone());
        }
        None => {
            into.remove(name);
        }
    }
}

/// Load assignment names the held EDS clusters wait for.
fn eds_names(set: &ResourceSet) -> BTreeSet<String> {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
    set.clusters
        .iter()
        .filter(|(_, c)| c.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)))
        .map(|(name, c)| c.eds_cluster_config.as_ref().map(|e| e.service_name.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| name.clone()))
        .collect()
}

