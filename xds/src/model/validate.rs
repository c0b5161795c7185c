//! Semantic checks on a parsed snapshot. Every error names the path and the bad value, so an
//! operator can fix a file without reading our code.

use std::collections::HashSet;
use std::fmt;

use super::*;

/// One problem in a config, at a path such as `clusters[2].endpoints[0].address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors; knows the snapshot's cluster and route config names so that references are
/// checked in constant time (a mesh has thousands of each).
struct Checker<'a> {
    errors: Vec<ConfigError>,
    clusters: HashSet<&'a str>,
    route_configs: HashSet<&'a str>,
}

impl Checker<'_> {
    fn has_cluster(&self, name: &str) -> bool {
        self.clusters.contains(name)
    }

    fn has_route_config(&self, name: &str) -> bool {
        self.route_configs.contains(name)
    }

    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    fn unique<'a>(&mut self, what: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            if name.is_empty() {
                self.err(format!("{what}[{i}].name"), "must not be empty");
            } else if !seen.insert(name) {
                self.err(format!("{what}[{i}].name"), format!("duplicate name {name:?}"));
            }
        }
    }

    fn regex(&mut self, path: String, pattern: &str) {
        if let Err(e) = regex::Regex::new(pattern) {
            self.err(path, format!("invalid regex {pattern:?}: {e}"));
        }
    }

    fn weighted(&mut self, path: &str, clusters: &[WeightedCluster]) {
        let mut total: u64 = 0;
        for (i, wc) in clusters.iter().enumerate() {
            total += u64::from(wc.weight);
            if !self.has_cluster(&wc.name) {
                self.err(format!("{path}[{i}].name"), format!("unknown cluster {:?}", wc.name));
            }
        }
        if total == 0 {
            self.err(path.to_string(), "weights must add up to more than 0");
        }
    }
}

