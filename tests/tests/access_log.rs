//! The access log: JSON and text lines written by real requests and TCP connections, parsed back.

use std::path::Path;
use std::time::Duration;

use oxidecar_tests::upstream::{http_upstream, tcp_echo};
use oxidecar_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The log file's lines once there are at least `n`.
async fn lines(file: &Path, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("{} has fewer than {n} lines: {:?}", file.display(), std::fs::read_to_string(file)))
}

#[tokio::test]
async fn json_access_log_records_http_requests_with_envoy_like_fields() {
    let app = http_upstream("app").await;
    let port = free_port();
    let dir = TempDir::new("accesslog");
    let log = dir.0.join("access.log");
    let config = format!(
        "telemetry:\n  access_log: {{ format: json, path: {} }}\n{}",
        log.display(),
        http_config(
            port,
            "      - { name: all, domains: [\"*\"], routes: [{ name: to-app, match: { prefix: \"/\" }, route: { cluster: app } }] }\n",
            &format!("  - {{ name: app, service: app.shop.svc.cluster.local, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n", app.port())
        )
    );
    let _p = Proxy::start(AdminPorts::new(), &config).await;
    let client = http1_client();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(
        &client,
        "POST",
        &format!("http://127.0.0.1:{port}/orders?id=7"),
        &[
            ("host", "orders.shop"),
            ("x-request-id", "req-42"),
            ("traceparent", traceparent),
            ("x-lane", "dev-alice"),
            ("x-forwarded-for", "10.1.2.3"),
            ("user-agent", "probe/1"),
        ],
        "hello",
    )
    .await
    .expect("request");
    assert_eq!(r.status, 200);
    let r404 = send(&client, "GET", &format!("http://127.0.0.1:{port}/missing"), &[("host", "nowhere")], "").await.expect("request");
    assert_eq!(r404.status, 200, "catch-all vhost routes everything");

    let lines = lines(&log, 2).await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(first["kind"], "http");
    assert_eq!(first["listener"], "out");
    assert_eq!(first["direction"], "outbound");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["authority"], "orders.shop");
    assert_eq!(first["path"], "/orders?id=7");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["response_flags"], "-");
    assert_eq!(first["route_name"], "all/to-app", "virtual host / route");
    assert_eq!(first["upstream_cluster"], "app");
    assert_eq!(first["upstream_host"], format!("127.0.0.1:{}", app.port()));
    assert_eq!(first["bytes_received"], 5);
    assert_eq!(first["bytes_sent"].as_u64(), Some(r.body.len() as u64));
    assert_eq!(first["x_forwarded_for"], "10.1.2.3");
    assert_eq!(first["user_agent"], "probe/1");
    assert_eq!(first["request_id"], "req-42");
    assert_eq!(first["traceparent"], traceparent);
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["lane"], "dev-alice");
    assert_eq!(first["served_lane"], serde_json::Value::Null, "no lane endpoints: base");
    assert!(first["downstream_remote_address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{first}");
    assert!(first["duration"].as_u64().is_some());
    assert!(first["upstream_service_time"].as_u64().is_some_and(|t| t <= first["duration"].as_u64().unwrap_or(0)), "{first}");
    let start = first["start_time"].as_str().expect("start_time");
    assert!(start.len() == 24 && start.ends_with('Z') && start.as_bytes()[10] == b'T', "RFC 3339 with ms: {start}");
}

#[tokio::test]
async fn access_log_shows_local_replies_tcp_connections_and_text_format() {
    let echo = tcp_echo().await;
    let (http_port, tcp_port) = (free_port(), free_port());
    let dead = free_port();
    let dir = TempDir::new("accesslog-text");
    let log = dir.0.join("access.log");
    let body = |format: &str| {
        format!(
            r#"telemetry:
  access_log: {{ format: {format}, path: {} }}
listeners:
  - name: out
    address: 127.0.0.1:{http_port}
    filter_chains: [{{ http: {{ route_config: main }} }}]
  - name: db
    address: 127.0.0.1:{tcp_port}
    filter_chains: [{{ tcp: {{ cluster: echo }} }}]
route_configs:
  - name: main
    virtual_hosts:
      - {{ name: v, domains: ["known"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: down }} }}] }}
clusters:
  - {{ name: echo, endpoints: [{{ address: {echo} }}] }}
  - {{ name: down, endpoints: [{{ address: 127.0.0.1:{dead} }}] }}
