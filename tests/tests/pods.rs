//! The mesh end to end on real network stacks: pods are network namespaces on a bridge, apps in
//! them are unmodified (python's http.server, redis-server, a tonic gRPC server, curl, redis-cli,
//! the Dapr Python SDK) and their traffic reaches the sidecars only through `oxidecar capture`.
//! Needs root; see docs/PODS.md.

use std::time::Duration;

use oxidecar_tests::mtls::{DevCa, spiffe};
use oxidecar_tests::pods::{Net, Pod};
use oxidecar_tests::{eventually, metric_sum};

/// The workloads' identities (namespace/service account) when the mesh runs mTLS.
const A_IDENTITY: &str = "pods/a";
const B_IDENTITY: &str = "pods/b";

const HTTP_PORT: u16 = 8080;
const GRPC_PORT: u16 = 50051;
const REDIS_PORT: u16 = 7379;
const BANNER_PORT: u16 = 7380;
/// An app in a pod outside the mesh: no service names it.
const OUTSIDE_PORT: u16 = 9000;
/// The same port as B's redis service: only the address tells them apart.
const OUTSIDE_REDIS_PORT: u16 = REDIS_PORT;

/// Outbound traffic to destinations no service covers (Istio's outboundTrafficPolicy).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    AllowAny,
    RegistryOnly,
}

/// Mesh mTLS for a sidecar: its identity (the config's `identity:` line) and its inbound mode.
struct Mtls {
    identity: String,
    permissive: bool,
}

/// A sidecar config: mesh services of pod `b` (HTTP, gRPC, redis, a server-first banner), the
/// outbound default for everything else, and inbound to the app on localhost.
fn sidecar_config(workload: &str, b: &Pod, policy: Policy) -> String {
    sidecar_config_with(workload, b, policy, None)
}

/// [`sidecar_config`], with mesh mTLS when `mtls` is given: B's services are `istio_mutual`
/// clusters expecting B's SPIFFE ID, and the inbound listener terminates mTLS (and, PERMISSIVE,
/// also takes plaintext).
fn sidecar_config_with(workload: &str, b: &Pod, policy: Policy, mtls: Option<&Mtls>) -> String {
    let unknown = match policy {
        Policy::AllowAny => "PassthroughCluster",
        Policy::RegistryOnly => "BlackHoleCluster",
    };
    let b_ip = b.ip;
    let plaintext_inbound = r#"      - { name: inbound-http, match: { transport_protocol: raw_buffer }, http: { route_config: inbound } }
      - { name: inbound-tcp, match: { transport_protocol: raw_buffer }, tcp: { cluster: InboundPassthroughCluster } }
"#;
    let (identity, tls, inbound) = match mtls {
        None => (String::new(), String::new(), plaintext_inbound.replace("match: { transport_protocol: raw_buffer }, ", "")),
        Some(m) => (
            m.identity.clone(),
            format!(", tls: {{ mode: istio_mutual, subject_alt_names: [\"{}\"] }}", spiffe(B_IDENTITY)),
            format!(
                "      - {{ name: inbound-mtls-tcp, match: {{ transport_protocol: tls, application_protocols: [istio-peer-exchange, istio] }}, tls: {{}}, tcp: {{ cluster: InboundPassthroughCluster }} }}\n      - {{ name: inbound-mtls-http, match: {{ transport_protocol: tls }}, tls: {{}}, http: {{ route_config: inbound }} }}\n{}",
                if m.permissive { plaintext_inbound } else { "" }
            ),
        ),
    };
    format!(
        r#"{identity}node: {{ workload: {workload}, namespace: pods }}
listeners:
  - name: virtualOutbound
    address: "[::]:15001"
    direction: outbound
    filter_chains:
      - {{ name: redis-b, match: {{ destination_port: {REDIS_PORT}, prefix_ranges: ["{b_ip}/32"] }}, tcp: {{ cluster: redis-b }} }}
      - {{ name: banner-b, match: {{ destination_port: {BANNER_PORT}, prefix_ranges: ["{b_ip}/32"] }}, tcp: {{ cluster: banner-b }} }}
      - {{ name: outbound-http, http: {{ route_config: outbound }} }}
      - {{ name: outbound-tcp, tcp: {{ cluster: {unknown} }} }}
  - name: virtualInbound
    address: "[::]:15006"
    direction: inbound
    filter_chains:
{inbound}route_configs:
  - name: outbound
    virtual_hosts:
      - name: b
        domains: ["b", "b:{HTTP_PORT}", "{b_ip}:{HTTP_PORT}"]
        routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: b-http }} }}]
      - name: b-grpc
        domains: ["b:{GRPC_PORT}", "{b_ip}:{GRPC_PORT}"]
        routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: b-grpc }} }}]
      - name: unknown
        domains: ["*"]
        routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: {unknown} }} }}]
  - name: inbound
    virtual_hosts:
      - name: inbound
        domains: ["*"]
        routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: InboundPassthroughCluster }} }}]
