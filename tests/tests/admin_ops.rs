//! Admin endpoints that act on a running proxy (`/stats`, `/logging`, `/drain_listeners`,
//! `/quitquitquit`) and `oxidecar wait`, each against the real binary.

use std::process::Stdio;
use std::time::{Duration, Instant};

use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::*;

fn one_route(port: u16, cluster_port: u16, extra: &str) -> String {
    let clusters = format!("  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{cluster_port} }}] }}\n{extra}");
    http_config(port, &catch_all("cluster: app"), &clusters)
}

async fn post(port: u16, path: &str) -> (u16, String) {
    let r = send(&http1_client(), "POST", &format!("http://127.0.0.1:{port}{path}"), &[], "").await.expect("admin POST");
    (r.status, r.body)
}

#[tokio::test]
async fn stats_lists_server_cluster_and_istio_counters() {
    let app = http_upstream("app").await;
    let port = free_port();
    let p = Proxy::start(AdminPorts::new(), &one_route(port, app.port(), "")).await;
    for _ in 0..3 {
        assert_eq!(send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("request").status, 200);
    }
    let _ = p.metrics().await; // settled
    let (code, text) = p.admin("/stats").await;
    assert_eq!(code, 200);
    let line = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name}: "))).map(str::to_owned);
    assert_eq!(line("server.state").as_deref(), Some("server.state: 0"), "{text}");
    assert_eq!(line("server.live").as_deref(), Some("server.live: 1"));
    assert_eq!(line("cluster.app.upstream_rq_total").as_deref(), Some("cluster.app.upstream_rq_total: 3"), "{text}");
    assert_eq!(line("cluster.app.membership_healthy").as_deref(), Some("cluster.app.membership_healthy: 1"));
    let istio = text.lines().find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\"")).expect("istio counter");
    assert!(istio.ends_with(": 3"), "{istio}");
    assert!(text.lines().any(|l| l.starts_with("istio_request_duration_milliseconds_count{")), "histograms give count and sum");

    let (_, filtered) = p.admin("/stats?filter=%5Ecluster%5C.app%5C.upstream_rq_total%24").await;
    assert_eq!(filtered.trim(), "cluster.app.upstream_rq_total: 3");
    let (_, json) = p.admin("/stats?format=json&filter=membership_total").await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["stats"][0]["name"], "cluster.app.membership_total");
    assert_eq!(json["stats"][0]["value"], 1.0);
    let (code, err) = p.admin("/stats?filter=(").await;
    assert_eq!(code, 400);
    assert!(err.contains("filter: invalid regex"), "{err}");
    let (code, err) = p.admin("/stats?format=xml").await;
    assert_eq!((code, err.trim()), (400, "format: \"xml\" is not one of text, json, prometheus"));
    let (code, prom) = p.admin("/stats?format=prometheus").await;
    assert_eq!(code, 200);
    assert!(prom.contains("# TYPE istio_requests_total counter"));
}

#[tokio::test]
async fn logging_changes_levels_at_run_time() {
    let app = http_upstream("app").await;
    let port = free_port();
    let dir = TempDir::new("logging");
    let log_path = dir.0.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let p = Proxy::start_logging_to(AdminPorts::new(), &one_route(port, app.port(), ""), &[], Stdio::from(log)).await;
    let access_lines = || std::fs::read_to_string(&log_path).unwrap_or_default().lines().filter(|l| l.contains(" access:")).count();
    let request = || async { send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("request") };

    let (code, shown) = p.admin("/logging").await;
    assert_eq!(code, 200);
    assert!(shown.contains("default: info") && shown.contains("pingora: warn"), "{shown}");
    request().await;
    let _ = p.metrics().await;
    assert_eq!(access_lines(), 0, "access events are debug: hidden at info");

    // One target raised: its debug events appear.
    let (code, shown) = post(p.ports.admin, "/logging?access=debug").await;
    assert_eq!(code, 200, "{shown}");
    assert!(shown.contains("access: debug"), "{shown}");
    request().await;
    eventually(Duration::from_secs(5), || async { (access_lines() == 1).then_some(()) }).await.expect("one access event at debug");

    // Everything back to warn: nothing more from the access target.
    let (code, shown) = post(p.ports.admin, "/logging?level=warn").await;
    assert_eq!(code, 200);
    assert!(shown.contains("default: warn") && shown.contains("access: warn"), "{shown}");
    request().await;
    let _ = p.metrics().await;
    assert_eq!(access_lines(), 1);

    let (code, err) = post(p.ports.admin, "/logging?level=loud").await;
    assert_eq!(code, 400);
    assert!(err.contains("level: \"loud\" is not a level"), "{err}");
    let (code, err) = post(p.ports.admin, "/logging?bad%20target=info").await;
    assert_eq!(code, 400);
    assert!(err.contains("\"bad target\" is not a log target"), "{err}");
    let (code, _) = p.admin("/logging?level=debug").await;
    assert_eq!(code, 405, "changes need POST");
    let (_, shown) = p.admin("/logging").await;
    assert!(shown.contains("default: warn"), "a refused change changes nothing: {shown}");
}

