//! Istio xDS with SDS end to end: a client sidecar configured by the full hotel-reservation dump
//! over ADS, its workload identity from an SDS server on pilot-agent's socket layout, sends a
//! request for the `rate` service to a server sidecar (STRICT mTLS inbound) over mutual TLS.
//! Rotation through SDS reaches new connections; a bad secret is NACKed and the identity stays.

use std::time::Duration;

use oxidecar_tests::mtls::{DevCa, identity_yaml, spiffe};
use oxidecar_tests::sds::{SdsServer, certificate_secret, root_secret, workload_secrets};
use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::xds::{AdsServer, hotel, set_endpoints_with};
use oxidecar_tests::*;

const RATE_LISTENER: &str = "10.68.182.6_8084";
const RATE_CLUSTER: &str = "outbound|8084||rate.hr2.svc.cluster.local";
const RATE_ROUTES: &str = "rate.hr2.svc.cluster.local:8084";
/// The client: the dump's own pod, `geo` in `hr2`.
const CLIENT: &str = "hr2/geo";
/// The identity the dump's `rate` cluster expects of its endpoints
/// (`match_subject_alt_names: spiffe://cluster.local/ns/hr2/sa/default`).
const SERVER: &str = "hr2/default";

/// A server sidecar in front of `app_port`: STRICT mTLS inbound (no plaintext chain).
async fn server_sidecar(ca: &DevCa, app_port: u16) -> (Proxy, u16) {
    let inbound = free_port();
    let body = format!(
        r#"{}node: {{ workload: rate, namespace: hr2 }}
listeners:
  - name: virtualInbound
    address: 127.0.0.1:{inbound}
    direction: inbound
    filter_chains:
      - match: {{ transport_protocol: tls }}
        tls: {{ require_client_certificate: true }}
        http: {{ route_config: inbound }}
route_configs:
  - name: inbound
    virtual_hosts:
{}clusters:
  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{app_port} }}] }}
"#,
        identity_yaml(&ca.workload_dir(SERVER), &ca.root()),
        catch_all("cluster: app")
    );
    (Proxy::start(AdminPorts::new(), &body).await, inbound)
}

/// The client sidecar: no identity in its file, config from ADS, secrets from SDS.
async fn client_sidecar(ads: &AdsServer, sds: &SdsServer) -> (Proxy, u16) {
    let (outbound, rate) = (free_port(), free_port());
    let bootstrap = format!("listeners:\n  - {{ name: virtualOutbound, address: 127.0.0.1:{outbound} }}\n  - {{ name: \"{RATE_LISTENER}\", address: 127.0.0.1:{rate} }}\n");
    let (url, sds_address) = (ads.url(), sds.address());
    let proxy = Proxy::start_with_args(AdminPorts::new(), &bootstrap, &["--xds-address", &url, "--sds-address", &sds_address]).await;
    (proxy, rate)
}

async fn get_rate(port: u16) -> Reply {
    send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/rates"), &[("host", RATE_ROUTES)], "").await.expect("request")
}

fn identity_updates(m: &str, result: &str) -> f64 {
    metric_sum(m, "oxidecar_tls_identity_updates_total", &[("result", result)])
}

