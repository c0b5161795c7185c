//! Translation cases the fixtures lack: weighted clusters, header matches, refused fields.

use serde_json::json;

use super::reflect::from_json;
use super::*;
use crate::model::Snapshot;

fn set(clusters: serde_json::Value, routes: serde_json::Value) -> ResourceSet {
    let mut s = ResourceSet::default();
    for c in clusters.as_array().into_iter().flatten() {
        let c: Cluster = from_json(c).expect("cluster");
        s.clusters.insert(c.name.clone(), std::sync::Arc::new(c));
    }
    for r in routes.as_array().into_iter().flatten() {
        let r: RouteConfiguration = from_json(r).expect("route");
        s.routes.insert(r.name.clone(), std::sync::Arc::new(r));
    }
    s
}

fn opts() -> Options {
    Options { base: Snapshot::empty(), lenient_references: false, warming: false }
}

fn static_cluster(name: &str, port: u32) -> serde_json::Value {
    json!({"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
}

#[test]
fn weighted_clusters_header_matches_and_retries_translate() {
    let s = set(
        json!([static_cluster("v1", 9001), static_cluster("v2", 9002)]),
        json!([{"name": "80", "virtual_hosts": [{"name": "reviews", "domains": ["reviews"], "routes": [
            {"match": {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]}, "route": {"cluster": "v2", "timeout": "3s"}},
            {"match": {"safe_regex": {"regex": "/api/[0-9]+"}}, "route": {"weighted_clusters": {"clusters": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 20}]},
                "retry_policy": {"retry_on": "5xx,reset", "num_retries": 3, "per_try_timeout": "1s"}}}]}]}]),
    );
    let t = translate(&s, &opts());
    assert!(t.report.rejected.is_empty(), "{:?}", t.report.rejected);
    let routes = &t.snapshot.route_configs[0].virtual_hosts[0].routes;
    assert_eq!(routes[0].route_match.headers[0].exact.as_deref(), Some("jason"));
    assert_eq!(routes[0].route.as_ref().and_then(|a| a.timeout), Some(std::time::Duration::from_secs(3)));
    assert_eq!(routes[1].route_match.regex.as_deref(), Some("/api/[0-9]+"));
    let w: Vec<(String, u32)> = routes[1].route.as_ref().expect("route").weighted_clusters.iter().map(|w| (w.name.clone(), w.weight)).collect();
    assert_eq!(w, [("v1".to_string(), 80), ("v2".to_string(), 20)]);
    let rp = routes[1].route.as_ref().and_then(|a| a.retry_policy.as_ref()).expect("retry");
    assert_eq!(rp.num_retries, 3);
    assert_eq!(rp.retry_on, [crate::model::RetryOn::FiveXx, crate::model::RetryOn::Reset]);
}

#[test]
fn unsupported_fields_are_rejected_by_name_and_the_rest_still_applies() {
    let s = set(
        json!([static_cluster("v1", 9001), {"name": "named", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "named",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "zipkin.istio-system", "port_value": 9411}}}}]}]}}]),
        json!([
            {"name": "uri-template", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "redirect": {"path_rewrite": "/{x}"}}]}]},
            {"name": "file-body", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"filename": "/etc/motd"}}}]}]},
            {"name": "header-mirror", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v1", "request_mirror_policies": [{"cluster_header": "x-mirror"}]}}]}]},
            {"name": "ghost-mirror", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v1", "request_mirror_policies": [{"cluster": "ghost"}]}}]}]},
            {"name": "fine", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v1"}}]}]}
        ]),
    );
    let t = translate(&s, &opts());
    let why = |name: &str| t.report.rejected.iter().find(|r| r.name == name).map(|r| format!("{}: {}", r.field, r.reason)).unwrap_or_default();
    assert!(why("uri-template").starts_with("virtual_hosts[0].routes[0].redirect.path_rewrite:"), "{}", why("uri-template"));
    assert!(why("file-body").starts_with("virtual_hosts[0].routes[0].direct_response.body.filename:"), "{}", why("file-body"));
    assert!(why("file-body").contains("/etc/motd"), "{}", why("file-body"));
    assert!(why("header-mirror").starts_with("virtual_hosts[0].routes[0].route.request_mirror_policies[0].cluster_header:"), "{}", why("header-mirror"));
    assert!(why("ghost-mirror").contains("unknown cluster \"ghost\""), "{}", why("ghost-mirror"));
    assert!(why("named").contains("not an IP address"), "{}", why("named"));
    assert_eq!(t.snapshot.route_configs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["fine"]);
    assert_eq!(t.snapshot.clusters.len(), 1);
}