#[tokio::test]
async fn drain_listeners_stops_new_connections_and_finishes_in_flight_work() {
    let slow = http_upstream("slow").await;
    let port = free_port();
    let mut p = Proxy::start(AdminPorts::new(), &one_route(port, slow.port(), "")).await;
    let in_flight = tokio::spawn(async move { send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/slow/800"), &[], "").await });
    eventually(Duration::from_secs(5), || async { (slow.count() == 1).then_some(()) }).await.expect("request in flight");

    assert_eq!(p.admin("/drain_listeners").await.0, 405, "draining needs POST");
    let (code, _) = post(p.ports.admin, "/drain_listeners").await;
    assert_eq!(code, 200);
    let (code, body) = p.admin("/ready").await;
    assert_eq!((code, body.trim()), (503, "DRAINING"));
    let refused = send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await;
    assert!(refused.is_err(), "a new connection is closed: {refused:?}");
    let reply = in_flight.await.expect("join").expect("in-flight request completes");
    assert_eq!(reply.status, 200);
    assert_eq!(slow.count(), 1, "nothing new reached the upstream");
    assert!(p.child.try_wait().expect("status").is_none(), "the process keeps running");
    assert_eq!(p.admin("/stats?filter=server.state").await.1.trim(), "server.state: 1");
}

#[tokio::test]
async fn quitquitquit_drains_then_exits_zero() {
    let slow = http_upstream("slow").await;
    let port = free_port();
    let mut p = Proxy::start(AdminPorts::new(), &one_route(port, slow.port(), "drain_timeout: 5s\n")).await;
    let in_flight = tokio::spawn(async move { send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/slow/800"), &[], "").await });
    eventually(Duration::from_secs(5), || async { (slow.count() == 1).then_some(()) }).await.expect("request in flight");
    assert_eq!(p.admin("/quitquitquit").await.0, 405);
    let started = Instant::now();
    let (code, body) = post(p.ports.admin, "/quitquitquit").await;
    assert_eq!((code, body.trim()), (200, "OK"));
    let reply = in_flight.await.expect("join").expect("in-flight request completes");
    assert_eq!(reply.status, 200);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "exits once drained: {:?}", started.elapsed());
}

async fn wait_cmd(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(binary()).arg("wait").args(args).output().await.expect("oxidecar wait");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn wait_returns_once_the_sidecar_is_ready_and_fails_on_timeout() {
    // Nothing listens: exit 1 after the timeout, naming the URL and the last error.
    let nobody = free_port();
    let url = format!("http://127.0.0.1:{nobody}/healthz/ready");
    let started = Instant::now();
    let (code, out) = wait_cmd(&["--url", &url, "--timeout", "400ms", "--period", "50ms"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&url) && out.contains("not ready after 400ms"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, out) = wait_cmd(&["--url", "ftp://x/"]).await;
    assert_eq!(code, Some(2), "{out}");

    // Started before the proxy: returns 0 once the proxy comes up.
    let ports = AdminPorts::new();
    let url = format!("http://127.0.0.1:{}/healthz/ready", ports.health);
    let waiter = tokio::spawn(async move { wait_cmd(&["--url", &url, "--timeout", "30s", "--period", "50ms"]).await });
    tokio::time::sleep(Duration::from_millis(300)).await; // the waiter polls a port nobody serves yet
    assert!(!waiter.is_finished(), "wait holds while the proxy is down");
    let app = http_upstream("app").await;
    let mut p = Proxy::start(ports, &one_route(free_port(), app.port(), "")).await;
    let (code, out) = tokio::time::timeout(Duration::from_secs(20), waiter).await.expect("wait returns").expect("join");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ready after"), "{out}");

    // A stopping proxy is not ready (draining, then gone).
    p.signal("TERM");
    let admin_url = format!("http://127.0.0.1:{}/ready", p.ports.admin);
    let (code, _) = wait_cmd(&["--url", &admin_url, "--timeout", "200ms", "--period", "50ms"]).await;
    assert_eq!(code, Some(1));
    let _ = p.wait_exit(Duration::from_secs(10)).await;
}
