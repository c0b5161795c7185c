//! Route matching: virtual host by authority, then the first route whose path and header
//! conditions hold. Compiled once per snapshot (regexes, lowercase header names, domain tables).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use oxidecar_xds::model::{self, RetryPolicy, RouteConfig};
use regex::Regex;

use crate::ClusterId;
use crate::weighted::WeightedChoice;

/// Why a route config could not be compiled (validation normally catches these first).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route config {config:?}: {what}")]
    Invalid { config: String, what: String },
}

/// Where a matched request goes.
#[derive(Debug, Clone)]
pub enum Destination {
    Cluster(ClusterId),
    Weighted(WeightedChoice<ClusterId>),
}

impl Destination {
    pub fn pick(&self) -> ClusterId {
        match self {
            Destination::Cluster(id) => *id,
            Destination::Weighted(w) => *w.pick(),
        }
    }

    /// Every cluster this destination may pick.
    pub fn clusters(&self) -> Vec<ClusterId> {
        match self {
            Destination::Cluster(id) => vec![*id],
            Destination::Weighted(w) => w.items().copied().collect(),
        }
    }
}

/// What a matched route does with the request.
#[derive(Debug)]
pub enum Action {
    /// Forward it to a cluster.
    Forward(Destination),
    /// Answer with a redirect.
    Redirect(crate::redirect::Redirect),
    /// Answer with a fixed status and body.
    Direct { status: u16, body: Option<bytes::Bytes> },
}

/// A copy of matching requests for another cluster: sent when a uniform draw in [0, 1) falls
/// below `fraction`.
#[derive(Debug, Clone)]
pub struct MirrorTarget {
    pub cluster: ClusterId,
    pub fraction: f64,
}

/// A route ready to apply: action, timeout, retries and header edits.
#[derive(Debug)]
pub struct CompiledRoute {
    /// `vhost/route-name` or `vhost/#index`, for logs.
    pub name: Arc<str>,
    pub action: Action,
    pub mirrors: Vec<MirrorTarget>,
    pub timeout: Option<Duration>,
    pub retry_policy: Option<RetryPolicy>,
    /// Where the consistent-hash key comes from, first match wins.
    pub hash_policy: Vec<HashKey>,
    pub request_headers_to_add: Vec<(HeaderName, HeaderValue)>,
    pub request_headers_to_remove: Vec<HeaderName>,
    pub response_headers_to_add: Vec<(HeaderName, HeaderValue)>,
    pub response_headers_to_remove: Vec<HeaderName>,
    path: PathMatch,
    headers: Vec<HeaderCheck>,
}

/// A source of consistent-hash keys.
#[derive(Debug, Clone)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(String),
    SourceIp,
}

impl CompiledRoute {
    /// Where a forwarding route sends requests; `None` when the proxy answers itself.
    pub fn destination(&self) -> Option<&Destination> {
        match &self.action {
            Action::Forward(d) => Some(d),
            _ => None,
        }
    }

    /// The request's hash key from the first policy that yields one.
    pub fn hash_key(&self, headers: &HeaderMap, source_ip: Option<std::net::IpAddr>) -> Option<u64> {
        self.hash_policy.iter().find_map(|k| match k {
            HashKey::Header(name) => headers.get(name).map(|v| crate::hash::key_hash(v.as_bytes())),
            HashKey::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| c.trim().strip_prefix(name.as_str()).and_then(|r| r.strip_prefix('=')))
                .map(|v| crate::hash::key_hash(v.as_bytes())),
            HashKey::SourceIp => source_ip.map(|ip| crate::hash::key_hash(ip.to_string().as_bytes())),
        })
    }
}

#[derive(Debug)]
enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderCheck {
    name: HeaderName,
    kind: HeaderKind,
    invert: bool,
}

