use std::time::SystemTime;

use super::*;
use crate::envoy::dump::read_config_dump;
use crate::envoy::{Options, translate};
use crate::Snapshot;

const MESH: &str = r#"
identity: { cert_chain: /x/cert-chain.pem, private_key: /x/key.pem, trust_bundle: /x/root-cert.pem }
listeners:
  - name: virtualOutbound
    address: 127.0.0.1:15001
    filter_chains:
      - match: { destination_port: 9080, prefix_ranges: ["10.0.0.0/8"] }
        http: { route_config: outbound }
      - match: { transport_protocol: raw_buffer }
        tcp: { weighted_clusters: [{ name: reviews, weight: 80 }, { name: app, weight: 20 }] }
  - name: virtualInbound
    address: 127.0.0.1:15006
    direction: inbound
    filter_chains:
      - match: { transport_protocol: tls, application_protocols: [istio-peer-exchange, istio] }
        tls: {}
        http: { route_config: outbound }
route_configs:
  - name: outbound
    virtual_hosts:
      - name: reviews
        domains: ["reviews", "reviews:9080"]
        routes:
          - match: { prefix: /api, headers: [{ name: end-user, exact: jason }] }
            route:
              weighted_clusters: [{ name: reviews, weight: 90 }, { name: app, weight: 10 }]
              timeout: 3s
              retry_policy: { num_retries: 3, retry_on: [5xx, retriable-status-codes], retriable_status_codes: [503], per_try_timeout: 1s }
            request_headers_to_add: [{ name: x-a, value: "1" }]
          - match: { regex: "/v[0-9]+/.*" }
            route: { cluster: app, hash_policy: [{ header: x-user }], mirrors: [{ cluster: payments, percent: 25 }, { cluster: app }] }
          - match: { prefix: /old/ }
            redirect: { prefix_rewrite: /new/, host: new.example, port: 8443, scheme: https, response_code: 308, strip_query: true }
          - match: { path: /v1 }
            redirect: { regex_rewrite: { pattern: '^/v([0-9]+)$', substitution: '/api?v=\1' } }
          - match: { path: /healthz }
            direct_response: { status: 200, body: "ok" }
            response_headers_to_add: [{ name: x-served-by, value: mesh }]
          - match: { path: /gone }
            direct_response: { status: 410 }
