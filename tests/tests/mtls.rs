//! Mesh mTLS between two sidecars: identities verified and reported, bad certificates refused,
//! STRICT and PERMISSIVE inbound, rotation under load, and session resumption.

use std::path::Path;
use std::time::Duration;

use oxidecar_tests::mtls::{DevCa, identity_yaml, spiffe};
use oxidecar_tests::upstream::{http_upstream, tcp_echo};
use oxidecar_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT: &str = "default/productpage";
const SERVER: &str = "default/reviews";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strict,
    Permissive,
}

/// A server sidecar: inbound mTLS (HTTP to the app; TCP to an echo server when the client offers
/// Istio's TCP ALPN), plus a plaintext chain in PERMISSIVE mode.
async fn server(identity: &str, app_port: u16, echo_port: u16, mode: Mode) -> (Proxy, u16) {
    let inbound = free_port();
    let plaintext = if mode == Mode::Permissive {
        "      - match: { transport_protocol: raw_buffer }\n        http: { route_config: inbound }\n"
    } else {
        ""
    };
    let body = format!(
        r#"{identity}node: {{ workload: reviews-v1, namespace: default }}
listeners:
  - name: virtualInbound
    address: 127.0.0.1:{inbound}
    direction: inbound
    filter_chains:
      - match: {{ transport_protocol: tls, application_protocols: [istio-peer-exchange, istio] }}
        tls: {{}}
        tcp: {{ cluster: echo }}
      - match: {{ transport_protocol: tls }}
        tls: {{}}
        http: {{ route_config: inbound }}
{plaintext}route_configs:
  - name: inbound
    virtual_hosts:
{}clusters:
  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{app_port} }}] }}
  - {{ name: echo, endpoints: [{{ address: 127.0.0.1:{echo_port} }}] }}
"#,
        catch_all("cluster: app")
    );
    (Proxy::start(AdminPorts::new(), &body).await, inbound)
}

/// A client sidecar: HTTP outbound routing each host to an mTLS cluster, and a TCP outbound to
/// the first target. `targets`: (host, server inbound port, expected SANs).
async fn client(identity: &str, targets: &[(&str, u16, &[String])]) -> (Proxy, u16, u16) {
    client_with(identity, targets, "").await
}

/// Like [`client`], with `extra` (indented YAML) added to every cluster.
async fn client_with(identity: &str, targets: &[(&str, u16, &[String])], extra: &str) -> (Proxy, u16, u16) {
    let (outbound, tcp_out) = (free_port(), free_port());
    let mut vhosts = String::new();
    let mut clusters = String::new();
    for (host, port, sans) in targets {
        vhosts.push_str(&format!(
            "      - {{ name: {host}, domains: [\"{host}\"], routes: [{{ match: {{ prefix: \"/\" }}, route: {{ cluster: {host} }} }}] }}\n"
        ));
        let sans = sans.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        clusters.push_str(&format!(
            "  - name: {host}\n    service: {host}.default.svc.cluster.local\n    tls: {{ mode: istio_mutual, sni: outbound_.9080_._.{host}.default.svc.cluster.local, subject_alt_names: [{sans}] }}\n    endpoints: [{{ address: 127.0.0.1:{port} }}]\n{extra}"
        ));
    }
    let first = targets[0].0;
    vhosts.push_str(&format!("      - {{ name: default, domains: [\"*\"], routes: [{{ match: {{ prefix: \"/\" }}, route: {{ cluster: {first} }} }}] }}\n"));
    let body = format!(
        r#"{identity}node: {{ workload: productpage-v1, namespace: default }}
listeners:
  - name: virtualOutbound
    address: 127.0.0.1:{outbound}
    filter_chains: [{{ http: {{ route_config: outbound }} }}]
  - name: tcpOutbound
    address: 127.0.0.1:{tcp_out}
    filter_chains: [{{ tcp: {{ cluster: {first} }} }}]
route_configs:
  - name: outbound
    virtual_hosts:
{vhosts}clusters:
{clusters}"#
    );
    (Proxy::start(AdminPorts::new(), &body).await, outbound, tcp_out)
}

async fn get(port: u16, host: &str) -> Reply {
    send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/hello"), &[("host", host)], "").await.expect("request")
}

fn ident(ca: &DevCa, workload: &str) -> String {
    identity_yaml(&ca.workload_dir(workload), &ca.root())
}