#[derive(Debug)]
enum HeaderKind {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

#[derive(Debug, Default)]
struct VirtualHostRoutes {
    routes: Vec<Arc<CompiledRoute>>,
}

/// All virtual hosts of one route config, indexed by domain.
#[derive(Debug, Default)]
pub struct RouteTable {
    vhosts: Vec<VirtualHostRoutes>,
    exact: HashMap<String, usize>,
    /// `*.suffix` entries as (".suffix", vhost), longest first.
    suffixes: Vec<(String, usize)>,
    /// `prefix.*` entries as ("prefix.", vhost), longest first.
    prefixes: Vec<(String, usize)>,
    wildcard: Option<usize>,
}

impl RouteTable {
    /// Compiles `config`, resolving cluster names through `cluster_id`.
    pub fn new(config: &RouteConfig, cluster_id: impl Fn(&str) -> Option<ClusterId>) -> Result<Self, RouteError> {
        let invalid = |what: String| RouteError::Invalid { config: config.name.clone(), what };
        let mut table = RouteTable::default();
        for (v, vh) in config.virtual_hosts.iter().enumerate() {
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    table.wildcard = Some(v);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    table.suffixes.push((suffix.to_string(), v));
                } else if let Some(prefix) = d.strip_suffix('*') {
                    table.prefixes.push((prefix.to_string(), v));
                } else {
                    table.exact.insert(d, v);
                }
            }
            let mut routes = Vec::with_capacity(vh.routes.len());
            for (r, route) in vh.routes.iter().enumerate() {
                let name: Arc<str> = match &route.name {
                    Some(n) => format!("{}/{n}", vh.name).into(),
                    None => format!("{}/#{r}", vh.name).into(),
                };
                routes.push(Arc::new(compile_route(route, name, &cluster_id).map_err(|e| invalid(format!("{}: {e}", vh.name)))?));
            }
            table.vhosts.push(VirtualHostRoutes { routes });
        }
        table.suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table.prefixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(table)
    }

    /// The route for a request, or `None` (the proxy answers 404 `NR`).
    pub fn find(&self, authority: &str, path: &str, headers: &HeaderMap) -> Option<&Arc<CompiledRoute>> {
        let vhost = self.vhost(authority)?;
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.vhosts[vhost].routes.iter().find(|r| r.matches(path, headers))
    }

    fn vhost(&self, authority: &str) -> Option<usize> {
        let host = authority.to_ascii_lowercase();
        let without_port = strip_port(&host);
        for candidate in [host.as_str(), without_port] {
            if let Some(v) = self.exact.get(candidate) {
                return Some(*v);
            }
            if let Some((_, v)) = self.suffixes.iter().find(|(s, _)| candidate.len() > s.len() && candidate.ends_with(s.as_str())) {
                return Some(*v);
            }
            if let Some((_, v)) = self.prefixes.iter().find(|(p, _)| candidate.len() > p.len() && candidate.starts_with(p.as_str())) {
                return Some(*v);
            }
        }
        self.wildcard
    }
}

fn strip_port(host: &str) -> &str {
    if host.ends_with(']') {
        return host;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        Some((h, port)) if h.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl CompiledRoute {
    fn matches(&self, path: &str, headers: &HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(re) => re.is_match(path),
        };
        path_ok && self.headers.iter().all(|h| h.matches(headers))
    }
}

impl HeaderCheck {
    fn matches(&self, headers: &HeaderMap) -> bool {
        let value = headers.get(&self.name).and_then(|v| v.to_str().ok());
        let hit = match (&self.kind, value) {
            (HeaderKind::Present(want), v) => v.is_some() == *want,
            // Envoy: an absent header fails the match, so an inverted matcher accepts it.
            (_, None) => false,
            (HeaderKind::Exact(e), Some(v)) => v == e,
            (HeaderKind::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (HeaderKind::Regex(re), Some(v)) => re.is_match(v),
        };
        hit != self.invert
    }
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("regex {pattern:?}: {e}"))
}

fn header_pairs(list: &[model::HeaderValue]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    list.iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| format!("header {:?}: {e}", h.name))?;
            let value = HeaderValue::from_str(&h.value).map_err(|e| format!("header {:?} value: {e}", h.name))?;
            Ok((name, value))
        })
        .collect()
}

fn header_names(list: &[String]) -> Result<Vec<HeaderName>, String> {
    list.iter()
        .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header {n:?}: {e}")))
        .collect()
}