"#,
            log.display()
        )
    };
    let p = Proxy::start(AdminPorts::new(), &body("json")).await;
    let client = http1_client();
    let nr = send(&client, "GET", &format!("http://127.0.0.1:{http_port}/x"), &[("host", "unknown")], "").await.expect("request");
    assert_eq!(nr.status, 404);
    let uf = send(&http1_client(), "GET", &format!("http://127.0.0.1:{http_port}/y"), &[("host", "known")], "").await.expect("request");
    assert_eq!(uf.status, 503);
    let mut s = tokio::net::TcpStream::connect(local(tcp_port)).await.expect("connect");
    s.write_all(b"ping!").await.expect("write");
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.expect("echo");
    drop(s);

    let got = lines(&log, 3).await;
    let parsed: Vec<serde_json::Value> = got.iter().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let nr = parsed.iter().find(|v| v["path"] == "/x").expect("404 line");
    assert_eq!((nr["response_code"].as_u64(), nr["response_flags"].as_str()), (Some(404), Some("NR")));
    assert!(nr["upstream_cluster"].is_null() && nr["route_name"].is_null(), "{nr}");
    let uf = parsed.iter().find(|v| v["path"] == "/y").expect("503 line");
    assert_eq!((uf["response_code"].as_u64(), uf["response_flags"].as_str()), (Some(503), Some("UF")));
    assert_eq!(uf["upstream_cluster"], "down");
    assert_eq!(uf["upstream_host"], format!("127.0.0.1:{dead}"));
    let tcp = parsed.iter().find(|v| v["kind"] == "tcp").expect("tcp line");
    assert_eq!(tcp["listener"], "db");
    assert_eq!(tcp["protocol"], "TCP");
    assert_eq!(tcp["upstream_cluster"], "echo");
    assert_eq!(tcp["upstream_host"], echo.to_string());
    assert_eq!((tcp["bytes_received"].as_u64(), tcp["bytes_sent"].as_u64()), (Some(5), Some(5)));

    // Switching the format live: the next request is a text line.
    p.rewrite_config(&body("text"));
    let text_line = eventually(Duration::from_secs(10), || async {
        let _ = send(&http1_client(), "GET", &format!("http://127.0.0.1:{http_port}/z"), &[("host", "unknown")], "").await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().find(|l| l.starts_with('[')).map(str::to_owned)
    })
    .await
    .expect("a text line after the reload");
    assert!(text_line.contains("\"GET /z HTTP/1.1\" 404 NR 0 "), "{text_line}");
    assert!(text_line.contains("\"unknown\""), "authority in quotes: {text_line}");
}

#[tokio::test]
async fn mtls_peers_appear_as_principals_on_both_sides() {
    use oxidecar_tests::mtls::{DevCa, identity_yaml, spiffe};
    let ca = DevCa::new("accesslog").await;
    ca.mint(&["default/productpage", "default/reviews"], &[]).await;
    let ident = |w: &str| identity_yaml(&ca.workload_dir(w), &ca.root());
    let app = http_upstream("reviews-app").await;
    let dir = TempDir::new("accesslog-mtls");
    let (server_log, client_log) = (dir.0.join("server.log"), dir.0.join("client.log"));
    let (inbound, outbound) = (free_port(), free_port());
    let server = format!(
        "{}telemetry:\n  access_log: {{ format: json, path: {} }}\nlisteners:\n  - name: virtualInbound\n    address: 127.0.0.1:{inbound}\n    direction: inbound\n    filter_chains:\n      - match: {{ transport_protocol: tls }}\n        tls: {{}}\n        http: {{ route_config: in }}\nroute_configs:\n  - name: in\n    virtual_hosts:\n{}clusters:\n  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n",
        ident("default/reviews"),
        server_log.display(),
        catch_all("cluster: app"),
        app.port()
    );
    let _s = Proxy::start(AdminPorts::new(), &server).await;
    let client = format!(
        "{}telemetry:\n  access_log: {{ format: json, path: {} }}\n{}",
        ident("default/productpage"),
        client_log.display(),
        http_config(
            outbound,
            &catch_all("cluster: reviews"),
            &format!(
                "  - name: reviews\n    tls: {{ mode: istio_mutual, subject_alt_names: [\"{}\"] }}\n    endpoints: [{{ address: 127.0.0.1:{inbound} }}]\n",
                spiffe("default/reviews")
            )
        )
    );
    let _c = Proxy::start(AdminPorts::new(), &client).await;
    let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{outbound}/"), &[("host", "reviews")], "").await.expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    let s: serde_json::Value = serde_json::from_str(&lines(&server_log, 1).await[0]).expect("json");
    let c: serde_json::Value = serde_json::from_str(&lines(&client_log, 1).await[0]).expect("json");
    assert_eq!(s["downstream_peer_principal"], spiffe("default/productpage"), "{s}");
    assert_eq!(c["upstream_peer_principal"], spiffe("default/reviews"), "{c}");
    assert_eq!(c["downstream_peer_principal"], serde_json::Value::Null, "the app's plaintext connection has no identity");
    assert_eq!(s["request_id"], c["request_id"], "one request id on both sides");
    assert_eq!(s["trace_id"], c["trace_id"], "one trace on both sides");
}