#[tokio::test]
async fn mtls_between_sidecars_verifies_and_reports_both_identities() {
    let ca = DevCa::new("pair").await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    let app = http_upstream("reviews-app").await;
    let echo = tcp_echo().await;
    let (srv, inbound) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Strict).await;
    let (cli, outbound, _) = client(&ident(&ca, CLIENT), &[("reviews", inbound, &[spiffe(SERVER)])]).await;

    let r = get(outbound, "reviews").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("reviews-app"), "{}", r.body);

    let (client_id, server_id) = (spiffe(CLIENT), spiffe(SERVER));
    let m = srv.metrics().await;
    let inbound_labels = [
        ("reporter", "destination"),
        ("source_principal", client_id.as_str()),
        ("destination_principal", server_id.as_str()),
        ("connection_security_policy", "mutual_tls"),
        ("response_code", "200"),
    ];
    assert_eq!(metric_sum(&m, "istio_requests_total", &inbound_labels), 1.0, "{m}");
    assert!(metric_sum(&m, "oxidecar_tls_handshakes_total", &[("side", "server")]) >= 1.0, "{m}");
    let m = cli.metrics().await;
    let outbound_labels = [("reporter", "source"), ("source_principal", client_id.as_str()), ("destination_principal", server_id.as_str())];
    assert_eq!(metric_sum(&m, "istio_requests_total", &outbound_labels), 1.0, "{m}");
    assert_eq!(metric_sum(&m, "oxidecar_tls_record_path", &[("path", "userspace")]), 1.0, "{m}");

    // Keep-alive: later requests ride pooled mTLS connections. (A request can arrive before the
    // previous one's connection is back in the pool, so allow a few, far fewer than requests. The
    // pause gives a debug build on a busy CI machine time to finish the previous request — its
    // access log and metrics — and return the connection: 20 ms was not always enough.)
    for _ in 0..10 {
        assert_eq!(get(outbound, "reviews").await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = cli.metrics().await;
    assert!(metric_sum(&m, "oxidecar_tls_handshakes_total", &[("side", "client")]) <= 3.0, "{m}");
    assert_eq!(metric_sum(&m, "istio_requests_total", &outbound_labels), 11.0, "{m}");
}

#[tokio::test]
async fn wrong_identity_untrusted_and_expired_certificates_are_refused() {
    let ca = DevCa::new("refuse").await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    let expired = DevCa { dir: TempDir::new("ca-expired") };
    // Same CA, an expired server certificate: copy the root over, then mint with a past validity.
    std::fs::copy(ca.dir.0.join("root-cert.pem"), expired.dir.0.join("root-cert.pem")).expect("copy root");
    std::fs::copy(ca.dir.0.join("root-key.pem"), expired.dir.0.join("root-key.pem")).expect("copy key");
    expired.mint(&[SERVER], &["--validity", "1h", "--backdate", "2h"]).await;
    let stranger = DevCa::new("stranger").await;
    stranger.mint(&[SERVER], &[]).await;

    let app = http_upstream("reviews-app").await;
    let echo = tcp_echo().await;
    let (_good, good_port) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Strict).await;
    // Each server trusts the mesh CA, so only its own certificate is at fault.
    let (_old, old_port) = server(&identity_yaml(&expired.workload_dir(SERVER), &ca.root()), app.port(), echo.port(), Mode::Strict).await;
    let (_odd, odd_port) = server(&identity_yaml(&stranger.workload_dir(SERVER), &ca.root()), app.port(), echo.port(), Mode::Strict).await;
    let right = [spiffe(SERVER)];
    let wrong = [spiffe("default/ratings")];
    let (cli, outbound, _) = client(
        &ident(&ca, CLIENT),
        &[("reviews", good_port, &right), ("impostor", good_port, &wrong), ("expired", old_port, &right), ("untrusted", odd_port, &right)],
    )
    .await;

    assert_eq!(get(outbound, "reviews").await.status, 200, "the control case works");
    for (host, reason) in [("impostor", "wrong_identity"), ("expired", "expired_certificate"), ("untrusted", "untrusted_certificate")] {
        let r = get(outbound, host).await;
        assert_eq!(r.status, 503, "{host}: {}", r.body);
        assert_eq!(r.headers.get("x-oxidecar-reason").and_then(|v| v.to_str().ok()).map(|v| v.contains("mTLS")), Some(true), "{host}: {:?}", r.headers);
        assert!(!r.body.contains("reviews-app"), "{host}: the app must not be reached");
        let m = cli.metrics().await;
        assert!(metric_sum(&m, "oxidecar_tls_handshake_errors_total", &[("side", "client"), ("reason", reason)]) >= 1.0, "{host}: {m}");
    }
    assert_eq!(app.count(), 1, "only the control request reached the app");
}

