//! RouteConfiguration → [`model::RouteConfig`]: virtual hosts, matches, cluster or weighted
//! clusters, timeouts, retries, hash policies and header changes (redirects, direct responses and
//! mirrors are in `answer`).

use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration, VirtualHost, header_matcher, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::common::duration;
use super::reflect::{any_type, check};
use super::report::{Cx, Tr};
use crate::model::{self, RetryOn};

pub(crate) fn translate(cx: &mut Cx<'_>, rc: &RouteConfiguration) -> Tr<model::RouteConfig> {
    check(
        cx,
        "",
        rc,
        &["name", "virtual_hosts", "ignore_port_in_host_matching", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"],
        &["validate_clusters", "max_direct_response_body_size_bytes", "internal_only_headers", "metadata"],
    )?;
    // oxidecar matches a domain with the port, then without it: what Istio's
    // ignore_port_in_host_matching needs, given that Istio lists both forms.
    let mut out = model::RouteConfig { name: rc.name.clone(), virtual_hosts: Vec::new() };
    let outer = Headers::of(cx, "", &rc.request_headers_to_add, &rc.request_headers_to_remove, &rc.response_headers_to_add, &rc.response_headers_to_remove)?;
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        out.virtual_hosts.push(virtual_host(cx, &format!("virtual_hosts[{i}]"), vh, &outer)?);
    }
    Ok(out)
}

/// Header changes at one level (route config, virtual host, route); outer levels apply after inner ones.
#[derive(Default, Clone)]
struct Headers {
    req_add: Vec<model::HeaderValue>,
    req_remove: Vec<String>,
    resp_add: Vec<model::HeaderValue>,
    resp_remove: Vec<String>,
}

impl Headers {
    fn of(cx: &mut Cx<'_>, path: &str, ra: &[HeaderValueOption], rr: &[String], sa: &[HeaderValueOption], sr: &[String]) -> Tr<Headers> {
        Ok(Headers {
            req_add: header_values(cx, &join(path, "request_headers_to_add"), ra)?,
            req_remove: rr.to_vec(),
            resp_add: header_values(cx, &join(path, "response_headers_to_add"), sa)?,
            resp_remove: sr.to_vec(),
        })
    }

    fn then(mut self, outer: &Headers) -> Headers {
        self.req_add.extend(outer.req_add.iter().cloned());
        self.req_remove.extend(outer.req_remove.iter().cloned());
        self.resp_add.extend(outer.resp_add.iter().cloned());
        self.resp_remove.extend(outer.resp_remove.iter().cloned());
        self
    }
}

fn header_values(cx: &mut Cx<'_>, path: &str, list: &[HeaderValueOption]) -> Tr<Vec<model::HeaderValue>> {
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        check(cx, &at, h, &["header"], &["append", "append_action", "keep_empty_value"])?;
        let Some(hv) = &h.header else { return Err(cx.reject(at, "needs a header")) };
        let value = if hv.raw_value.is_empty() { hv.value.clone() } else { String::from_utf8_lossy(&hv.raw_value).into_owned() };
        out.push(model::HeaderValue { name: hv.key.to_ascii_lowercase(), value });
    }
    Ok(out)
}

fn virtual_host(cx: &mut Cx<'_>, path: &str, vh: &VirtualHost, outer: &Headers) -> Tr<model::VirtualHost> {
    check(
        cx,
        path,
        vh,
        &[
            "name", "domains", "routes", "retry_policy", "request_headers_to_add", "request_headers_to_remove",
            "response_headers_to_add", "response_headers_to_remove", "typed_per_filter_config",
        ],
        &["include_request_attempt_count", "include_attempt_count_in_response", "metadata", "per_request_buffer_limit_bytes"],
    )?;
    if let Some(key) = vh.typed_per_filter_config.keys().next() {
        return Err(cx.reject(format!("{path}.typed_per_filter_config[{key:?}]"), "per-filter config is not supported"));
    }
    let headers = Headers::of(cx, path, &vh.request_headers_to_add, &vh.request_headers_to_remove, &vh.response_headers_to_add, &vh.response_headers_to_remove)?
        .then(outer);
    let vh_retry = match &vh.retry_policy {
        Some(rp) => Some(retry_policy(cx, &format!("{path}.retry_policy"), rp)?),
        None => None,
    };
    let mut routes = Vec::new();
    for (i, r) in vh.routes.iter().enumerate() {
        routes.push(route(cx, &format!("{path}.routes[{i}]"), r, &headers, vh_retry.as_ref())?);
    }
    Ok(model::VirtualHost { name: vh.name.clone(), domains: vh.domains.clone(), routes })
}