/// One route config with one route per action in `routes`, on virtual host `a`.
fn routes_set(routes: serde_json::Value) -> ResourceSet {
    set(json!([static_cluster("v1", 9001), static_cluster("shadow", 9002)]), json!([{"name": "r", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": routes}]}]))
}

#[test]
fn redirects_translate_with_every_rewrite_and_code() {
    let s = routes_set(json!([
        {"match": {"prefix": "/old/"}, "redirect": {"prefix_rewrite": "/new/", "response_code": "PERMANENT_REDIRECT", "host_redirect": "b.example", "port_redirect": 8443, "https_redirect": true}},
        {"match": {"path": "/x"}, "redirect": {"path_redirect": "/y?z=1", "strip_query": true, "response_code": "SEE_OTHER", "scheme_redirect": "HTTP"}},
        {"match": {"safe_regex": {"regex": "/v[0-9]+/.*"}}, "redirect": {"regex_rewrite": {"pattern": {"regex": "^/v([0-9]+)/(.*)$"}, "substitution": "/api/\\2?version=\\1"}}},
        {"match": {"prefix": "/"}, "redirect": {"response_code": "TEMPORARY_REDIRECT"}},
        {"match": {"prefix": "/"}, "redirect": {"response_code": "FOUND"}}
    ]));
    let t = translate(&s, &opts());
    assert!(t.report.rejected.is_empty(), "{:?}", t.report.rejected);
    let r: Vec<crate::model::Redirect> = t.snapshot.route_configs[0].virtual_hosts[0].routes.iter().map(|r| r.redirect.clone().expect("redirect")).collect();
    assert_eq!(r[0].prefix_rewrite.as_deref(), Some("/new/"));
    assert_eq!((r[0].response_code, r[0].host.as_deref(), r[0].port, r[0].scheme.as_deref()), (308, Some("b.example"), Some(8443), Some("https")));
    assert_eq!((r[1].path.as_deref(), r[1].strip_query, r[1].response_code, r[1].scheme.as_deref()), (Some("/y?z=1"), true, 303, Some("http")));
    let rr = r[2].regex_rewrite.as_ref().expect("regex rewrite");
    assert_eq!((rr.pattern.as_str(), rr.substitution.as_str()), ("^/v([0-9]+)/(.*)$", "/api/\\2?version=\\1"));
    assert_eq!((r[2].response_code, r[3].response_code, r[4].response_code), (301, 307, 302));
    assert!(t.snapshot.route_configs[0].virtual_hosts[0].routes.iter().all(|r| r.route.is_none()));
}

#[test]
fn bad_redirects_are_rejected_naming_the_field() {
    for (redirect, field) in [
        (json!({"scheme_redirect": "ftp"}), "redirect.scheme_redirect"),
        (json!({"regex_rewrite": {"pattern": {"regex": "("}, "substitution": "x"}}), "redirect.regex_rewrite.pattern"),
        (json!({"port_redirect": 70000}), "redirect.port_redirect"),
    ] {
        let s = routes_set(json!([{"match": {"prefix": "/"}, "redirect": redirect}]));
        let t = translate(&s, &opts());
        let r = t.report.rejected.first().unwrap_or_else(|| panic!("{redirect} accepted"));
        assert_eq!(r.field, format!("virtual_hosts[0].routes[0].{field}"), "{r}");
    }
    let s = routes_set(json!([{"match": {"safe_regex": {"regex": "/a.*"}}, "redirect": {"prefix_rewrite": "/b"}}]));
    let t = translate(&s, &opts());
    assert!(t.report.rejected.first().is_some_and(|r| r.field.ends_with("redirect.prefix_rewrite")), "{:?}", t.report.rejected);
}

#[test]
fn direct_responses_translate_inline_bodies_and_refuse_others() {
    let s = routes_set(json!([
        {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
            "response_headers_to_add": [{"header": {"key": "X-Served-By", "value": "proxy"}}]},
        {"match": {"path": "/gone"}, "direct_response": {"status": 410, "body": {"inline_bytes": "Z29uZQ=="}}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 503}}
    ]));
    let t = translate(&s, &opts());
    assert!(t.report.rejected.is_empty(), "{:?}", t.report.rejected);
    let routes = &t.snapshot.route_configs[0].virtual_hosts[0].routes;
    let d: Vec<(u16, Option<&str>)> = routes.iter().map(|r| r.direct_response.as_ref().map(|d| (d.status, d.body.as_deref())).expect("direct")).collect();
    assert_eq!(d, [(200, Some("ok\n")), (410, Some("gone")), (503, None)]);
    assert_eq!(routes[0].response_headers_to_add[0].name, "x-served-by");
    for (body, field) in [
        (json!({"status": 99}), "direct_response.status"),
        (json!({"status": 200, "body": {"inline_bytes": "/w=="}}), "direct_response.body.inline_bytes"),
        (json!({"status": 200, "body": {"environment_variable": "BODY"}}), "direct_response.body.environment_variable"),
    ] {
        let t = translate(&routes_set(json!([{"match": {"prefix": "/"}, "direct_response": body}])), &opts());
        assert!(t.report.rejected.first().is_some_and(|r| r.field == format!("virtual_hosts[0].routes[0].{field}")), "{body}: {:?}", t.report.rejected);
    }
}

#[test]
fn mirror_policies_translate_fractions_and_count_trace_sampled() {
    let s = routes_set(json!([
        {"match": {"prefix": "/"}, "route": {"cluster": "v1", "request_mirror_policies": [
            {"cluster": "shadow", "runtime_fraction": {"default_value": {"numerator": 25, "denominator": "HUNDRED"}, "runtime_key": "mirror.reviews"}, "trace_sampled": false},
            {"cluster": "shadow", "runtime_fraction": {"default_value": {"numerator": 5, "denominator": "TEN_THOUSAND"}}},
            {"cluster": "shadow"}
        ]}}
    ]));
    let t = translate(&s, &opts());
    assert!(t.report.rejected.is_empty(), "{:?}", t.report.rejected);
    let a = t.snapshot.route_configs[0].virtual_hosts[0].routes[0].route.as_ref().expect("route");
    let m: Vec<(&str, f64)> = a.mirrors.iter().map(|m| (m.cluster.as_str(), m.percent)).collect();
    assert_eq!(m, [("shadow", 25.0), ("shadow", 0.05), ("shadow", 100.0)]);
    assert!(t.report.ignored.keys().any(|(_, f)| f == "RequestMirrorPolicy.trace_sampled"), "{:?}", t.report.ignored);
    assert!(t.report.ignored.keys().any(|(_, f)| f == "RuntimeFractionalPercent.runtime_key"), "{:?}", t.report.ignored);
}

#[test]
fn dns_clusters_translate_hosts_family_and_refresh() {
    // As Istio emits for a ServiceEntry with `resolution: DNS`, and for zipkin in its bootstrap.
    let s = set(
        json!([
            {"name": "outbound|443||api.example.com", "type": "STRICT_DNS", "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
             "dns_refresh_rate": "30s", "dns_lookup_family": "V4_ONLY", "respect_dns_ttl": true, "dns_jitter": "0.1s",
             "load_assignment": {"cluster_name": "outbound|443||api.example.com", "endpoints": [{"locality": {}, "lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "api.example.com", "port_value": 443}}}, "load_balancing_weight": 3,
                 "metadata": {"filter_metadata": {"istio": {"workload": ";;;;"}}}},
                {"endpoint": {"address": {"socket_address": {"address": "10.0.0.9", "port_value": 443}}}}]}]},
             "metadata": {"filter_metadata": {"istio": {"services": [{"host": "api.example.com", "name": "api.example.com", "namespace": "default"}]}}}},
            {"name": "logical", "type": "LOGICAL_DNS", "connect_timeout": "1s", "dns_lookup_family": "ALL",
             "load_assignment": {"cluster_name": "logical", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": 8080}}}}]}]}},
            {"name": "two-logical", "type": "LOGICAL_DNS", "connect_timeout": "1s",
             "load_assignment": {"cluster_name": "two-logical", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "a.example", "port_value": 80}}}},
                {"endpoint": {"address": {"socket_address": {"address": "b.example", "port_value": 80}}}}]}]}}
        ]),
        json!([]),
    );
    let t = translate(&s, &opts());
    let strict = t.snapshot.cluster("outbound|443||api.example.com").expect("strict dns accepted");
    assert_eq!(strict.kind, crate::model::ClusterKind::StrictDns);
    assert!(strict.endpoints.is_empty());
    let dns = strict.dns.as_ref().expect("dns");
    assert_eq!(dns.refresh_rate, std::time::Duration::from_secs(30));
    assert_eq!(dns.lookup_family, crate::model::LookupFamily::V4Only);
    let hosts: Vec<(&str, u16, u32)> = dns.hosts.iter().map(|h| (h.host.as_str(), h.port, h.weight)).collect();
    assert_eq!(hosts, [("api.example.com", 443, 3), ("10.0.0.9", 443, 1)]);
    assert_eq!(strict.service_name(), "api.example.com");
    let logical = t.snapshot.cluster("logical").expect("logical dns accepted");
    assert_eq!(logical.kind, crate::model::ClusterKind::LogicalDns);
    let ld = logical.dns.as_ref().expect("dns");
    assert_eq!((ld.lookup_family, ld.refresh_rate), (crate::model::LookupFamily::All, crate::model::DEFAULT_DNS_REFRESH_RATE));
    assert!(t.report.ignored.keys().any(|(_, f)| f == "Cluster.respect_dns_ttl"), "{:?}", t.report.ignored);
    let r = t.report.rejected.iter().find(|r| r.name == "two-logical").expect("two hosts in a logical cluster rejected");
    assert_eq!(r.field, "load_assignment", "{r}");
}

#[test]
fn resource_set_round_trips_through_any_and_removal() {
    let mut s = set(json!([static_cluster("v1", 9001)]), json!([]));
    let anys = s.to_any(Kind::Cluster);
    let mut copy = ResourceSet::default();
    assert_eq!(copy.insert_any(Kind::Cluster, &anys[0].1), Ok("v1".to_string()));
    assert_eq!(copy, s);
    assert!(copy.insert_any(Kind::Listener, &anys[0].1).is_err_and(|e| e.contains("where")));
    assert!(s.remove(Kind::Cluster, "v1"));
    assert!(!s.remove(Kind::Cluster, "v1"));
}