#[tokio::test]
async fn strict_refuses_plaintext_and_strangers_permissive_accepts_both() {
    let ca = DevCa::new("modes").await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    let stranger = DevCa::new("modes-stranger").await;
    stranger.mint(&[CLIENT], &[]).await;
    let app = http_upstream("reviews-app").await;
    let echo = tcp_echo().await;
    let (strict, strict_port) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Strict).await;
    let (permissive, permissive_port) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Permissive).await;

    // Plaintext straight to the inbound port, as a pod without a sidecar would send it.
    assert!(http_get(&format!("http://127.0.0.1:{strict_port}/hello")).await.is_err(), "STRICT must not answer plaintext");
    let (status, body) = http_get(&format!("http://127.0.0.1:{permissive_port}/hello")).await.expect("PERMISSIVE plaintext");
    assert_eq!(status, 200, "{body}");
    let m = permissive.metrics().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("connection_security_policy", "none"), ("source_principal", "unknown")]), 1.0, "{m}");

    // mTLS works on both.
    let sans = [spiffe(SERVER)];
    let (_cli, outbound, _) = client(&ident(&ca, CLIENT), &[("strict", strict_port, &sans), ("permissive", permissive_port, &sans)]).await;
    assert_eq!(get(outbound, "strict").await.status, 200);
    assert_eq!(get(outbound, "permissive").await.status, 200);
    let m = permissive.metrics().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("connection_security_policy", "mutual_tls")]), 1.0, "{m}");

    // A client whose certificate the mesh CA did not sign is refused by the server (it trusts
    // the server itself: its bundle holds both roots).
    let both = TempDir::new("both-roots");
    let bundle = both.0.join("bundle.pem");
    let roots = [std::fs::read_to_string(ca.root()).expect("root"), std::fs::read_to_string(stranger.root()).expect("root")].concat();
    std::fs::write(&bundle, roots).expect("bundle");
    let (_intruder, intruder_out, _) = client(&identity_yaml(&stranger.workload_dir(CLIENT), &bundle), &[("strict", strict_port, &sans)]).await;
    assert_eq!(get(intruder_out, "strict").await.status, 503);
    let m = strict.metrics().await;
    assert!(metric_sum(&m, "oxidecar_tls_handshake_errors_total", &[("side", "server"), ("reason", "untrusted_certificate")]) >= 1.0, "{m}");
    assert_eq!(app.count(), 3, "plaintext to PERMISSIVE and the two mTLS requests only");
}

#[tokio::test]
async fn certificate_rotation_under_load_fails_no_request() {
    let ca = DevCa::new("rotate").await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    let app = http_upstream("reviews-app").await;
    let echo = tcp_echo().await;
    let (srv, inbound) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Strict).await;
    let (cli, outbound, _) = client(&ident(&ca, CLIENT), &[("reviews", inbound, &[spiffe(SERVER)])]).await;

    let serial = |dir: &Path| std::fs::read(dir.join("cert-chain.pem")).expect("cert");
    let before = serial(&ca.workload_dir(CLIENT));
    let load = Load::start(&format!("http://127.0.0.1:{outbound}/hello"), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let handshakes = |m: &str| metric_sum(m, "oxidecar_tls_handshakes_total", &[("side", "client")]);
    let before_rotation = handshakes(&cli.metrics_now().await);
    assert!(before_rotation >= 1.0);
    ca.mint(&[CLIENT, SERVER], &[]).await;
    assert_ne!(serial(&ca.workload_dir(CLIENT)), before, "new certificates were written");
    let rotated = eventually(Duration::from_secs(10), || async {
        let (c, s) = (cli.metrics_now().await, srv.metrics_now().await);
        let applied = |m: &str| metric_sum(m, "oxidecar_tls_identity_updates_total", &[("result", "applied")]);
        (applied(&c) >= 2.0 && applied(&s) >= 2.0).then_some(())
    })
    .await;
    assert!(rotated.is_some(), "both sidecars picked up the new certificates");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{ok} ok");
    assert!(ok > 50, "load ran: {ok}");
    // New requests moved to connections made with the new certificate.
    let m = cli.metrics().await;
    assert!(handshakes(&m) > before_rotation, "new connections with the new certificate: {m}");
    let server_id = spiffe(SERVER);
    assert!(metric_sum(&m, "istio_requests_total", &[("response_code", "200"), ("destination_principal", server_id.as_str())]) >= ok as f64, "{m}");
}

