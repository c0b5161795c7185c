//! What a translation accepted, ignored and rejected, per resource type.

use std::collections::BTreeMap;
use std::fmt;

/// The xDS resource types oxidecar consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Cluster,
    Endpoint,
    Listener,
    Route,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route, Kind::Secret];

    pub fn type_url(self) -> &'static str {
        use super::type_url::*;
        match self {
            Kind::Listener => LISTENER,
            Kind::Route => ROUTE,
            Kind::Cluster => CLUSTER,
            Kind::Endpoint => ENDPOINT,
            Kind::Secret => SECRET,
        }
    }

    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == url)
    }

    /// The Envoy message name, as operators read it in dumps and NACKs.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Listener => "Listener",
            Kind::Route => "RouteConfiguration",
            Kind::Cluster => "Cluster",
            Kind::Endpoint => "ClusterLoadAssignment",
            Kind::Secret => "Secret",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A resource oxidecar refuses, with the field that made it refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: Kind,
    pub name: String,
    /// Path of the field inside the resource, e.g. `filter_chains[6].filters[2].typed_config.http_filters[5]`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}: {}", self.kind, self.name, self.field, self.reason)
    }
}

/// The outcome of translating a set of resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Resources translated, per type.
    pub accepted: BTreeMap<Kind, usize>,
    /// Harmless fields skipped: (type, field) → how many times.
    pub ignored: BTreeMap<(Kind, String), u64>,
    pub rejected: Vec<Rejection>,
    /// With lenient references: what the resources named but the set did not hold.
    pub unresolved: Vec<String>,
    /// Listeners waiting for their route configs (live streams only).
    pub warming: Vec<String>,
}

impl Report {
    pub fn rejected_of(&self, kind: Kind) -> impl Iterator<Item = &Rejection> {
        self.rejected.iter().filter(move |r| r.kind == kind)
    }
}

/// Translation context for one resource: where we are and what was skipped on the way.
pub(crate) struct Cx<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub ignored: &'a mut BTreeMap<(Kind, String), u64>,
}

impl Cx<'_> {
    pub fn ignore(&mut self, field: &str) {
        *self.ignored.entry((self.kind, field.to_string())).or_default() += 1;
    }

    pub fn reject(&self, field: impl Into<String>, reason: impl Into<String>) -> Rejection {
        Rejection { kind: self.kind, name: self.name.to_string(), field: field.into(), reason: reason.into() }
    }
}

/// Shorthand for translation results.
pub(crate) type Tr<T> = Result<T, Rejection>;