impl Snapshot {
    /// Checks references, names, ports, weights and expressions; returns every error found.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut c = Checker {
            errors: Vec::new(),
            clusters: self.clusters.iter().map(|cl| cl.name.as_str()).collect(),
            route_configs: self.route_configs.iter().map(|r| r.name.as_str()).collect(),
        };
        if self.drain_timeout.is_zero() {
            c.err("drain_timeout", "must be greater than 0");
        }
        c.unique("listeners", self.listeners.iter().map(|l| l.name.as_str()));
        c.unique("route_configs", self.route_configs.iter().map(|r| r.name.as_str()));
        c.unique("clusters", self.clusters.iter().map(|cl| cl.name.as_str()));
        let mut addresses = HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if !addresses.insert(l.address) {
                c.err(format!("listeners[{i}].address"), format!("{} is used by another listener", l.address));
            }
            self.validate_listener(&mut c, i, l);
        }
        for (i, rc) in self.route_configs.iter().enumerate() {
            self.validate_route_config(&mut c, i, rc);
        }
        for (i, cl) in self.clusters.iter().enumerate() {
            validate_cluster(&mut c, i, cl);
        }
        if http_name_invalid(&self.lanes.header) || self.lanes.header.bytes().any(|b| b.is_ascii_uppercase()) {
            c.err("lanes.header", format!("{:?} is not a lowercase HTTP header name", self.lanes.header));
        }
        for (field, v) in [("lanes.baggage_key", &self.lanes.baggage_key), ("lanes.label", &self.lanes.label)] {
            if v.is_empty() || v.contains([',', ';', '=', ' ']) {
                c.err(field, format!("{v:?} is not a key"));
            }
        }
        for (path, message) in self.telemetry.problems() {
            c.err(path, message);
        }
        let inv = &self.invocation;
        if !inv.apps.is_empty() && !self.listeners.iter().any(|l| l.name == inv.listener) {
            c.err("invocation.listener", format!("unknown listener {:?}", inv.listener));
        }
        for (app, authority) in &inv.apps {
            if authority.is_empty() || authority.contains(['/', ' ', '?', '#']) {
                c.err(format!("invocation.apps.{app}"), format!("{authority:?} is not a host[:port]"));
            }
        }
        if c.errors.is_empty() { Ok(()) } else { Err(ConfigErrors(c.errors)) }
    }

    fn validate_listener(&self, c: &mut Checker<'_>, i: usize, l: &Listener) {
        for (j, fc) in l.filter_chains.iter().enumerate() {
            let path = format!("listeners[{i}].filter_chains[{j}]");
            let m = &fc.filter_chain_match;
            if m.destination_port == Some(0) {
                c.err(format!("{path}.match.destination_port"), "0 is not a port");
            }
            if fc.tls.is_some() && m.transport_protocol == Some(TransportProtocol::RawBuffer) {
                c.err(format!("{path}.tls"), "a chain matching transport_protocol raw_buffer cannot terminate TLS");
            }
            if m.transport_protocol == Some(TransportProtocol::Tls) && fc.tls.is_none() && fc.http.is_some() {
                c.err(format!("{path}.http"), "an `http` chain matching TLS must terminate it (`tls:`); pass TLS through with `tcp`");
            }
            if fc.tls.is_none() && m.transport_protocol != Some(TransportProtocol::Tls) && (!m.server_names.is_empty() || !m.application_protocols.is_empty()) {
                c.err(format!("{path}.match"), "server_names and application_protocols come from a TLS ClientHello; add transport_protocol: tls");
            }
            for (k, name) in m.server_names.iter().enumerate() {
                let bare = name.strip_prefix("*.").unwrap_or(name);
                if bare.is_empty() || dns_name(bare).is_none() {
                    c.err(format!("{path}.match.server_names[{k}]"), format!("{name:?} is not a DNS name or *.suffix"));
                }
            }
            match (&fc.http, &fc.tcp) {
                (Some(_), Some(_)) | (None, None) => {
                    c.err(path.clone(), "needs exactly one of `http` and `tcp`");
                }
                (Some(http), None) => {
                    if !c.has_route_config(&http.route_config) {
                        c.err(format!("{path}.http.route_config"), format!("unknown route config {:?}", http.route_config));
                    }
                    if fc.filter_chain_match.protocol == Some(Protocol::Tcp) {
                        c.err(format!("{path}.match.protocol"), "an `http` chain cannot match protocol tcp");
                    }
                }
                (None, Some(tcp)) => {
                    let path = format!("{path}.tcp");
                    match (&tcp.cluster, tcp.weighted_clusters.is_empty()) {
                        (Some(name), true) => {
                            if !c.has_cluster(name) {
                                c.err(format!("{path}.cluster"), format!("unknown cluster {name:?}"));
                            }
                        }
                        (None, false) => c.weighted(&format!("{path}.weighted_clusters"), &tcp.weighted_clusters),
                        _ => c.err(path, "needs exactly one of `cluster` and `weighted_clusters`"),
                    }
                }
            }
        }
    }

    fn validate_route_config(&self, c: &mut Checker<'_>, i: usize, rc: &RouteConfig) {
        c.unique(&format!("route_configs[{i}].virtual_hosts"), rc.virtual_hosts.iter().map(|v| v.name.as_str()));
        let mut domains = HashSet::new();
        for (j, vh) in rc.virtual_hosts.iter().enumerate() {
            let vpath = format!("route_configs[{i}].virtual_hosts[{j}]");
            if vh.domains.is_empty() {
                c.err(format!("{vpath}.domains"), "must list at least one domain");
            }
            for (k, d) in vh.domains.iter().enumerate() {
                let lower = d.to_ascii_lowercase();
                if d.is_empty() || (d.len() > 1 && d[1..d.len() - 1].contains('*')) {
                    c.err(format!("{vpath}.domains[{k}]"), format!("{d:?} is not a domain (use `*`, `*.suffix` or `prefix.*`)"));
                } else if !domains.insert(lower) {
                    c.err(format!("{vpath}.domains[{k}]"), format!("{d:?} is already served by another virtual host"));
                }
            }
            for (k, r) in vh.routes.iter().enumerate() {
                self.validate_route(c, &format!("{vpath}.routes[{k}]"), r);
            }
        }
    }

    fn validate_route(&self, c: &mut Checker<'_>, path: &str, r: &Route) {
        let m = &r.route_match;
        let kinds = [m.prefix.is_some(), m.path.is_some(), m.regex.is_some()].iter().filter(|b| **b).count();
        if kinds != 1 {
            c.err(format!("{path}.match"), "needs exactly one of `prefix`, `path` and `regex`");
        }
        if let Some(p) = m.prefix.as_deref().or(m.path.as_deref())
            && !p.starts_with('/') {
                c.err(format!("{path}.match"), format!("{p:?} must start with `/`"));
            }
        if let Some(re) = &m.regex {
            c.regex(format!("{path}.match.regex"), re);
        }
        for (h, hm) in m.headers.iter().enumerate() {
            let hpath = format!("{path}.match.headers[{h}]");
            if http_name_invalid(&hm.name) {
                c.err(format!("{hpath}.name"), format!("{:?} is not an HTTP header name", hm.name));
            }
            let kinds = [hm.exact.is_some(), hm.prefix.is_some(), hm.regex.is_some(), hm.present.is_some()];
            if kinds.iter().filter(|b| **b).count() != 1 {
                c.err(hpath.clone(), "needs exactly one of `exact`, `prefix`, `regex` and `present`");
            }
            if let Some(re) = &hm.regex {
                c.regex(format!("{hpath}.regex"), re);
            }
        }
        let actions = [r.route.is_some(), r.redirect.is_some(), r.direct_response.is_some()];
        if actions.iter().filter(|b| **b).count() != 1 {
            c.err(path.to_string(), "needs exactly one of `route`, `redirect` and `direct_response`");
        }
        if let Some(rd) = &r.redirect {
            validate_redirect(c, &format!("{path}.redirect"), rd, m);
        }
        if let Some(d) = &r.direct_response
            && !(200..=599).contains(&d.status)
        {
            c.err(format!("{path}.direct_response.status"), format!("{} is not an HTTP status (200-599)", d.status));
        }
        if let Some(a) = &r.route {
            match (&a.cluster, a.weighted_clusters.is_empty()) {
                (Some(name), true) => {
                    if !c.has_cluster(name) {
                        c.err(format!("{path}.route.cluster"), format!("unknown cluster {name:?}"));
                    }
                }
                (None, false) => c.weighted(&format!("{path}.route.weighted_clusters"), &a.weighted_clusters),
                _ => c.err(format!("{path}.route"), "needs exactly one of `cluster` and `weighted_clusters`"),
            }
            for (h, hp) in a.hash_policy.iter().enumerate() {
                let hpath = format!("{path}.route.hash_policy[{h}]");
                let kinds = [hp.header.is_some(), hp.cookie.is_some(), hp.source_ip == Some(true)];
                if kinds.iter().filter(|b| **b).count() != 1 {
                    c.err(hpath.clone(), "needs exactly one of `header`, `cookie` and `source_ip: true`");
                }
                if hp.header.as_deref().is_some_and(http_name_invalid) {
                    c.err(format!("{hpath}.header"), format!("{:?} is not an HTTP header name", hp.header.as_deref().unwrap_or("")));
                }
                if hp.cookie.as_deref().is_some_and(|n| n.is_empty() || n.contains(['=', ';', ' '])) {
                    c.err(format!("{hpath}.cookie"), format!("{:?} is not a cookie name", hp.cookie.as_deref().unwrap_or("")));
                }
            }
            if a.timeout.is_some_and(|t| t.is_zero()) {
                c.err(format!("{path}.route.timeout"), "must be greater than 0 (omit it for no timeout)");
            }
            if let Some(rp) = &a.retry_policy {
                if rp.retry_on.is_empty() && rp.num_retries > 0 {
                    c.err(format!("{path}.route.retry_policy.retry_on"), "must name at least one condition");
                }
                if rp.retry_on.contains(&RetryOn::RetriableStatusCodes) && rp.retriable_status_codes.is_empty() {
                    c.err(format!("{path}.route.retry_policy.retriable_status_codes"), "retriable-status-codes needs at least one status");
                }
                for (k, s) in rp.retriable_status_codes.iter().enumerate() {
                    if !(100..=599).contains(s) {
                        c.err(format!("{path}.route.retry_policy.retriable_status_codes[{k}]"), format!("{s} is not an HTTP status"));
                    }
                }
                if rp.per_try_timeout.is_some_and(|t| t.is_zero()) {
                    c.err(format!("{path}.route.retry_policy.per_try_timeout"), "must be greater than 0 (omit it for none)");
                }
            }
            for (k, mp) in a.mirrors.iter().enumerate() {
                if !c.has_cluster(&mp.cluster) {
                    c.err(format!("{path}.route.mirrors[{k}].cluster"), format!("unknown cluster {:?}", mp.cluster));
                }
                if !(0.0..=100.0).contains(&mp.percent) {
                    c.err(format!("{path}.route.mirrors[{k}].percent"), format!("{} is not between 0 and 100", mp.percent));
                }
            }
        }
        let header_lists = [
            ("request_headers_to_add", r.request_headers_to_add.iter().map(|h| h.name.as_str()).collect::<Vec<_>>()),
            ("response_headers_to_add", r.response_headers_to_add.iter().map(|h| h.name.as_str()).collect()),
            ("request_headers_to_remove", r.request_headers_to_remove.iter().map(String::as_str).collect()),
            ("response_headers_to_remove", r.response_headers_to_remove.iter().map(String::as_str).collect()),
        ];
        for (field, names) in header_lists {
            for (h, name) in names.iter().enumerate() {
                if http_name_invalid(name) {
                    c.err(format!("{path}.{field}[{h}]"), format!("{name:?} is not an HTTP header name"));
                }
            }
        }
        for (field, list) in [("request_headers_to_add", &r.request_headers_to_add), ("response_headers_to_add", &r.response_headers_to_add)] {
            for (h, hv) in list.iter().enumerate() {
                if hv.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    c.err(format!("{path}.{field}[{h}].value"), "must not contain CR, LF or NUL");
                }
            }
        }
    }
}