#[tokio::test]
async fn sidecars_resume_tls_sessions_and_tcp_carries_identities() {
    let ca = DevCa::new("resume").await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    let app = http_upstream("reviews-app").await;
    let echo = tcp_echo().await;
    let (srv, inbound) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Strict).await;
    let (cli, _, tcp_out) = client(&ident(&ca, CLIENT), &[("reviews", inbound, &[spiffe(SERVER)])]).await;

    // Each downstream TCP connection opens its own upstream mTLS connection.
    for i in 0..6u8 {
        let mut s = tokio::net::TcpStream::connect(local(tcp_out)).await.expect("connect");
        let msg = [b'p', b'i', b'n', b'g', b'0' + i];
        s.write_all(&msg).await.expect("write");
        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.expect("echo in time").expect("echo");
        assert_eq!(got, msg, "echoed through both sidecars");
    }
    let resumed = |m: &str, side: &str| metric_sum(m, "oxidecar_tls_handshakes_total", &[("side", side), ("kind", "resumed")]);
    let m = cli.metrics().await;
    assert!(resumed(&m, "client") >= 4.0, "client resumed sessions: {m}");
    assert_eq!(metric_sum(&m, "oxidecar_tls_handshakes_total", &[("side", "client")]), 6.0, "{m}");
    let m = srv.metrics().await;
    assert!(resumed(&m, "server") >= 4.0, "server resumed sessions: {m}");
    let client_id = spiffe(CLIENT);
    let labels = [("reporter", "destination"), ("source_principal", client_id.as_str()), ("connection_security_policy", "mutual_tls")];
    assert_eq!(metric_sum(&m, "istio_tcp_connections_opened_total", &labels), 6.0, "{m}");
}

#[tokio::test]
async fn unreadable_identity_files_stop_start_up_naming_the_file() {
    let dir = TempDir::new("no-identity");
    let missing = dir.0.join("absent");
    let config = dir.0.join("mesh.yaml");
    std::fs::write(&config, format!("{}{}", AdminPorts::new().yaml(), identity_yaml(&missing, &missing.join("root-cert.pem")))).expect("config");
    let out = tokio::process::Command::new(binary()).arg("run").arg("--config").arg(&config).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cert_chain: cannot read") && err.contains("absent/cert-chain.pem"), "{err}");
}

#[tokio::test]
async fn h2_multiplexes_over_one_pooled_mtls_connection_and_max_duration_renews_it() {
    let ca = DevCa::new("h2").await;
    ca.mint(&[CLIENT, SERVER], &[]).await;
    // A slow app keeps every request open while the next ones start: they must share streams.
    let app = oxidecar_tests::upstream::http_upstream_with("reviews-app", oxidecar_tests::upstream::Behavior { delay: Some(Duration::from_millis(400)), ..Default::default() }).await;
    let echo = tcp_echo().await;
    let (srv, inbound) = server(&ident(&ca, SERVER), app.port(), echo.port(), Mode::Strict).await;
    let (cli, outbound, _) = client_with(&ident(&ca, CLIENT), &[("reviews", inbound, &[spiffe(SERVER)])], "    protocol: h2\n    max_connection_duration: 3s\n").await;

    // Connections are renewed per max_connection_duration window of the wall clock: start right
    // after a window opens, so this phase stays inside one.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(3000 - now % 3000 + 50)).await;
    assert_eq!(get(outbound, "reviews").await.status, 200, "opens the connection");
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        calls.spawn(async move { get(outbound, "reviews").await.status });
        // Started one after another, so each finds the connection back in the pool.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut peak_overlap = 0;
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.expect("task"), 200);
        peak_overlap += 1;
    }
    assert_eq!(peak_overlap, 20);
    let handshakes = |m: &str| metric_sum(m, "oxidecar_tls_handshakes_total", &[("side", "client")]);
    let m = cli.metrics().await;
    // 20 requests of 400 ms started within 200 ms overlapped; one connection carried them all.
    assert_eq!(handshakes(&m), 1.0, "one multiplexed mTLS connection: {m}");
    let m = srv.metrics().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("reporter", "destination"), ("connection_security_policy", "mutual_tls")]), 21.0, "{m}");

    // Past max_connection_duration, new requests open a new connection.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(get(outbound, "reviews").await.status, 200);
    assert_eq!(handshakes(&cli.metrics().await), 2.0, "a fresh connection after the maximum duration");
}
