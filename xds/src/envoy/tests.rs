//! Translation cases the fixtures lack: weighted clusters, header matches, refused fields.

use serde_json::json;

use super::reflect::from_json;
use super::*;
use crate::model::Snapshot;

fn set(clusters: serde_json::Value, routes: serde_json::Value) -> ResourceSet {
    let mut s = ResourceSet::default();
    for c in clusters.as_array().into_iter().flatten() {
        let c: Cluster = from_json(c).expect("cluster");
        s.clusters.insert(c.name.clone(), c);
    }
    for r in routes.as_array().into_iter().flatten() {
        let r: RouteConfiguration = from_json(r).expect("route");
        s.routes.insert(r.name.clone(), r);
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
    assert_eq!(routes[0].route.timeout, Some(std::time::Duration::from_secs(3)));
    assert_eq!(routes[1].route_match.regex.as_deref(), Some("/api/[0-9]+"));
    let w: Vec<(String, u32)> = routes[1].route.weighted_clusters.iter().map(|w| (w.name.clone(), w.weight)).collect();
    assert_eq!(w, [("v1".to_string(), 80), ("v2".to_string(), 20)]);
    let rp = routes[1].route.retry_policy.as_ref().expect("retry");
    assert_eq!(rp.num_retries, 3);
    assert_eq!(rp.retry_on, [crate::model::RetryOn::FiveXx, crate::model::RetryOn::Reset]);
}

#[test]
fn unsupported_fields_are_rejected_by_name_and_the_rest_still_applies() {
    let s = set(
        json!([static_cluster("v1", 9001), {"name": "dns", "type": "STRICT_DNS", "connect_timeout": "1s", "load_assignment": {"cluster_name": "dns",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "zipkin.istio-system", "port_value": 9411}}}}]}]}}]),
        json!([
            {"name": "redirecting", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "redirect": {"host_redirect": "b"}}]}]},
            {"name": "mirroring", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v1", "request_mirror_policies": [{"cluster": "v1"}]}}]}]},
            {"name": "fine", "virtual_hosts": [{"name": "a", "domains": ["a"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v1"}}]}]}
        ]),
    );
    let t = translate(&s, &opts());
    let why = |name: &str| t.report.rejected.iter().find(|r| r.name == name).map(|r| format!("{}: {}", r.field, r.reason)).unwrap_or_default();
    assert!(why("redirecting").starts_with("virtual_hosts[0].routes[0].redirect:"), "{}", why("redirecting"));
    assert!(why("mirroring").starts_with("virtual_hosts[0].routes[0].route.request_mirror_policies:"), "{}", why("mirroring"));
    assert!(why("dns").contains("not an IP address"), "{}", why("dns"));
    assert_eq!(t.snapshot.route_configs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["fine"]);
    assert_eq!(t.snapshot.clusters.len(), 1);
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