fn validate_redirect(c: &mut Checker<'_>, path: &str, rd: &Redirect, m: &RouteMatch) {
    if !REDIRECT_CODES.contains(&rd.response_code) {
        c.err(format!("{path}.response_code"), format!("{} is not a redirect status (301, 302, 303, 307, 308)", rd.response_code));
    }
    if let Some(s) = rd.scheme.as_deref()
        && !matches!(s, "http" | "https")
    {
        c.err(format!("{path}.scheme"), format!("{s:?} is not http or https"));
    }
    if let Some(h) = rd.host.as_deref()
        && (h.is_empty() || h.contains(['/', ' ', '?', '#', '@']))
    {
        c.err(format!("{path}.host"), format!("{h:?} is not a host"));
    }
    if rd.port == Some(0) {
        c.err(format!("{path}.port"), "0 is not a port");
    }
    let rewrites = [rd.path.is_some(), rd.prefix_rewrite.is_some(), rd.regex_rewrite.is_some()];
    if rewrites.iter().filter(|b| **b).count() > 1 {
        c.err(path.to_string(), "at most one of `path`, `prefix_rewrite` and `regex_rewrite`");
    }
    if rd.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
        c.err(format!("{path}.path"), format!("{:?} must start with `/`", rd.path.as_deref().unwrap_or("")));
    }
    if rd.prefix_rewrite.is_some() && m.regex.is_some() {
        c.err(format!("{path}.prefix_rewrite"), "needs a `prefix` or `path` match to know what to replace");
    }
    if let Some(rr) = &rd.regex_rewrite {
        c.regex(format!("{path}.regex_rewrite.pattern"), &rr.pattern);
    }
    for (field, v) in [("path", rd.path.as_deref()), ("prefix_rewrite", rd.prefix_rewrite.as_deref()), ("host", rd.host.as_deref())] {
        if v.is_some_and(|v| v.bytes().any(|b| b.is_ascii_control())) {
            c.err(format!("{path}.{field}"), "must not contain control characters");
        }
    }
}