fn route(cx: &mut Cx<'_>, path: &str, r: &Route, outer: &Headers, vh_retry: Option<&model::RetryPolicy>) -> Tr<model::Route> {
    check(
        cx,
        path,
        r,
        &[
            "name", "match", "route", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add",
            "response_headers_to_remove", "typed_per_filter_config", "redirect", "direct_response",
        ],
        &["decorator", "metadata", "tracing", "stat_prefix", "per_request_buffer_limit_bytes"],
    )?;
    if let Some((key, any)) = r.typed_per_filter_config.iter().next() {
        return Err(cx.reject(format!("{path}.typed_per_filter_config[{key:?}]"), format!("per-route {} is not supported", any_type(any))));
    }
    let route_match = match_of(cx, &format!("{path}.match"), r.r#match.as_ref())?;
    let (mut forward, mut redirect, mut direct_response) = (None, None, None);
    match &r.action {
        Some(route::Action::Route(a)) => forward = Some(action(cx, &format!("{path}.route"), a, vh_retry)?),
        Some(route::Action::Redirect(rd)) => redirect = Some(super::answer::redirect(cx, &format!("{path}.redirect"), rd, &route_match)?),
        Some(route::Action::DirectResponse(d)) => direct_response = Some(super::answer::direct_response(cx, &format!("{path}.direct_response"), d)?),
        _ => return Err(cx.reject(path, "needs a `route`, `redirect` or `direct_response` action")),
    }
    let h = Headers::of(cx, path, &r.request_headers_to_add, &r.request_headers_to_remove, &r.response_headers_to_add, &r.response_headers_to_remove)?
        .then(outer);
    Ok(model::Route {
        name: Some(r.name.clone()).filter(|n| !n.is_empty()),
        route_match,
        route: forward,
        redirect,
        direct_response,
        request_headers_to_add: h.req_add,
        request_headers_to_remove: h.req_remove,
        response_headers_to_add: h.resp_add,
        response_headers_to_remove: h.resp_remove,
    })
}

fn match_of(cx: &mut Cx<'_>, path: &str, m: Option<&envoy_types::pb::envoy::config::route::v3::RouteMatch>) -> Tr<model::RouteMatch> {
    let Some(m) = m else { return Err(cx.reject(path, "needs a match")) };
    check(cx, path, m, &["prefix", "path", "safe_regex", "headers", "case_sensitive"], &["grpc"])?;
    if m.case_sensitive.as_ref().is_some_and(|c| !c.value) {
        return Err(cx.reject(format!("{path}.case_sensitive"), "case-insensitive path matching is not supported"));
    }
    let mut out = model::RouteMatch::default();
    match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => out.prefix = Some(if p.is_empty() { "/".to_string() } else { p.clone() }),
        Some(route_match::PathSpecifier::Path(p)) => out.path = Some(p.clone()),
        Some(route_match::PathSpecifier::SafeRegex(re)) => out.regex = Some(re.regex.clone()),
        _ => return Err(cx.reject(path, "only prefix, path and safe_regex path matches are supported")),
    }
    for (i, h) in m.headers.iter().enumerate() {
        out.headers.push(header_matcher(cx, &format!("{path}.headers[{i}]"), h)?);
    }
    Ok(out)
}