clusters:
  - {{ name: b-http, service: b.pods.svc.cluster.local, endpoints: [{{ address: "{b_ip}:{HTTP_PORT}" }}]{tls} }}
  - {{ name: b-grpc, service: b.pods.svc.cluster.local, protocol: h2, endpoints: [{{ address: "{b_ip}:{GRPC_PORT}" }}]{tls} }}
  - {{ name: redis-b, service: redis.pods.svc.cluster.local, endpoints: [{{ address: "{b_ip}:{REDIS_PORT}" }}]{tls} }}
  - {{ name: banner-b, service: banner.pods.svc.cluster.local, endpoints: [{{ address: "{b_ip}:{BANNER_PORT}" }}]{tls} }}
  - {{ name: PassthroughCluster, type: original_dst }}
  - {{ name: BlackHoleCluster, type: blackhole }}
  - {{ name: InboundPassthroughCluster, type: original_dst_loopback }}
"#
    )
}

/// A python one-liner server that speaks first (like SMTP or MySQL): a banner, then an echo.
const BANNER_SERVER: &str = r#"
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve(c):
    c.sendall(b"220 pod-b banner\r\n")
    while (data := c.recv(4096)):
        c.sendall(data)
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Connects, waits for the server's banner without sending anything first, then checks an echo.
const BANNER_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
banner = c.recv(4096)
c.sendall(b"ping\n")
echo = c.recv(4096)
print(banner.decode().strip(), "|", echo.decode().strip())
"#;