fn read(dir: &std::path::Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

/// Everything one test needs running: the server sidecar in front of an app, and the client
/// sidecar with the hotel dump (rate endpoint → server sidecar) over ADS and its identity over SDS.
struct Mesh {
    ca: DevCa,
    app: oxidecar_tests::upstream::HttpUpstream,
    srv: Proxy,
    _ads: AdsServer,
    _pod: TempDir,
    sds: SdsServer,
    cli: Proxy,
    rate: u16,
}

async fn mesh(tag: &str) -> Mesh {
    let ca = DevCa::new(tag).await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    let app = http_upstream("rate-app").await;
    let (srv, inbound) = server_sidecar(&ca, app.port()).await;
    // The dump's rate endpoint now points at the server sidecar, marked as having one (tlsMode).
    let mut set = hotel();
    set_endpoints_with(&mut set, RATE_CLUSTER, &[(local(inbound), 1)], &[("tlsMode", "istio")]);
    let ads = AdsServer::start(set, free_port()).await;
    let pod = TempDir::new(&format!("{tag}-pod"));
    let sds = SdsServer::start(&pod.0, workload_secrets(&ca.workload_dir(CLIENT))).await;
    let (cli, rate) = client_sidecar(&ads, &sds).await;
    let installed = eventually(Duration::from_secs(10), || async { (identity_updates(&cli.metrics_now().await, "applied") >= 1.0).then_some(()) }).await;
    assert!(installed.is_some(), "the SDS identity was installed: {}", cli.metrics_now().await);
    Mesh { ca, app, srv, _ads: ads, _pod: pod, sds, cli, rate }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotel_request_rides_mtls_with_the_sds_identity_rotation_applies_and_bad_secrets_are_nacked() {
    let Mesh { ca, app, srv, sds, cli, rate, .. } = mesh("xds-sds").await;
    let seen = sds.seen();
    assert!(seen.requested.contains(&"default".to_string()) && seen.requested.contains(&"ROOTCA".to_string()), "{seen:?}");
    assert!(!seen.acks.is_empty() && seen.nacks.is_empty(), "{seen:?}");

    // A request for rate: the dump's listener → route → cluster → the server sidecar over mTLS.
    let r = get_rate(rate).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("rate-app"), "{}", r.body);
    assert_eq!(app.count(), 1);
    let (client_id, server_id) = (spiffe(CLIENT), spiffe(SERVER));
    let inbound_labels = [
        ("reporter", "destination"),
        ("source_principal", client_id.as_str()),
        ("destination_principal", server_id.as_str()),
        ("connection_security_policy", "mutual_tls"),
        ("response_code", "200"),
    ];
    assert_eq!(metric_sum(&srv.metrics().await, "istio_requests_total", &inbound_labels), 1.0, "{}", srv.metrics().await);
    let m = cli.metrics().await;
    let outbound_labels = [("reporter", "source"), ("source_principal", client_id.as_str()), ("destination_principal", server_id.as_str()), ("response_code", "200")];
    assert_eq!(metric_sum(&m, "istio_requests_total", &outbound_labels), 1.0, "{m}");
    let expiry_before = metric_sum(&m, "oxidecar_tls_cert_expiry_seconds", &[]);
    assert!(expiry_before > 0.0 && expiry_before <= 24.0 * 3600.0, "{expiry_before}");
    let handshakes = |m: &str| metric_sum(m, "oxidecar_tls_handshakes_total", &[("side", "client")]);
    let handshakes_before = handshakes(&m);

    // Rotation: a new `default` (valid 48 h) pushed over SDS; new connections use it.
    ca.mint(&[CLIENT], &["--validity", "48h"]).await;
    let dir = ca.workload_dir(CLIENT);
    sds.push(certificate_secret(read(&dir, "cert-chain.pem"), read(&dir, "key.pem")));
    let rotated = eventually(Duration::from_secs(10), || async { (identity_updates(&cli.metrics_now().await, "applied") >= 2.0).then_some(()) }).await;
    assert!(rotated.is_some(), "the rotated certificate was installed: {}", cli.metrics_now().await);
    let r = get_rate(rate).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = cli.metrics().await;
    let expiry_after = metric_sum(&m, "oxidecar_tls_cert_expiry_seconds", &[]);
    assert!(expiry_after > 36.0 * 3600.0, "the 48 h certificate is in force: {expiry_after}");
    assert!(handshakes(&m) > handshakes_before, "the request after the rotation opened a new connection with the new certificate: {m}");
    assert_eq!(metric_sum(&srv.metrics().await, "istio_requests_total", &inbound_labels), 2.0);
    eventually(Duration::from_secs(5), || async { (sds.seen().acks.len() >= 2).then_some(()) }).await.expect("rotation ACKed");

    // A `default` whose key is not the certificate's: NACKed by name, the identity stays.
    let other = ca.workload_dir(SERVER);
    sds.push(certificate_secret(read(&dir, "cert-chain.pem"), read(&other, "key.pem")));
    let nack = eventually(Duration::from_secs(10), || async { sds.seen().nacks.first().cloned() }).await.expect("bad default NACKed");
    assert!(nack.1.contains("\"default\"") && nack.1.contains("private_key") && nack.1.contains("does not match"), "{nack:?}");
    // A ROOTCA that is not PEM: NACKed too.
    sds.push(root_secret(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n".to_vec()));
    let nack = eventually(Duration::from_secs(10), || async { sds.seen().nacks.get(1).cloned() }).await.expect("bad ROOTCA NACKed");
    assert!(nack.1.contains("\"ROOTCA\"") && nack.1.contains("trust_bundle"), "{nack:?}");
    let m = cli.metrics().await;
    assert_eq!(identity_updates(&m, "applied"), 2.0, "nothing new installed: {m}");
    assert!(identity_updates(&m, "rejected") >= 2.0, "{m}");
    assert_eq!(metric_sum(&m, "oxidecar_tls_cert_expiry_seconds", &[]), expiry_after, "the rotated certificate stays in force");
    assert_eq!(metric_sum(&m, "oxidecar_xds_responses_total", &[("type", "Secret"), ("result", "nack")]), 2.0, "{m}");
    let r = get_rate(rate).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.count(), 3);
}

/// `oxidecar validate --envoy-config-dump` on `dump`: exit status and the per-type count lines
/// plus the snapshot line (the file name line left out).
async fn validate(dump: &serde_json::Value) -> (Option<i32>, Vec<String>) {
    let dir = TempDir::new("envoy-dump");
    let file = dir.0.join("config_dump.json");
    std::fs::write(&file, serde_json::to_vec(dump).expect("json")).expect("write dump");
    validate_file(&file).await
}

async fn validate_file(file: &std::path::Path) -> (Option<i32>, Vec<String>) {
    let out = tokio::process::Command::new(binary()).arg("validate").arg("--envoy-config-dump").arg(file).output().await.expect("run validate");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = text
        .lines()
        .filter(|l| {
            ["  Cluster:", "  ClusterLoadAssignment:", "  Listener:", "  RouteConfiguration:", "  Secret:", "  snapshot:", "  Envoy rejected"].iter().any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    (out.status.code(), lines)
}

async fn envoy_dump(proxy: &Proxy) -> (serde_json::Value, String) {
    let (status, body) = proxy.admin("/config_dump?format=envoy").await;
    assert_eq!(status, 200, "{body}");
    (serde_json::from_str(&body).expect("config dump JSON"), body)
}

fn secret<'a>(dump: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let configs = dump["configs"].as_array().expect("configs");
    let secrets = configs.iter().find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.SecretsConfigDump").expect("SecretsConfigDump");
    secrets["dynamic_active_secrets"].as_array().expect("secrets").iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("secret {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_shaped_config_dumps_round_trip_through_validate_without_key_material() {
    let m = mesh("envoy-dump").await;
    assert_eq!(get_rate(m.rate).await.status, 200);

    // From xDS: the resources as accepted, read back with the same counts as the fixture itself
    // (the rate endpoint was replaced one for one), virtualInbound refused by both.
    let (dump, body) = envoy_dump(&m.cli).await;
    let types: Vec<&str> = dump["configs"].as_array().expect("configs").iter().filter_map(|c| c["@type"].as_str()).collect();
    for t in ["BootstrapConfigDump", "ClustersConfigDump", "EndpointsConfigDump", "ListenersConfigDump", "RoutesConfigDump", "SecretsConfigDump"] {
        assert!(types.contains(&format!("type.googleapis.com/envoy.admin.v3.{t}").as_str()), "{t} in {types:?}");
    }
    assert!(!body.contains("PRIVATE KEY"), "no key material");
    assert_eq!(secret(&dump, "default")["secret"]["tls_certificate"]["private_key"]["inline_string"], "[redacted]");
    assert!(secret(&dump, "ROOTCA")["secret"]["validation_context"]["trusted_ca"]["inline_bytes"].as_str().is_some_and(|s| !s.is_empty()));
    let clusters = &dump["configs"][1]["dynamic_active_clusters"];
    let rate = clusters.as_array().expect("clusters").iter().find(|c| c["cluster"]["name"] == RATE_CLUSTER).expect("rate cluster");
    assert!(rate["version_info"].as_str().is_some_and(|v| !v.is_empty()), "{rate}");
    assert!(rate["last_updated"].as_str().is_some_and(|t| t.ends_with('Z')), "{rate}");
    assert!(dump["configs"][0]["bootstrap"]["node"]["id"].as_str().is_some_and(|id| id.starts_with("sidecar~")), "{}", dump["configs"][0]);
    let inbound = dump["configs"][3]["dynamic_listeners"].as_array().expect("listeners").iter().find(|l| l["name"] == "virtualInbound").expect("virtualInbound");
    assert!(inbound["error_state"]["details"].as_str().is_some_and(|d| d.contains("envoy.filters.http.lua")), "{inbound}");
    let ours = validate(&dump).await;
    let fixture = std::env::var("OXIDECAR_ISTIO_FIXTURES").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/istio").to_string());
    let original = validate_file(std::path::Path::new(&format!("{fixture}/sidecar-full-configdump-v3-istio1.18-hotelreservation-geo.json"))).await;
    assert_eq!(ours.0, Some(2), "virtualInbound is refused: {:?}", ours.1);
    // The rate cluster's load assignment is the test's own (fewer optional fields than istiod
    // writes), so its ignored-field count differs from the fixture's; everything else is equal.
    let counts = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| !l.starts_with("  Envoy rejected"))
            .map(|l| if l.starts_with("  ClusterLoadAssignment:") { l.split(", 0 rejected").next().unwrap_or(l).to_string() } else { l.clone() })
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&ours.1), counts(&original.1));
    assert!(ours.1.iter().any(|l| l.starts_with("  Envoy rejected Listener \"virtualInbound\"") && l.ends_with("oxidecar rejects it too")), "{:?}", ours.1);

    // From a static file (the server sidecar): the model as Envoy resources, accepted whole.
    let (dump, body) = envoy_dump(&m.srv).await;
    assert!(!body.contains("PRIVATE KEY"), "no key material");
    assert_eq!(secret(&dump, "default")["secret"]["tls_certificate"]["private_key"]["inline_string"], "[redacted]");
    let (status, lines) = validate(&dump).await;
    assert_eq!(status, Some(0), "{lines:?}");
    let (status, body) = m.srv.admin("/config_dump?format=yaml").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"yaml\""), "{body}");
    // Counts of ignored fields (stat prefixes and the like) are not the point here.
    let lines: Vec<&str> = lines.iter().map(|l| l.split(", 0 rejected").next().unwrap_or(l)).collect();
    assert_eq!(
        lines,
        [
            "  Cluster: 1 received, 1 accepted",
            // As in Envoy's own dumps: the static cluster's endpoints are listed, and used through it.
            "  ClusterLoadAssignment: 1 received, 0 accepted",
            "  Listener: 1 received, 1 accepted",
            "  RouteConfiguration: 1 received, 1 accepted",
            "  Secret: 2 received, 2 accepted",
            "  snapshot: 1 listeners, 1 route configs, 1 clusters, 1 endpoints",
        ]
    );
}