#[allow(deprecated)] // Istio still sends the older header match fields.
fn header_matcher(cx: &mut Cx<'_>, path: &str, h: &HeaderMatcher) -> Tr<model::HeaderMatcher> {
    use header_matcher::HeaderMatchSpecifier as S;
    let mut out = model::HeaderMatcher { name: h.name.to_ascii_lowercase(), exact: None, prefix: None, regex: None, present: None, invert: h.invert_match };
    if h.treat_missing_header_as_empty {
        return Err(cx.reject(format!("{path}.treat_missing_header_as_empty"), "not supported"));
    }
    let string = |pattern: &MatchPattern, ignore_case: bool, out: &mut model::HeaderMatcher| -> Result<(), &'static str> {
        match (pattern, ignore_case) {
            (MatchPattern::Exact(s), false) => out.exact = Some(s.clone()),
            (MatchPattern::Prefix(s), false) => out.prefix = Some(s.clone()),
            (MatchPattern::Exact(s), true) => out.regex = Some(format!("(?i){}", regex::escape(s))),
            (MatchPattern::Prefix(s), true) => out.regex = Some(format!("(?i){}.*", regex::escape(s))),
            (MatchPattern::Suffix(s), i) => out.regex = Some(format!("{}.*{}", if i { "(?i)" } else { "" }, regex::escape(s))),
            (MatchPattern::Contains(s), i) => out.regex = Some(format!("{}.*{}.*", if i { "(?i)" } else { "" }, regex::escape(s))),
            (MatchPattern::SafeRegex(re), false) => out.regex = Some(re.regex.clone()),
            _ => return Err("this string match is not supported"),
        }
        Ok(())
    };
    let result = match &h.header_match_specifier {
        Some(S::ExactMatch(s)) => string(&MatchPattern::Exact(s.clone()), false, &mut out),
        Some(S::PrefixMatch(s)) => string(&MatchPattern::Prefix(s.clone()), false, &mut out),
        Some(S::SuffixMatch(s)) => string(&MatchPattern::Suffix(s.clone()), false, &mut out),
        Some(S::ContainsMatch(s)) => string(&MatchPattern::Contains(s.clone()), false, &mut out),
        Some(S::SafeRegexMatch(re)) => string(&MatchPattern::SafeRegex(re.clone()), false, &mut out),
        Some(S::PresentMatch(p)) => {
            out.present = Some(*p);
            Ok(())
        }
        Some(S::StringMatch(sm)) => match &sm.match_pattern {
            Some(p) => string(p, sm.ignore_case, &mut out),
            None => Err("empty string match"),
        },
        None => {
            out.present = Some(true);
            Ok(())
        }
        Some(S::RangeMatch(_)) => Err("range matches are not supported"),
    };
    result.map_err(|e| cx.reject(path, e))?;
    if let Some(re) = &out.regex
        && let Err(e) = regex::Regex::new(re)
    {
        return Err(cx.reject(path, format!("invalid regex {re:?}: {e}")));
    }
    Ok(out)
}

fn action(cx: &mut Cx<'_>, path: &str, a: &RouteAction, vh_retry: Option<&model::RetryPolicy>) -> Tr<model::RouteAction> {
    check(
        cx,
        path,
        a,
        &["cluster", "weighted_clusters", "timeout", "retry_policy", "hash_policy", "request_mirror_policies"],
        &[
            // A gRPC deadline the client sends is enforced by the client itself; without a route
            // timeout oxidecar leaves the stream open as long as the client does.
            "max_grpc_timeout", "grpc_timeout_offset", "max_stream_duration", "cluster_not_found_response_code",
            "idle_timeout", "upgrade_configs", "append_x_forwarded_host",
        ],
    )?;
    let mut out = model::RouteAction::default();
    use route_action::ClusterSpecifier as C;
    match &a.cluster_specifier {
        Some(C::Cluster(c)) => out.cluster = Some(c.clone()),
        Some(C::WeightedClusters(w)) => {
            check(cx, &format!("{path}.weighted_clusters"), w, &["clusters", "total_weight"], &["runtime_key_prefix"])?;
            for (i, cw) in w.clusters.iter().enumerate() {
                let at = format!("{path}.weighted_clusters.clusters[{i}]");
                check(cx, &at, cw, &["name", "weight"], &[])?;
                out.weighted_clusters.push(model::WeightedCluster { name: cw.name.clone(), weight: cw.weight.as_ref().map_or(0, |w| w.value) });
            }
            if out.weighted_clusters.iter().map(|w| u64::from(w.weight)).sum::<u64>() == 0 {
                return Err(cx.reject(format!("{path}.weighted_clusters"), "weights must add up to more than 0"));
            }
        }
        _ => return Err(cx.reject(path, "needs `cluster` or `weighted_clusters`")),
    }
    out.timeout = a.timeout.as_ref().map(duration).filter(|d| !d.is_zero());
    out.retry_policy = match &a.retry_policy {
        Some(rp) => Some(retry_policy(cx, &format!("{path}.retry_policy"), rp)?),
        None => vh_retry.cloned(),
    };
    for (i, hp) in a.hash_policy.iter().enumerate() {
        use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier as P;
        let at = format!("{path}.hash_policy[{i}]");
        let mut m = model::HashPolicy { header: None, cookie: None, source_ip: None };
        match &hp.policy_specifier {
            Some(P::Header(h)) if h.regex_rewrite.is_none() => m.header = Some(h.header_name.to_ascii_lowercase()),
            Some(P::Cookie(c)) if c.ttl.is_none() && c.path.is_empty() => m.cookie = Some(c.name.clone()),
            Some(P::Cookie(_)) => return Err(cx.reject(format!("{at}.cookie"), "generated cookies (ttl, path) are not supported")),
            Some(P::ConnectionProperties(c)) if c.source_ip => m.source_ip = Some(true),
            _ => return Err(cx.reject(at, "only header, cookie and source-IP hash policies are supported")),
        }
        out.hash_policy.push(m);
    }
    for (i, mp) in a.request_mirror_policies.iter().enumerate() {
        out.mirrors.push(super::answer::mirror(cx, &format!("{path}.request_mirror_policies[{i}]"), mp)?);
    }
    Ok(out)
}

