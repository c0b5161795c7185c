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
    /// Forward upstream. Exactly one of `route`, `redirect` and `direct_response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteAction>,
    /// Answer with a redirect built from the request's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Answer with a fixed status and body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
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
    /// Keys for ring_hash / maglev clusters; the first that yields a value is used.
    #[serde(default)]
    pub hash_policy: Vec<HashPolicy>,
    /// Copies of the request sent to other clusters, whose answers are discarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
}

/// Sends a copy of `percent` % of the route's requests to `cluster` (Envoy's request mirror
/// policy). The copy's authority gets `-shadow` appended; the primary never waits for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub cluster: String,
    #[serde(default = "default_mirror_percent")]
    pub percent: f64,
}

fn default_mirror_percent() -> f64 {
    100.0
}

/// A redirect answered by the proxy: the request's URL with the given parts replaced, in
/// `location`. At most one of `path`, `prefix_rewrite` and `regex_rewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// `http` or `https`; changing the scheme drops a default port (80, 443) of the request.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Replaces the host (and drops the request's port unless `port` is set).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Replaces the whole path (and the query, when it has one).
    #[serde(default)]
    pub path: Option<String>,
    /// Replaces the part of the path the route's `prefix` (or `path`) matched.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Rewrites the path with a regular expression; `\1` in the substitution is the first group.
    #[serde(default)]
    pub regex_rewrite: Option<RegexRewrite>,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "default_redirect_code")]
    pub response_code: u16,
    /// Leave the request's query out of the location.
    #[serde(default)]
    pub strip_query: bool,
}

/// The redirect statuses Envoy offers.
pub const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

fn default_redirect_code() -> u16 {
    301
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    pub pattern: String,
    pub substitution: String,
}

/// A response the proxy answers itself; the route's response headers are added to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: Option<String>,
}

/// One source of a consistent-hash key: exactly one of `header`, `cookie`, `source_ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashPolicy {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub source_ip: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

/// When and how often a failed attempt is tried again (on another endpoint when there is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_num_retries")]
    pub num_retries: u32,
    /// Conditions, Envoy's names.
    pub retry_on: Vec<RetryOn>,
    /// Statuses retried under `retriable-status-codes`.
    #[serde(default)]
    pub retriable_status_codes: Vec<u16>,
    /// Each attempt must answer within this (Envoy's `per_try_timeout`).
    #[serde(default, with = "humantime_serde")]
    pub per_try_timeout: Option<Duration>,
    /// First backoff interval; each retry doubles it up to 10×, with full jitter (Envoy's defaults).
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub base_interval: Duration,
    /// Retry requests whose method is not idempotent (POST, PATCH). Off by default.
    #[serde(default)]
    pub retry_non_idempotent: bool,
}

/// Istio's default when a VirtualService sets none.
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// Envoy's default retry back-off base interval.
pub const DEFAULT_RETRY_BASE_INTERVAL: Duration = Duration::from_millis(25);
fn default_num_retries() -> u32 {
    DEFAULT_NUM_RETRIES
}
fn default_backoff() -> Duration {
    DEFAULT_RETRY_BASE_INTERVAL
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx answer, and no answer at all (connect failure, reset, timeout).
    #[serde(rename = "5xx")]
    FiveXx,
    /// 502, 503, 504, and no answer at all.
    GatewayError,
    /// The upstream connection could not be established.
    ConnectFailure,
    /// The upstream connection broke or timed out before a response.
    Reset,
    /// HTTP/2 stream refused by the upstream (REFUSED_STREAM).
    RefusedStream,
    /// A status listed in `retriable_status_codes`.
    RetriableStatusCodes,
    /// gRPC status CANCELLED (1).
    Cancelled,
    /// gRPC status DEADLINE_EXCEEDED (4).
    DeadlineExceeded,
    /// gRPC status RESOURCE_EXHAUSTED (8).
    ResourceExhausted,
    /// gRPC status INTERNAL (13).
    Internal,
    /// gRPC status UNAVAILABLE (14).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}
