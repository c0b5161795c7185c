//! HTTP route configs: virtual hosts, matches and actions.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHost>,
}

/// Requests whose authority matches one of `domains` are routed by `routes`, first match wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    pub name: String,
    /// Exact hosts (`reviews`, `reviews:9080`), `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub route_match: RouteMatch,
    pub route: RouteAction,
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderValue>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// Exactly one of `prefix`, `path`, `regex`; every header matcher must hold too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// A regular expression the whole path (without the query) must match.
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub headers: Vec<HeaderMatcher>,
}

/// Exactly one of `exact`, `prefix`, `regex`, `present`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatcher {
    pub name: String,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
    /// Negates the result (Envoy's `invert_match`).
    #[serde(default)]
    pub invert: bool,
}

/// Exactly one of `cluster` and `weighted_clusters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteAction {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub weighted_clusters: Vec<WeightedCluster>,
    /// Upstream must answer (first byte, and between reads) within this time, or 504.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

/// When and how often a failed attempt is tried again on another endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_num_retries")]
    pub num_retries: u32,
    /// Conditions, Envoy's names.
    pub retry_on: Vec<RetryOn>,
}

/// Istio's default when a VirtualService sets none.
pub const DEFAULT_NUM_RETRIES: u32 = 2;
fn default_num_retries() -> u32 {
    DEFAULT_NUM_RETRIES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The upstream connection could not be established.
    ConnectFailure,
    /// A reused upstream connection was reset before any response byte arrived.
    Reset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}