fn retry_policy(cx: &mut Cx<'_>, path: &str, rp: &RetryPolicy) -> Tr<model::RetryPolicy> {
    check(
        cx,
        path,
        rp,
        &["retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retry_back_off", "retry_host_predicate"],
        // oxidecar always prefers endpoints not tried yet, which is what these tune.
        &["host_selection_retry_max_attempts", "retry_priority"],
    )?;
    for (i, p) in rp.retry_host_predicate.iter().enumerate() {
        if p.name != "envoy.retry_host_predicates.previous_hosts" {
            return Err(cx.reject(format!("{path}.retry_host_predicate[{i}]"), format!("host predicate {:?} is not supported", p.name)));
        }
    }
    let mut retry_on = Vec::new();
    for cond in rp.retry_on.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let c = match cond {
            "5xx" => RetryOn::FiveXx,
            "gateway-error" => RetryOn::GatewayError,
            "connect-failure" => RetryOn::ConnectFailure,
            "reset" => RetryOn::Reset,
            "refused-stream" => RetryOn::RefusedStream,
            "retriable-status-codes" => RetryOn::RetriableStatusCodes,
            "cancelled" => RetryOn::Cancelled,
            "deadline-exceeded" => RetryOn::DeadlineExceeded,
            "resource-exhausted" => RetryOn::ResourceExhausted,
            "internal" => RetryOn::Internal,
            "unavailable" => RetryOn::Unavailable,
            other => return Err(cx.reject(format!("{path}.retry_on"), format!("retry condition {other:?} is not supported"))),
        };
        if !retry_on.contains(&c) {
            retry_on.push(c);
        }
    }
    let mut retriable_status_codes = Vec::new();
    for (i, s) in rp.retriable_status_codes.iter().enumerate() {
        match u16::try_from(*s) {
            Ok(s) if (100..=599).contains(&s) => retriable_status_codes.push(s),
            _ => return Err(cx.reject(format!("{path}.retriable_status_codes[{i}]"), format!("{s} is not an HTTP status"))),
        }
    }
    if retry_on.contains(&RetryOn::RetriableStatusCodes) && retriable_status_codes.is_empty() {
        // Envoy then retries nothing by status; drop the condition instead of refusing the route.
        retry_on.retain(|c| *c != RetryOn::RetriableStatusCodes);
    }
    let base_interval = match &rp.retry_back_off {
        Some(b) => {
            if b.max_interval.is_some() {
                cx.ignore("RetryBackOff.max_interval");
            }
            b.base_interval.as_ref().map_or(model::DEFAULT_RETRY_BASE_INTERVAL, duration)
        }
        None => model::DEFAULT_RETRY_BASE_INTERVAL,
    };
    Ok(model::RetryPolicy {
        // Envoy's default when the policy leaves it out.
        num_retries: rp.num_retries.as_ref().map_or(1, |n| n.value),
        retry_on,
        retriable_status_codes,
        per_try_timeout: rp.per_try_timeout.as_ref().map(duration).filter(|d| !d.is_zero()),
        base_interval: if base_interval.is_zero() { model::DEFAULT_RETRY_BASE_INTERVAL } else { base_interval },
        // Envoy retries any method when a condition holds.
        retry_non_idempotent: true,
    })
}

fn join(path: &str, rest: &str) -> String {
    if path.is_empty() { rest.to_string() } else { format!("{path}.{rest}") }
}
