//! Istio xDS end to end: an in-test ADS server serves real istiod output (the hotel-reservation
//! sidecar dump) to the running binary; the translated config, traffic through it, NACKs with the
//! last good config kept, hot updates under load and a control-plane restart.

use std::collections::BTreeSet;
use std::time::Duration;

use oxidecar_tests::upstream::{HttpUpstream, http_upstream};
use oxidecar_tests::xds::{AdsServer, hotel, set_endpoints};
use oxidecar_tests::*;
use oxidecar_xds::envoy::Kind;

const RATE_LISTENER: &str = "10.68.182.6_8084";
const RATE_CLUSTER: &str = "outbound|8084||rate.hr2.svc.cluster.local";
const RATE_ROUTES: &str = "rate.hr2.svc.cluster.local:8084";

/// The bootstrap: admin ports plus the sockets xDS listeners bind to.
fn bootstrap(outbound: u16, rate: u16, inbound: u16) -> String {
    format!(
        "listeners:\n  - {{ name: virtualOutbound, address: 127.0.0.1:{outbound} }}\n  - {{ name: \"{RATE_LISTENER}\", address: 127.0.0.1:{rate} }}\n  - {{ name: virtualInbound, address: 127.0.0.1:{inbound}, direction: inbound }}\n"
    )
}

async fn start(server: &AdsServer, extra: &[&str]) -> (Proxy, u16) {
    let (outbound, rate, inbound) = (free_port(), free_port(), free_port());
    let url = server.url();
    let mut args = vec!["--xds-address", url.as_str()];
    args.extend_from_slice(extra);
    let proxy = Proxy::start_with_args(AdminPorts::new(), &bootstrap(outbound, rate, inbound), &args).await;
    (proxy, rate)
}

async fn dump(proxy: &Proxy) -> serde_json::Value {
    let (status, body) = proxy.admin("/config_dump").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("config_dump JSON")
}

async fn get_rate(port: u16) -> Reply {
    send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/rates"), &[("host", RATE_ROUTES)], "").await.expect("request")
}