fn http_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate_cluster(c: &mut Checker<'_>, i: usize, cl: &Cluster) {
    let path = format!("clusters[{i}]");
    if cl.connect_timeout.is_zero() {
        c.err(format!("{path}.connect_timeout"), "must be greater than 0");
    }
    match cl.kind {
        ClusterKind::Static if cl.endpoints.is_empty() => {
            c.err(format!("{path}.endpoints"), "a static cluster needs at least one endpoint");
        }
        ClusterKind::OriginalDst | ClusterKind::OriginalDstLoopback if !cl.endpoints.is_empty() => {
            c.err(format!("{path}.endpoints"), "an original_dst cluster takes its endpoint from each connection; remove the list");
        }
        ClusterKind::Blackhole if !cl.endpoints.is_empty() => {
            c.err(format!("{path}.endpoints"), "a blackhole cluster refuses every connection; remove the list");
        }
        ClusterKind::StrictDns | ClusterKind::LogicalDns if !cl.endpoints.is_empty() => {
            c.err(format!("{path}.endpoints"), "a DNS cluster's endpoints come from resolving `dns.hosts`; remove the list");
        }
        _ => {}
    }
    match (&cl.dns, cl.kind.is_dns()) {
        (None, true) => c.err(format!("{path}.dns"), "a DNS cluster needs `dns.hosts` to resolve"),
        (Some(_), false) => c.err(format!("{path}.dns"), "only strict_dns and logical_dns clusters resolve hosts; set `type`"),
        (Some(dns), true) => {
            if dns.hosts.is_empty() {
                c.err(format!("{path}.dns.hosts"), "must list at least one host");
            }
            if cl.kind == ClusterKind::LogicalDns && dns.hosts.len() > 1 {
                c.err(format!("{path}.dns.hosts"), "a logical_dns cluster resolves exactly one host");
            }
            if dns.refresh_rate.is_zero() {
                c.err(format!("{path}.dns.refresh_rate"), "must be greater than 0");
            }
            for (k, h) in dns.hosts.iter().enumerate() {
                let literal = h.host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
                if !literal && (h.host.is_empty() || dns_name(h.host.trim_end_matches('.')).is_none()) {
                    c.err(format!("{path}.dns.hosts[{k}].host"), format!("{:?} is not a DNS name or IP address", h.host));
                }
                if h.port == 0 {
                    c.err(format!("{path}.dns.hosts[{k}].port"), "0 is not a port");
                }
                if h.weight == 0 {
                    c.err(format!("{path}.dns.hosts[{k}].weight"), "must be at least 1");
                }
            }
        }
        (None, false) => {}
    }
    if cl.max_connection_duration.is_some_and(|d| d.is_zero()) {
        c.err(format!("{path}.max_connection_duration"), "must be greater than 0 (omit it for no limit)");
    }
    let tls = &cl.tls;
    if tls.mode == TlsMode::Disabled && (tls.sni.is_some() || !tls.subject_alt_names.is_empty() || !tls.alpn.is_empty() || !tls.endpoint_match.is_empty()) {
        c.err(format!("{path}.tls.mode"), "settings are given but mode is disabled; set mode: istio_mutual");
    }
    for (k, san) in tls.subject_alt_names.iter().enumerate() {
        if !san.starts_with("spiffe://") || san.len() <= "spiffe://".len() {
            c.err(format!("{path}.tls.subject_alt_names[{k}]"), format!("{san:?} is not a SPIFFE ID (spiffe://TRUST_DOMAIN/...)"));
        }
    }
    if tls.sni.as_deref().is_some_and(|s| s.is_empty() || dns_name(s).is_none()) {
        c.err(format!("{path}.tls.sni"), format!("{:?} is not a DNS name", tls.sni.as_deref().unwrap_or_default()));
    }
    let cb = &cl.circuit_breakers;
    for (field, v) in [("max_connections", cb.max_connections), ("max_pending_requests", cb.max_pending_requests), ("max_requests", cb.max_requests)] {
        if v == 0 {
            c.err(format!("{path}.circuit_breakers.{field}"), "0 would refuse every request");
        }
    }
    if let Some(od) = &cl.outlier_detection {
        if od.max_ejection_percent > 100 {
            c.err(format!("{path}.outlier_detection.max_ejection_percent"), format!("{} is over 100", od.max_ejection_percent));
        }
        if od.base_ejection_time.is_zero() {
            c.err(format!("{path}.outlier_detection.base_ejection_time"), "must be greater than 0");
        }
    }
    if let Some(hc) = &cl.health_check {
        if hc.interval.is_zero() || hc.timeout.is_zero() {
            c.err(format!("{path}.health_check"), "interval and timeout must be greater than 0");
        }
        if hc.unhealthy_threshold == 0 || hc.healthy_threshold == 0 {
            c.err(format!("{path}.health_check"), "thresholds must be at least 1");
        }
        if hc.http_path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            c.err(format!("{path}.health_check.http_path"), format!("{:?} must start with `/`", hc.http_path.as_deref().unwrap_or("")));
        }
        if cl.kind != ClusterKind::Static {
            c.err(format!("{path}.health_check"), "only a static cluster has endpoints to check");
        }
    }
    let mut seen = HashSet::new();
    for (j, ep) in cl.endpoints.iter().enumerate() {
        if ep.address.port() == 0 {
            c.err(format!("{path}.endpoints[{j}].address"), format!("{}: 0 is not a port", ep.address));
        }
        if ep.address.ip().is_unspecified() {
            c.err(format!("{path}.endpoints[{j}].address"), format!("{} is not a host to connect to", ep.address));
        }
        if !seen.insert(ep.address) {
            c.err(format!("{path}.endpoints[{j}].address"), format!("{} is listed twice", ep.address));
        }
        if ep.weight == 0 {
            c.err(format!("{path}.endpoints[{j}].weight"), "must be at least 1");
        }
    }
}

/// A syntactically valid DNS name (what TLS SNI accepts), without pulling a TLS crate into the model.
fn dns_name(s: &str) -> Option<&str> {
    let ok = s.len() <= 253
        && s.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') && !l.starts_with('-') && !l.ends_with('-'));
    ok.then_some(s)
}