/// The apps of pod B, all unmodified and listening on localhost only (the inbound sidecar hands
/// them the traffic): http.server serving `hello`, the gRPC echo server, redis, a banner server.
async fn start_apps_of_b(b: &Pod) {
    std::fs::write(b.dir().join("hello"), "hello from pod-b\n").expect("write page");
    let dir = b.dir().to_string_lossy().into_owned();
    let port = HTTP_PORT.to_string();
    b.spawn("http", &["python3", "-m", "http.server", &port, "--bind", "::1", "--directory", &dir]);
    // http.server binds one family: IPv4 loopback too, for the IPv4 inbound path.
    let port4 = port.clone();
    b.spawn("http4", &["python3", "-m", "http.server", &port4, "--bind", "127.0.0.1", "--directory", &dir]);
    b.spawn("grpc", &[env!("CARGO_BIN_EXE_pod_grpc"), "serve", &format!("127.0.0.1:{GRPC_PORT}"), "pod-b"]);
    let redis_port = REDIS_PORT.to_string();
    b.spawn("redis", &["redis-server", "--port", &redis_port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    b.spawn("banner", &["python3", "-c", BANNER_SERVER, &BANNER_PORT.to_string()]);
    for p in [HTTP_PORT, GRPC_PORT, REDIS_PORT, BANNER_PORT] {
        b.wait_listening(p).await;
    }
}

/// Pods A and B with sidecars (B running its apps) and pod C outside the mesh (no sidecar)
/// running an http.server and a redis of its own.
struct Mesh {
    a: Pod,
    b: Pod,
    c: Pod,
    /// B's `identity:` line when the mesh runs mTLS.
    b_identity: String,
    net: Net,
}

async fn mesh(policy: Policy) -> Mesh {
    mesh_with_capture(policy, &[]).await
}

/// [`mesh`] with extra `oxidecar capture` flags for both sidecars.
async fn mesh_with_capture(policy: Policy, capture: &[&str]) -> Mesh {
    build_mesh(policy, capture, None).await
}

/// [`mesh`] with mesh mTLS: A and B hold identities `pods/a` and `pods/b` from one dev CA; B's
/// inbound is STRICT, or PERMISSIVE when `permissive`.
async fn mtls_mesh(permissive: bool) -> Mesh {
    build_mesh(Policy::AllowAny, &[], Some(permissive)).await
}

async fn build_mesh(policy: Policy, capture: &[&str], mtls: Option<bool>) -> Mesh {
    let net = Net::new();
    let (a, b, c) = (net.pod("a"), net.pod("b"), net.pod("c"));
    start_apps_of_b(&b).await;
    std::fs::write(c.dir().join("outside"), "outside the mesh\n").expect("write page");
    let c_dir = c.dir().to_string_lossy().into_owned();
    c.spawn("http", &["python3", "-m", "http.server", &OUTSIDE_PORT.to_string(), "--bind", "0.0.0.0", "--directory", &c_dir]);
    c.spawn("redis", &["redis-server", "--port", &OUTSIDE_REDIS_PORT.to_string(), "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]);
    let (mut a_mtls, mut b_mtls) = (None, None);
    if let Some(permissive) = mtls {
        let ca = DevCa::new("pods").await;
        ca.mint(&[A_IDENTITY, B_IDENTITY], &[]).await;
        a_mtls = Some(Mtls { identity: a.install_identity(&ca, A_IDENTITY), permissive: false });
        b_mtls = Some(Mtls { identity: b.install_identity(&ca, B_IDENTITY), permissive });
    }
    let b_config = sidecar_config_with("pod-b", &b, Policy::AllowAny, b_mtls.as_ref());
    b.sidecar(&b_config, &["--app-id", "b", "--app-port", &HTTP_PORT.to_string()], capture).await;
    a.sidecar(&sidecar_config_with("pod-a", &b, policy, a_mtls.as_ref()), &["--app-id", "a"], capture).await;
    c.wait_listening(OUTSIDE_PORT).await;
    c.wait_listening(OUTSIDE_REDIS_PORT).await;
    Mesh { a, b, c, b_identity: b_mtls.map(|m| m.identity).unwrap_or_default(), net }
}

fn url(pod: &Pod, port: u16, path: &str) -> String {
    format!("http://{}:{port}{path}", pod.ip)
}

#[tokio::test]
async fn capture_applies_atomically_and_cleanup_removes_only_its_table() {
    let net = Net::new();
    let pod = net.pod("x");
    let bin = oxidecar_tests::binary();
    let bin = bin.to_str().expect("utf-8 path");
    let other = pod.exec(&["nft", "add table inet other; add chain inet other c { type filter hook output priority 0; }"]).await;
    assert!(other.ok(), "{}", other.stderr);
    let rules = |out: &str| out.lines().filter(|l| l.contains("redirect") || l.contains("return")).count();

    let applied = pod.exec(&[bin, "capture", "--exclude-outbound-ports", "22", "--exclude-outbound-ip-ranges", "192.0.2.0/24,2001:db8::/32", "--exclude-inbound-ports", "9000"]).await;
    assert!(applied.ok(), "{}", applied.stderr);
    let listed = pod.exec(&["nft", "list", "table", "inet", "oxidecar"]).await.stdout;
    for want in ["meta skuid 1337 return", "tcp dport 22 return", "ip daddr 192.0.2.0/24 return", "ip6 daddr 2001:db8::/32 return", "redirect to :15001", "tcp dport { 9000, 15020, 15021, 15090 } return", "redirect to :15006"] {
        assert!(listed.contains(want), "missing {want:?} in\n{listed}");
    }
    let count = rules(&listed);

    // Applying again replaces the table: no duplicated rules.
    assert!(pod.exec(&[bin, "capture", "--exclude-outbound-ports", "22", "--exclude-outbound-ip-ranges", "192.0.2.0/24,2001:db8::/32", "--exclude-inbound-ports", "9000"]).await.ok());
    assert_eq!(rules(&pod.exec(&["nft", "list", "table", "inet", "oxidecar"]).await.stdout), count);

    // A dry run prints and changes nothing; a bad flag changes nothing and names itself.
    let dry = pod.exec(&[bin, "capture", "--dry-run", "--proxy-uid", "4242"]).await;
    assert!(dry.ok() && dry.stdout.contains("meta skuid 4242 return"), "{dry:?}");
    let bad = pod.exec(&[bin, "capture", "--exclude-outbound-ip-ranges", "10.0.0.0/40"]).await;
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("--exclude-outbound-ip-ranges: \"10.0.0.0/40\""), "{bad:?}");
    let after = pod.exec(&["nft", "list", "table", "inet", "oxidecar"]).await.stdout;
    assert!(!after.contains("4242") && rules(&after) == count, "{after}");

    // Cleanup removes our table only, and is safe to repeat.
    for _ in 0..2 {
        let cleaned = pod.exec(&[bin, "capture", "--cleanup"]).await;
        assert!(cleaned.ok(), "{}", cleaned.stderr);
    }
    let ruleset = pod.exec(&["nft", "list", "ruleset"]).await.stdout;
    assert!(!ruleset.contains("oxidecar") && ruleset.contains("table inet other"), "{ruleset}");
}

#[tokio::test]
async fn curl_reaches_the_other_pod_through_both_sidecars_without_loops() {
    let m = mesh(Policy::AllowAny).await;
    for _ in 0..3 {
        let (status, body) = m.a.curl(&url(&m.b, HTTP_PORT, "/hello"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "hello from pod-b\n"));
    }
    let (a, b) = (m.a.metrics().await, m.b.metrics().await);
    let source = [("reporter", "source"), ("source_workload", "pod-a"), ("destination_workload", "pod-b"), ("destination_service", "b.pods.svc.cluster.local"), ("response_code", "200")];
    assert_eq!(metric_sum(&a, "istio_requests_total", &source), 3.0, "A's outbound counts each request once:\n{a}");
    // Each side knows the other's workload from Istio's metadata exchange headers.
    let destination = [("reporter", "destination"), ("destination_workload", "pod-b"), ("source_workload", "pod-a"), ("response_code", "200")];
    assert_eq!(metric_sum(&b, "istio_requests_total", &destination), 3.0, "B's inbound counts each request once:\n{b}");
    // No loop: nothing else was counted anywhere (a sidecar capturing its own upstream
    // connection would count every request again, or forever).
    assert_eq!(metric_sum(&a, "istio_requests_total", &[]), 3.0, "{a}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[]), 3.0, "{b}");
    assert_eq!(metric_sum(&a, "istio_tcp_connections_opened_total", &[]) + metric_sum(&b, "istio_tcp_connections_opened_total", &[]), 0.0);

    // A's sidecar (uid 1337) keeps its upstream connection to B's app port open, straight to B,
    // and B's inbound accepted it from A's address.
    let b_dst = format!("dst {}", m.b.ip);
    let a_conns = m.a.exec(&["ss", "-Htne", "state", "established", &b_dst]).await.stdout;
    assert!(a_conns.lines().any(|l| l.contains(&format!("{}:{HTTP_PORT}", m.b.ip)) && l.contains("uid:1337")), "{a_conns}");
    let b_conns = m.b.exec(&["ss", "-Htn", "state", "established", "dst", &m.a.ip.to_string()]).await.stdout;
    // (The listener is dual-stack: IPv4 peers show as ::ffff:a.b.c.d.)
    assert!(b_conns.lines().any(|l| l.contains(&format!("{}]:15006", m.b.ip))), "B's inbound listener holds A's connection: {b_conns}");
}

#[tokio::test]
async fn ipv6_traffic_is_captured_on_both_sides() {
    let m = mesh(Policy::AllowAny).await;
    let target = format!("http://[{}]:{HTTP_PORT}/hello", m.b.ip6);
    let (status, body) = m.a.curl(&target, &["-g"]).await;
    assert_eq!((status, body.as_str()), (200, "hello from pod-b\n"));
    // No service names B's IPv6 address: A passes it through to its original destination
    // (IP6T_SO_ORIGINAL_DST), B's inbound hands it to the app on [::1].
    let a = m.a.metrics().await;
    assert_eq!(metric_sum(&a, "istio_requests_total", &[("reporter", "source"), ("destination_service", "PassthroughCluster"), ("response_code", "200")]), 1.0, "{a}");
    let b = m.b.metrics().await;
    assert_eq!(metric_sum(&b, "istio_requests_total", &[("reporter", "destination"), ("response_code", "200")]), 1.0, "{b}");
}

#[tokio::test]
async fn grpc_redis_and_a_server_first_protocol_cross_pods() {
    let m = mesh(Policy::AllowAny).await;
    let grpc = m.a.exec(&[env!("CARGO_BIN_EXE_pod_grpc"), "call", &url(&m.b, GRPC_PORT, ""), "hi"]).await;
    assert_eq!(grpc.stdout.trim(), "pod-b: hi", "{grpc:?}");

    let redis = m.a.exec(&["redis-cli", "-h", &m.b.ip.to_string(), "-p", &REDIS_PORT.to_string(), "PING"]).await;
    assert_eq!(redis.stdout.trim(), "PONG", "{redis:?}");

    // The client says nothing until the server greets it: both sidecars' sniff times out and
    // they fall back to TCP.
    let banner = m.a.exec(&["python3", "-c", BANNER_CLIENT, &m.b.ip.to_string(), &BANNER_PORT.to_string()]).await;
    assert_eq!(banner.stdout.trim(), "220 pod-b banner | ping", "{banner:?}");

    let (a, b) = (m.a.metrics().await, m.b.metrics().await);
    let grpc_labels = [("reporter", "source"), ("destination_service", "b.pods.svc.cluster.local"), ("request_protocol", "grpc")];
    assert_eq!(metric_sum(&a, "istio_requests_total", &grpc_labels), 1.0, "{a}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[("reporter", "destination"), ("request_protocol", "grpc")]), 1.0, "{b}");
    for service in ["redis.pods.svc.cluster.local", "banner.pods.svc.cluster.local"] {
        let labels = [("reporter", "source"), ("destination_service", service)];
        assert_eq!(metric_sum(&a, "istio_tcp_connections_opened_total", &labels), 1.0, "{service}:\n{a}");
        assert!(metric_sum(&a, "istio_tcp_sent_bytes_total", &labels) > 0.0, "{service}:\n{a}");
    }
    assert_eq!(metric_sum(&b, "istio_tcp_connections_opened_total", &[("reporter", "destination")]), 2.0, "{b}");
}

#[tokio::test]
async fn unknown_destinations_pass_through_with_allow_any_and_are_refused_with_registry_only() {
    let m = mesh(Policy::AllowAny).await;
    let outside = url(&m.c, OUTSIDE_PORT, "/outside");
    let c_ip = m.c.ip.to_string();
    let c_redis = OUTSIDE_REDIS_PORT.to_string();
    assert_eq!(m.a.curl(&outside, &[]).await, (200, "outside the mesh\n".to_owned()));
    let redis = m.a.exec(&["redis-cli", "-h", &c_ip, "-p", &c_redis, "PING"]).await;
    assert_eq!(redis.stdout.trim(), "PONG", "{redis:?}");
    let a = m.a.metrics().await;
    let passthrough = [("reporter", "source"), ("destination_service", "PassthroughCluster")];
    assert_eq!(metric_sum(&a, "istio_requests_total", &passthrough), 1.0, "{a}");
    assert_eq!(metric_sum(&a, "istio_tcp_connections_opened_total", &passthrough), 1.0, "{a}");

    // Switch A to REGISTRY_ONLY (the sidecar reloads its file).
    m.a.rewrite_sidecar_config(&sidecar_config("pod-a", &m.b, Policy::RegistryOnly));
    eventually(Duration::from_secs(10), || async { (m.a.curl(&outside, &[]).await.0 == 502).then_some(()) })
        .await
        .expect("REGISTRY_ONLY refuses an unknown destination with 502");
    let passed_before = metric_sum(&m.a.metrics().await, "istio_requests_total", &passthrough);
    let (status, refused) = m.a.curl(&outside, &["-i"]).await;
    assert_eq!(status, 502, "{refused}");
    assert!(refused.contains("x-oxidecar-reason: destination is not a known service (BlackHoleCluster)"), "{refused}");
    let redis = m.a.exec(&["redis-cli", "-h", &c_ip, "-p", &c_redis, "PING"]).await;
    assert!(!redis.stdout.contains("PONG"), "TCP to an unknown destination is closed: {redis:?}");
    // Known services still work.
    assert_eq!(m.a.curl(&url(&m.b, HTTP_PORT, "/hello"), &[]).await.0, 200);
    let a = m.a.metrics().await;
    let blackhole = [("reporter", "source"), ("destination_service", "BlackHoleCluster")];
    assert!(metric_sum(&a, "istio_requests_total", &[("response_code", "502"), blackhole[0], blackhole[1]]) >= 2.0, "{a}");
    assert!(metric_sum(&a, "istio_tcp_connections_opened_total", &blackhole) >= 1.0, "{a}");
    // Nothing more reached C.
    assert_eq!(metric_sum(&a, "istio_requests_total", &passthrough), passed_before, "{a}");
    assert_eq!(metric_sum(&a, "istio_tcp_connections_opened_total", &passthrough), 1.0, "{a}");
}

/// Runs the Dapr Python SDK in `pod`: invokes method `hello` of app `b` with GET over
/// `protocol` (grpc or http) and returns what it printed (the reply body).
async fn sdk_invoke(pod: &Pod, protocol: &str) -> String {
    let python = std::env::var("OXIDECAR_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/oxidecar-venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let script = r#"
from dapr.clients import DaprClient
with DaprClient() as d:
    r = d.invoke_method('b', 'hello', data=b'', http_verb='GET')
    print(r.text().strip())
"#;
    let env = format!("DAPR_API_METHOD_INVOCATION_PROTOCOL={protocol}");
    let out = pod.exec(&["env", &env, &python, "-c", script]).await;
    assert!(out.ok(), "Dapr SDK over {protocol} (the venv comes from tests/run): {out:?}");
    out.stdout.trim().to_owned()
}

#[tokio::test]
async fn dapr_python_sdk_in_one_pod_invokes_the_app_in_another_by_app_id() {
    let m = mesh(Policy::AllowAny).await;
    for protocol in ["grpc", "http"] {
        assert_eq!(sdk_invoke(&m.a, protocol).await, "hello from pod-b", "{protocol}");
    }
    // Both calls crossed the mesh: A's outbound and B's inbound counted them.
    let (a, b) = (m.a.metrics().await, m.b.metrics().await);
    assert_eq!(metric_sum(&a, "istio_requests_total", &[("reporter", "source"), ("destination_service", "b.pods.svc.cluster.local"), ("response_code", "200")]), 2.0, "{a}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[("reporter", "destination"), ("response_code", "200")]), 2.0, "{b}");
}

/// B's app calls its own service through the mesh (the route picks B's own address): B's sidecar
/// connects to its own pod address over loopback, which capture sends to B's inbound listener, so
/// the call is counted on both of B's sides and reaches the app once.
#[tokio::test]
async fn a_pod_calling_its_own_service_passes_its_own_inbound_side() {
    let m = mesh(Policy::AllowAny).await;
    // Any captured address works as the "service address": the Host header selects service b.
    let (status, body) = m.b.curl(&url(&m.c, HTTP_PORT, "/hello"), &["-H", "host: b"]).await;
    assert_eq!((status, body.as_str()), (200, "hello from pod-b\n"));
    let b = m.b.metrics().await;
    let out = [("reporter", "source"), ("destination_service", "b.pods.svc.cluster.local"), ("response_code", "200")];
    assert_eq!(metric_sum(&b, "istio_requests_total", &out), 1.0, "{b}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[("reporter", "destination"), ("response_code", "200")]), 1.0, "{b}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[]), 2.0, "{b}");
    assert_eq!(m.b.log("http4").matches("GET /hello").count(), 1, "{}", m.b.log("http4"));
}

/// Without nft, capture falls back to iptables-restore: the same traffic takes the same path, and
/// `--cleanup` leaves no chain of ours behind.
#[tokio::test]
async fn the_iptables_fallback_captures_the_same_way() {
    let installed = std::process::Command::new("iptables-restore").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(installed, "this test needs iptables-restore (Debian package iptables; tests/run installs it)");
    let m = mesh_with_capture(Policy::AllowAny, &["--backend", "iptables"]).await;
    let nft = m.a.exec(&["nft", "list", "tables"]).await.stdout;
    assert!(!nft.contains("oxidecar"), "the nft table is not used: {nft}");
    assert_eq!(m.a.curl(&url(&m.b, HTTP_PORT, "/hello"), &[]).await, (200, "hello from pod-b\n".to_owned()));
    let v6 = format!("http://[{}]:{HTTP_PORT}/hello", m.b.ip6);
    assert_eq!(m.a.curl(&v6, &["-g"]).await.0, 200);
    let (a, b) = (m.a.metrics().await, m.b.metrics().await);
    assert_eq!(metric_sum(&a, "istio_requests_total", &[("reporter", "source"), ("response_code", "200")]), 2.0, "{a}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[("reporter", "destination"), ("response_code", "200")]), 2.0, "{b}");
    assert_eq!(metric_sum(&a, "istio_requests_total", &[]) + metric_sum(&b, "istio_requests_total", &[]), 4.0, "no loop");

    let bin = oxidecar_tests::binary();
    let cleaned = m.a.exec(&[bin.to_str().expect("utf-8 path"), "capture", "--backend", "iptables", "--cleanup"]).await;
    assert!(cleaned.ok(), "{cleaned:?}");
    for tool in ["iptables-save", "ip6tables-save"] {
        let left = m.a.exec(&[tool, "-t", "nat"]).await.stdout;
        assert!(!left.contains("OXIDECAR"), "{tool}: {left}");
    }
}

/// Whether `pcap` holds a TLS handshake record of `kind` (1 ClientHello, 2 ServerHello).
fn has_tls_handshake(pcap: &[u8], kind: u8) -> bool {
    pcap.windows(6).any(|w| w[0] == 0x16 && w[1] == 0x03 && w[2] <= 0x04 && w[5] == kind)
}

fn has(pcap: &[u8], text: &str) -> bool {
    pcap.windows(text.len()).any(|w| w == text.as_bytes())
}

/// A's curl to B crosses the wire as mutual TLS between the two sidecars: the veth sees a TLS
/// handshake and none of the HTTP, and B's inbound reports A's SPIFFE identity.
#[tokio::test]
async fn mtls_on_the_wire_between_the_pods_sidecars() {
    let m = mtls_mesh(false).await;
    let wire = m.net.capture(&m.b, &format!("tcp port {HTTP_PORT} or tcp port {REDIS_PORT} or tcp port {GRPC_PORT}")).await;
    assert_eq!(m.a.curl(&url(&m.b, HTTP_PORT, "/hello"), &[]).await, (200, "hello from pod-b\n".to_owned()));
    let redis = m.a.exec(&["redis-cli", "-h", &m.b.ip.to_string(), "-p", &REDIS_PORT.to_string(), "PING"]).await;
    assert_eq!(redis.stdout.trim(), "PONG", "{redis:?}");
    let grpc = m.a.exec(&[env!("CARGO_BIN_EXE_pod_grpc"), "call", &url(&m.b, GRPC_PORT, ""), "secret-message"]).await;
    assert_eq!(grpc.stdout.trim(), "pod-b: secret-message", "{grpc:?}");
    let (pcap, report) = wire.finish().await;
    assert!(has_tls_handshake(&pcap, 1) && has_tls_handshake(&pcap, 2), "no TLS handshake seen on B's veth ({} bytes captured): {report}", pcap.len());
    for plaintext in ["GET /hello", "hello from pod-b", "PING", "PONG", "secret-message"] {
        assert!(!has(&pcap, plaintext), "{plaintext:?} crossed the wire in clear text");
    }

    assert_eq!(sdk_invoke(&m.a, "grpc").await, "hello from pod-b", "service invocation rides the mTLS mesh too");

    let b = m.b.metrics().await;
    let from_a = [("reporter", "destination"), ("source_principal", &*spiffe(A_IDENTITY)), ("connection_security_policy", "mutual_tls")];
    assert_eq!(metric_sum(&b, "istio_requests_total", &[from_a[0], from_a[1], from_a[2], ("response_code", "200")]), 3.0, "HTTP, gRPC and the invocation:\n{b}");
    assert_eq!(metric_sum(&b, "istio_tcp_connections_opened_total", &from_a), 1.0, "{b}");
    let a = m.a.metrics().await;
    assert_eq!(metric_sum(&a, "istio_requests_total", &[("reporter", "source"), ("destination_principal", &*spiffe(B_IDENTITY))]), 3.0, "{a}");
}

/// A pod without a sidecar (C) sends plaintext: B's STRICT inbound refuses it, PERMISSIVE takes
/// it (and still takes A's mTLS).
#[tokio::test]
async fn strict_refuses_a_pod_without_sidecar_and_permissive_accepts_it() {
    let m = mtls_mesh(false).await;
    let hello = url(&m.b, HTTP_PORT, "/hello");
    let (status, body) = m.c.curl(&hello, &[]).await;
    assert_eq!(status, 0, "STRICT answered plaintext: {body}");
    let redis = m.c.exec(&["redis-cli", "-h", &m.b.ip.to_string(), "-p", &REDIS_PORT.to_string(), "PING"]).await;
    assert!(!redis.stdout.contains("PONG"), "STRICT passed plaintext TCP: {redis:?}");
    assert_eq!(m.a.curl(&hello, &[]).await.0, 200, "A's mTLS still works");
    let http_log = m.b.log("http4");
    assert_eq!(http_log.matches("GET /hello").count(), 1, "only A's request reached the app: {http_log}");

    let permissive = Mtls { identity: m.b_identity.clone(), permissive: true };
    m.b.rewrite_sidecar_config(&sidecar_config_with("pod-b", &m.b, Policy::AllowAny, Some(&permissive)));
    let accepted = eventually(Duration::from_secs(10), || async { (m.c.curl(&hello, &[]).await.0 == 200).then_some(()) }).await;
    assert!(accepted.is_some(), "PERMISSIVE takes plaintext from a pod without a sidecar");
    // The wire check of the mTLS test does see plaintext when there is some.
    let wire = m.net.capture(&m.b, &format!("tcp port {HTTP_PORT}")).await;
    assert_eq!(m.c.curl(&hello, &[]).await.0, 200);
    let (pcap, report) = wire.finish().await;
    assert!(has(&pcap, "GET /hello") && has(&pcap, "hello from pod-b") && !has_tls_handshake(&pcap, 1), "{report}");
    let redis = m.c.exec(&["redis-cli", "-h", &m.b.ip.to_string(), "-p", &REDIS_PORT.to_string(), "PING"]).await;
    assert_eq!(redis.stdout.trim(), "PONG", "{redis:?}");
    assert_eq!(m.a.curl(&hello, &[]).await.0, 200);
    let b = m.b.metrics().await;
    let plaintext = [("reporter", "destination"), ("connection_security_policy", "none"), ("source_principal", "unknown"), ("response_code", "200")];
    assert!(metric_sum(&b, "istio_requests_total", &plaintext) >= 1.0, "{b}");
    let mutual = [("reporter", "destination"), ("connection_security_policy", "mutual_tls"), ("source_principal", &*spiffe(A_IDENTITY))];
    assert_eq!(metric_sum(&b, "istio_requests_total", &mutual), 2.0, "{b}");
}

/// Excluded ranges and ports leave the pod without the sidecar; applying capture again replaces
/// the rules in place; B's health port (15021) is never captured inbound.
#[tokio::test]
async fn excluded_ranges_and_ports_bypass_the_sidecar() {
    let m = mesh(Policy::AllowAny).await;
    let bin = oxidecar_tests::binary();
    let c_range = format!("{}/32", m.c.ip);
    let redis_port = REDIS_PORT.to_string();
    let applied = m.a.exec(&[bin.to_str().expect("utf-8 path"), "capture", "--exclude-outbound-ip-ranges", &c_range, "--exclude-outbound-ports", &redis_port]).await;
    assert!(applied.ok(), "{applied:?}");

    assert_eq!(m.a.curl(&url(&m.c, OUTSIDE_PORT, "/outside"), &[]).await.0, 200);
    let redis = m.a.exec(&["redis-cli", "-h", &m.b.ip.to_string(), "-p", &redis_port, "PING"]).await;
    assert_eq!(redis.stdout.trim(), "PONG", "{redis:?}");
    assert_eq!(m.a.curl(&url(&m.b, HTTP_PORT, "/hello"), &[]).await.0, 200, "other traffic is still captured");
    let (status, _) = m.a.curl(&format!("http://{}:15021/healthz/ready", m.b.ip), &[]).await;
    assert_eq!(status, 200, "B's health port answers directly");

    let (a, b) = (m.a.metrics().await, m.b.metrics().await);
    // A's sidecar saw only the request to B's HTTP service and the health check (passthrough).
    assert_eq!(metric_sum(&a, "istio_requests_total", &[("destination_service", "b.pods.svc.cluster.local")]), 1.0, "{a}");
    assert_eq!(metric_sum(&a, "istio_requests_total", &[("destination_service", "PassthroughCluster")]), 1.0, "health check only:\n{a}");
    assert_eq!(metric_sum(&a, "istio_tcp_connections_opened_total", &[]), 0.0, "redis went out directly:\n{a}");
    // B's inbound still captured the redis connection (capture is per pod), but not the health check.
    assert_eq!(metric_sum(&b, "istio_tcp_connections_opened_total", &[("reporter", "destination")]), 1.0, "{b}");
    assert_eq!(metric_sum(&b, "istio_requests_total", &[("reporter", "destination")]), 1.0, "{b}");
}