fn served_by(r: &Reply) -> String {
    r.headers.get("x-upstream").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

async fn upstreams() -> (HttpUpstream, HttpUpstream) {
    (http_upstream("rate-a").await, http_upstream("rate-b").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotel_reservation_dump_is_translated_routed_and_its_bad_listener_nacked() {
    let (a, b) = upstreams().await;
    let mut set = hotel();
    set_endpoints(&mut set, RATE_CLUSTER, &[(a.addr, 1), (b.addr, 1)]);
    let server = AdsServer::start(set.clone(), free_port()).await;
    let (proxy, rate) = start(&server, &[]).await;

    let d = dump(&proxy).await;
    let snap = &d["snapshot"];
    let clusters = snap["clusters"].as_array().expect("clusters");
    // 138 dynamic clusters in the dump (the other 5 of 143 are Envoy's bootstrap).
    assert_eq!(clusters.len(), 138);
    assert_eq!(snap["route_configs"].as_array().expect("routes").len(), 90);
    let endpoints: usize = clusters.iter().map(|c| c["endpoints"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(endpoints, 116 - 1 + 2, "the rate cluster's one endpoint was replaced by two");
    let listeners: Vec<&str> = snap["listeners"].as_array().expect("listeners").iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(listeners.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from(["virtualOutbound", RATE_LISTENER]), "virtualInbound is NACKed");
    let outbound = snap["listeners"].as_array().expect("listeners").iter().find(|l| l["name"] == "virtualOutbound").expect("virtualOutbound");
    // The 140 per-port listeners' chains are folded into virtualOutbound by destination.
    assert!(outbound["filter_chains"].as_array().expect("chains").len() > 140, "{}", outbound["filter_chains"].as_array().map_or(0, Vec::len));

    let rc = clusters.iter().find(|c| c["name"] == RATE_CLUSTER).expect("rate cluster");
    assert_eq!(rc["type"], "eds");
    assert_eq!(rc["lb_policy"], "least_request");
    assert_eq!(rc["circuit_breakers"]["max_requests"], 4294967295u64);
    assert_eq!(rc["circuit_breakers"]["max_retries"], 4294967295u64);
    assert_eq!(rc["tls"]["mode"], "istio_mutual");
    assert_eq!(rc["tls"]["sni"], "outbound_.8084_._.rate.hr2.svc.cluster.local");
    assert_eq!(rc["tls"]["endpoint_match"]["tlsMode"], "istio");
    assert_eq!(rc["service"], "rate.hr2.svc.cluster.local");
    let routes = snap["route_configs"].as_array().expect("routes").iter().find(|r| r["name"] == RATE_ROUTES).expect("rate routes");
    let route = &routes["virtual_hosts"][0]["routes"][0]["route"];
    assert_eq!(route["cluster"], RATE_CLUSTER);
    assert_eq!(route["retry_policy"]["num_retries"], 2);
    assert_eq!(route["retry_policy"]["retriable_status_codes"], serde_json::json!([503]));
    let retry_on: Vec<&str> = route["retry_policy"]["retry_on"].as_array().expect("retry_on").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(retry_on, ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"]);
    assert!(route["timeout"].is_null(), "Istio's 0s timeout means none");

    // Traffic: the rate service's listener → its route → EDS endpoints (both in-test upstreams).
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let r = get_rate(rate).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.insert(served_by(&r));
    }
    assert_eq!(seen, BTreeSet::from(["rate-a".to_string(), "rate-b".to_string()]));

    // Envoy refused virtualInbound (a Lua filter with no code); oxidecar refuses it too, by field.
    let nacks = server.seen().nacks;
    let lua = nacks.iter().find(|(k, m)| *k == Kind::Listener && m.contains("virtualInbound")).expect("virtualInbound NACKed");
    assert!(lua.1.contains("http_filters[5]") && lua.1.contains("envoy.filters.http.lua"), "{}", lua.1);
    assert!(nacks.iter().filter(|(k, _)| *k != Kind::Secret).all(|(_, m)| m.contains("virtualInbound")), "only virtualInbound is refused: {nacks:?}");
    // The dump's `default` secret has its key redacted by Envoy: unusable, so NACKed by name.
    let secrets: Vec<&String> = nacks.iter().filter(|(k, _)| *k == Kind::Secret).map(|(_, m)| m).collect();
    assert!(secrets.iter().all(|m| m.contains("\"default\"") && m.contains("private_key")), "{secrets:?}");
    assert!(server.seen().nodes.iter().any(|n| n.starts_with("sidecar~")), "{:?}", server.seen().nodes);
    let m = proxy.metrics().await;
    assert_eq!(metric_sum(&m, "oxidecar_xds_connected", &[]), 1.0);
    assert!(metric_sum(&m, "oxidecar_xds_responses_total", &[("type", "Listener"), ("result", "nack")]) >= 1.0, "{m}");
    assert!(metric_sum(&m, "oxidecar_xds_ignored_fields_total", &[("type", "Listener"), ("field", "http_filter:istio.stats")]) >= 1.0);
    assert_eq!(metric_sum(&m, "oxidecar_xds_resources", &[("type", "Cluster")]), 138.0);

    // A fixed virtualInbound (Lua filter removed) is taken; the broken one again is NACKed and the
    // fixed one stays in force.
    let good = without_lua(&set.listeners["virtualInbound"]);
    let chains = good.filter_chains.len();
    server.update(|s| {
        s.listeners.insert("virtualInbound".into(), std::sync::Arc::new(good.clone()));
    });
    let inbound_chains = |d: serde_json::Value| {
        d["snapshot"]["listeners"].as_array().and_then(|ls| ls.iter().find(|l| l["name"] == "virtualInbound").map(|l| l["filter_chains"].as_array().map_or(0, Vec::len)))
    };
    let got = eventually(Duration::from_secs(10), || async { inbound_chains(dump(&proxy).await) }).await;
    assert_eq!(got, Some(chains));
    let before = server.seen().nacks.len();
    let bad = set.listeners["virtualInbound"].clone();
    server.update(|s| {
        s.listeners.insert("virtualInbound".into(), bad);
    });
    eventually(Duration::from_secs(10), || async { (server.seen().nacks.len() > before).then_some(()) }).await.expect("second NACK");
    assert_eq!(inbound_chains(dump(&proxy).await), Some(chains), "the last good virtualInbound stays");
    assert_eq!(get_rate(rate).await.status, 200);
}

fn without_lua(l: &envoy_types::pb::envoy::config::listener::v3::Listener) -> envoy_types::pb::envoy::config::listener::v3::Listener {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use prost::Message;
    let mut l = l.clone();
    for fc in &mut l.filter_chains {
        for f in &mut fc.filters {
            let Some(ConfigType::TypedConfig(any)) = &mut f.config_type else { continue };
            if !any.type_url.ends_with("HttpConnectionManager") {
                continue;
            }
            let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
            hcm.http_filters.retain(|h| h.name != "envoy.filters.http.lua");
            any.value = hcm.encode_to_vec();
        }
    }
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_updates_under_load_and_a_control_plane_restart_lose_nothing() {
    let (a, b) = upstreams().await;
    let mut set = hotel();
    set_endpoints(&mut set, RATE_CLUSTER, &[(a.addr, 1), (b.addr, 1)]);
    let port = free_port();
    let mut server = AdsServer::start(set, port).await;
    let (proxy, rate) = start(&server, &[]).await;
    let load = Load::start(&format!("http://127.0.0.1:{rate}/rates"), 4);
    eventually(Duration::from_secs(5), || async { (load.ok() > 50).then_some(()) }).await.expect("load flows");

    // Weights 1:9, then endpoint a removed: no request fails, and b ends up taking all of them.
    server.update(|s| set_endpoints(s, RATE_CLUSTER, &[(a.addr, 1), (b.addr, 9)]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.update(|s| set_endpoints(s, RATE_CLUSTER, &[(b.addr, 1)]));
    eventually(Duration::from_secs(10), || async {
        let d = dump(&proxy).await;
        let eps = d["snapshot"]["clusters"].as_array()?.iter().find(|c| c["name"] == RATE_CLUSTER)?["endpoints"].as_array()?.len();
        (eps == 1).then_some(())
    })
    .await
    .expect("endpoint removal applied");
    let a_before = a.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.count(), a_before, "the removed endpoint gets no more requests");

    // The control plane goes away: the config stays and traffic flows; it comes back: the stream
    // resumes with the versions held.
    server.stop().await;
    eventually(Duration::from_secs(10), || async { (metric_sum(&proxy.metrics().await, "oxidecar_xds_connected", &[]) == 0.0).then_some(()) })
        .await
        .expect("disconnect seen");
    let ok_before = load.ok();
    eventually(Duration::from_secs(5), || async { (load.ok() > ok_before + 50).then_some(()) }).await.expect("traffic without a control plane");
    server.restart().await;
    eventually(Duration::from_secs(15), || async { (metric_sum(&proxy.metrics().await, "oxidecar_xds_connected", &[]) == 1.0).then_some(()) })
        .await
        .expect("reconnected");
    let seen = server.seen();
    assert_eq!(seen.streams, 2);
    let resumed = seen.resumed_with.last().expect("second stream");
    assert_eq!(resumed.get(&Kind::Cluster), Some(&138), "resumed with the cluster versions held: {resumed:?}");
    // After the resync an update still lands.
    server.update(|s| set_endpoints(s, RATE_CLUSTER, &[(a.addr, 1)]));
    eventually(Duration::from_secs(10), || async { (get_rate(rate).await.status == 200 && a.count() > a_before).then_some(()) }).await.expect("update after resync");
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_the_world_gives_the_same_config_and_readiness_waits_for_it() {
    let (a, b) = upstreams().await;
    let mut set = hotel();
    set_endpoints(&mut set, RATE_CLUSTER, &[(a.addr, 1), (b.addr, 1)]);
    let server = AdsServer::start(set, free_port()).await;
    let (proxy, rate) = start(&server, &["--xds-sotw"]).await;
    let d = dump(&proxy).await;
    assert_eq!(d["snapshot"]["clusters"].as_array().map(Vec::len), Some(138));
    assert_eq!(d["snapshot"]["route_configs"].as_array().map(Vec::len), Some(90));
    assert_eq!(get_rate(rate).await.status, 200);
    assert!(server.seen().nacks.iter().any(|(k, m)| *k == Kind::Listener && m.contains("virtualInbound")));

    // Without a control plane the proxy never reports ready.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let ports = AdminPorts::new();
    let cfg = TempDir::new("xds-unready");
    let file = cfg.0.join("mesh.yaml");
    std::fs::write(&file, format!("{}{}", ports.yaml(), bootstrap(free_port(), free_port(), free_port()))).expect("write");
    let mut child = std::process::Command::new(binary())
        .args(["run", "--config"])
        .arg(&file)
        .args(["--xds-address", &nowhere, "--dapr-grpc-port", &free_port().to_string(), "--dapr-http-port", &free_port().to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let health = format!("http://127.0.0.1:{}/healthz/ready", ports.health);
    let status = eventually(Duration::from_secs(10), || async { http_get(&health).await.ok().map(|(s, _)| s) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = http_get(&health).await.map(|(s, _)| s).ok();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, Some(503));
    assert_eq!(later, Some(503), "still not ready without a config");
}