fn compile_route(
    route: &model::Route,
    name: Arc<str>,
    cluster_id: &impl Fn(&str) -> Option<ClusterId>,
) -> Result<CompiledRoute, String> {
    let m = &route.route_match;
    let path = match (&m.prefix, &m.path, &m.regex) {
        (Some(p), None, None) => PathMatch::Prefix(p.clone()),
        (None, Some(p), None) => PathMatch::Exact(p.clone()),
        (None, None, Some(re)) => PathMatch::Regex(anchored(re)?),
        _ => return Err(format!("route {name}: needs exactly one of prefix, path, regex")),
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for h in &m.headers {
        let kind = match (&h.exact, &h.prefix, &h.regex, h.present) {
            (Some(e), None, None, None) => HeaderKind::Exact(e.clone()),
            (None, Some(p), None, None) => HeaderKind::Prefix(p.clone()),
            (None, None, Some(re), None) => HeaderKind::Regex(anchored(re)?),
            (None, None, None, Some(b)) => HeaderKind::Present(b),
            _ => return Err(format!("route {name}: header {:?} needs exactly one condition", h.name)),
        };
        let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).map_err(|e| format!("header {:?}: {e}", h.name))?;
        headers.push(HeaderCheck { name, kind, invert: h.invert });
    }
    let resolve = |c: &str| cluster_id(c).ok_or_else(|| format!("route {name}: unknown cluster {c:?}"));
    let default_action = model::RouteAction::default();
    let a = route.route.as_ref().unwrap_or(&default_action);
    let action = match (&route.route, &route.redirect, &route.direct_response) {
        (Some(a), None, None) => Action::Forward(match (&a.cluster, a.weighted_clusters.as_slice()) {
            (Some(c), []) => Destination::Cluster(resolve(c)?),
            (None, list) if !list.is_empty() => {
                let items = list.iter().map(|w| Ok((resolve(&w.name)?, w.weight))).collect::<Result<Vec<_>, String>>()?;
                Destination::Weighted(WeightedChoice::new(items).ok_or_else(|| format!("route {name}: weights add up to 0"))?)
            }
            _ => return Err(format!("route {name}: needs exactly one of cluster, weighted_clusters")),
        }),
        (None, Some(r), None) => Action::Redirect(crate::redirect::Redirect::new(r, m).map_err(|e| format!("route {name}: redirect: {e}"))?),
        (None, None, Some(d)) => Action::Direct { status: d.status, body: d.body.clone().map(bytes::Bytes::from) },
        _ => return Err(format!("route {name}: needs exactly one of route, redirect, direct_response")),
    };
    let mirrors = a
        .mirrors
        .iter()
        .map(|mp| Ok(MirrorTarget { cluster: resolve(&mp.cluster)?, fraction: mp.percent / 100.0 }))
        .collect::<Result<Vec<_>, String>>()?;
    let hash_policy = a
        .hash_policy
        .iter()
        .map(|h| match (&h.header, &h.cookie, h.source_ip) {
            (Some(name), None, _) => HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map(HashKey::Header)
                .map_err(|e| format!("route {name}: hash header {name:?}: {e}")),
            (None, Some(cookie), _) => Ok(HashKey::Cookie(cookie.clone())),
            (None, None, Some(true)) => Ok(HashKey::SourceIp),
            _ => Err(format!("route {name}: a hash policy needs exactly one of header, cookie, source_ip")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(CompiledRoute {
        action,
        mirrors,
        timeout: a.timeout,
        retry_policy: a.retry_policy.clone(),
        hash_policy,
        request_headers_to_add: header_pairs(&route.request_headers_to_add)?,
        request_headers_to_remove: header_names(&route.request_headers_to_remove)?,
        response_headers_to_add: header_pairs(&route.response_headers_to_add)?,
        response_headers_to_remove: header_names(&route.response_headers_to_remove)?,
        path,
        headers,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let config: RouteConfig = serde_norway::from_str(yaml).expect("yaml");
        let clusters = ["a", "b", "c"];
        RouteTable::new(&config, |n| clusters.iter().position(|c| *c == n).map(ClusterId)).expect("compiles")
    }

    const CONFIG: &str = r#"
name: main
virtual_hosts:
  - name: reviews
    domains: ["reviews", "reviews.default.svc.cluster.local:9080"]
    routes:
      - name: lane
        match: { prefix: "/api", headers: [{ name: X-Lane, exact: dev }] }
        route: { cluster: b }
      - match: { regex: "/items/[0-9]+" }
        route: { cluster: c }
      - match: { path: "/exact" }
        route: { cluster: c }
      - match: { prefix: "/", headers: [{ name: x-debug, present: true, invert: true }] }
        route: { cluster: a }
  - name: wild
    domains: ["*.example.com", "api.*"]
    routes:
      - match: { prefix: "/" }
        route: { cluster: b }
  - name: fallback
    domains: ["*"]
    routes:
      - match: { prefix: "/only" }
        route: { cluster: c }
"#;

    fn dest(t: &RouteTable, host: &str, path: &str, hdrs: &[(&str, &str)]) -> Option<usize> {
        let mut h = HeaderMap::new();
        for (k, v) in hdrs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        t.find(host, path, &h).and_then(|r| r.destination()).map(|d| d.pick().0)
    }

    #[test]
    fn matches_hosts_paths_and_headers() {
        let t = table(CONFIG);
        assert_eq!(dest(&t, "reviews", "/api/x", &[("x-lane", "dev")]), Some(1));
        assert_eq!(dest(&t, "reviews:9080", "/api/x", &[]), Some(0), "port stripped, header absent");
        assert_eq!(dest(&t, "Reviews.default.svc.cluster.local:9080", "/items/42?x=1", &[]), Some(2));
        assert_eq!(dest(&t, "reviews", "/items/4a", &[]), Some(0), "regex is anchored");
        assert_eq!(dest(&t, "reviews", "/exact", &[]), Some(2));
        assert_eq!(dest(&t, "reviews", "/exact/more", &[]), Some(0));
        assert_eq!(dest(&t, "reviews", "/", &[("x-debug", "1")]), None, "inverted present");
        assert_eq!(dest(&t, "shop.example.com", "/", &[]), Some(1));
        assert_eq!(dest(&t, "api.internal:80", "/", &[]), Some(1));
        assert_eq!(dest(&t, "other", "/only/here", &[]), Some(2));
        assert_eq!(dest(&t, "other", "/elsewhere", &[]), None);
    }

    #[test]
    fn unknown_cluster_is_an_error_naming_it() {
        let config: RouteConfig = serde_norway::from_str(CONFIG).expect("yaml");
        let err = RouteTable::new(&config, |_| None).expect_err("unresolved");
        assert!(err.to_string().contains("unknown cluster \"b\""), "{err}");
    }

    #[test]
    fn strips_ports_from_names_and_ipv6() {
        assert_eq!(strip_port("a:80"), "a");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a"), "a");
    }
}