clusters:
  - name: app
    lb_policy: ring_hash
    endpoints: [{ address: 127.0.0.1:8080, weight: 2, labels: { version: v1 } }]
  - name: reviews
    type: eds
    service: reviews.default.svc.cluster.local
    lb_policy: least_request
    protocol: h2
    max_connection_duration: 60s
    circuit_breakers: { max_connections: 10, max_pending_requests: 20, max_requests: 30, max_retries: 4 }
    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 10s }
    tls:
      mode: istio_mutual
      sni: outbound_.9080_._.reviews.default.svc.cluster.local
      subject_alt_names: [spiffe://cluster.local/ns/default/sa/reviews]
      endpoint_match: { tlsMode: istio }
    endpoints:
      - { address: 10.0.0.1:9080, labels: { tlsMode: istio, version: v2 } }
  - { name: PassthroughCluster, type: original_dst }
  - name: payments
    type: strict_dns
    dns: { hosts: [{ host: api.payments.example, port: 443, weight: 2 }, { host: 10.0.0.9, port: 443 }], refresh_rate: 30s, lookup_family: v4_only }
"#;

fn hotel() -> crate::envoy::dump::Dump {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/istio/sidecar-full-configdump-v3-istio1.18-hotelreservation-geo.json");
    let dir = std::env::var("OXIDECAR_ISTIO_FIXTURES").map(|d| format!("{d}/sidecar-full-configdump-v3-istio1.18-hotelreservation-geo.json"));
    let text = std::fs::read_to_string(dir.unwrap_or_else(|_| path.to_string())).expect("hotel fixture");
    read_config_dump(&text).expect("dump")
}

#[test]
fn a_dump_of_held_resources_reads_back_as_the_same_resources_without_keys() {
    let original = hotel();
    let mut view = DumpView::default();
    let now = SystemTime::now();
    for kind in Kind::ALL {
        let versions = original.resources.names(kind).into_iter().map(|n| (n, "v7".to_string())).collect();
        view.record(kind, &original.resources, &versions, now);
        view.accepted(kind, original.resources.names(kind));
    }
    let json = config_dump(&view);
    let text = serde_json::to_string(&json).expect("json");
    assert!(!text.contains("PRIVATE KEY"), "no key material in the dump");
    let back = read_config_dump(&text).expect("reads back");
    assert!(back.unreadable.is_empty(), "{:?}", back.unreadable);
    for kind in Kind::ALL {
        assert_eq!(back.resources.names(kind), original.resources.names(kind), "{kind}");
    }
    assert_eq!(back.resources.clusters, original.resources.clusters);
    assert_eq!(back.resources.listeners, original.resources.listeners);
    assert_eq!(back.resources.routes, original.resources.routes);
    assert_eq!(back.resources.endpoints, original.resources.endpoints);
    let clusters = &json["configs"][1];
    assert_eq!(clusters["@type"], "type.googleapis.com/envoy.admin.v3.ClustersConfigDump");
    assert_eq!(clusters["dynamic_active_clusters"][0]["version_info"], "v7");
    assert!(clusters["dynamic_active_clusters"][0]["last_updated"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(clusters["dynamic_active_clusters"][0]["cluster"]["@type"], Kind::Cluster.type_url());
    let secrets = json["configs"][5]["dynamic_active_secrets"].as_array().expect("secrets");
    let default = secrets.iter().find(|s| s["name"] == "default").expect("default");
    assert_eq!(default["secret"]["tls_certificate"]["private_key"]["inline_string"], REDACTED);
    assert!(default["secret"]["tls_certificate"]["certificate_chain"]["inline_bytes"].as_str().is_some_and(|c| !c.is_empty()), "the chain is public");
}

#[test]
fn refused_listeners_appear_in_error_state_and_read_back_as_envoy_rejections() {
    let original = hotel();
    let mut view = DumpView::default();
    let mut held = original.resources.clone();
    let bad = held.listeners.remove("virtualInbound").expect("virtualInbound");
    view.record(Kind::Listener, &held, &BTreeMap::new(), SystemTime::now());
    view.accepted(Kind::Listener, held.names(Kind::Listener));
    let any = Any { type_url: Kind::Listener.type_url().into(), value: bad.encode_to_vec() };
    view.failed.insert((Kind::Listener, "virtualInbound".into()), FailedResource { resource: any, version: "v2".into(), details: "http_filters[5]: lua".into(), at: SystemTime::now() });
    let back = read_config_dump(&serde_json::to_string(&config_dump(&view)).expect("json")).expect("reads back");
    assert_eq!(back.envoy_rejected, vec![(Kind::Listener, "virtualInbound".to_string(), "http_filters[5]: lua".to_string())]);
    assert_eq!(back.resources.listeners.get("virtualInbound"), Some(&bad), "the failed configuration is the refused resource");
}

#[test]
fn a_static_config_renders_as_envoy_resources_that_translate_back_to_it() {
    let mut snapshot = crate::static_file::parse_str(MESH).expect("valid");
    // Envoy has no switch for retrying non-idempotent requests: it retries any method.
    for vh in snapshot.route_configs.iter_mut().flat_map(|rc| rc.virtual_hosts.iter_mut()) {
        for r in vh.routes.iter_mut().filter_map(|r| r.route.as_mut().and_then(|a| a.retry_policy.as_mut())) {
            r.retry_non_idempotent = true;
        }
    }
    let set = resources_from_snapshot(&snapshot);
    assert_eq!((set.clusters.len(), set.endpoints.len(), set.listeners.len(), set.routes.len()), (4, 1, 2, 1));
    let base = crate::static_file::parse_str("identity: { cert_chain: /x/cert-chain.pem, private_key: /x/key.pem, trust_bundle: /x/root-cert.pem }").expect("base");
    let t = translate(&set, &Options { base, lenient_references: false, warming: false });
    assert!(t.report.rejected.is_empty(), "{:?}", t.report.rejected);
    let by_name = |s: &Snapshot| s.clusters.iter().map(|c| (c.name.clone(), c.clone())).collect::<BTreeMap<_, _>>();
    assert_eq!(by_name(&t.snapshot), by_name(&snapshot));
    assert_eq!(t.snapshot.route_configs, snapshot.route_configs);
    let listeners = |s: &Snapshot| s.listeners.iter().map(|l| (l.name.clone(), l.clone())).collect::<BTreeMap<_, _>>();
    assert_eq!(listeners(&t.snapshot), listeners(&snapshot));
}
