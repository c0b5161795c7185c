//! Operating the proxy: config validation, hot reload under load, SIGTERM drain, admin and health
//! endpoints, and the embedded default.

use std::process::Command;
use std::time::Duration;

use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::*;

fn one_route(port: u16, cluster_port: u16, extra: &str) -> String {
    let clusters = format!("  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{cluster_port} }}] }}\n{extra}");
    http_config(port, &catch_all("cluster: app"), &clusters)
}

#[test]
fn invalid_config_exits_2_naming_file_path_and_value() {
    let dir = TempDir::new("invalid");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, one_route(15999, 0, "").replace("cluster: app }", "cluster: missing }")).expect("write");
    let out = Command::new(binary()).arg("validate").arg(&file).output().expect("validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display();
    assert!(stderr.contains(&format!("{f}: clusters[0].endpoints[0].address: 127.0.0.1:0: 0 is not a port")), "{stderr}");
    assert!(stderr.contains(&format!("{f}: route_configs[0].virtual_hosts[0].routes[0].route.cluster: unknown cluster \"missing\"")), "{stderr}");

    let out = Command::new(binary()).args(["run", "--config"]).arg(&file).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "run refuses a bad config");
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 is not a port"));

    std::fs::write(&file, "listeners:\n  - name: x\n    adress: 1.2.3.4:5\n").expect("write");
    let out = Command::new(binary()).arg("validate").arg(&file).output().expect("validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listeners[0].adress: unknown field `adress`"), "{stderr}");

    std::fs::write(&file, one_route(15999, 8080, "")).expect("write");
    let out = Command::new(binary()).arg("validate").arg(&file).output().expect("validate");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn busy_port_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = TempDir::new("busy");
    let file = dir.0.join("mesh.yaml");
    std::fs::write(&file, format!("{}{}", AdminPorts::new().yaml(), one_route(port, 8080, ""))).expect("write");
    let out = Command::new(binary()).args(["run", "--config"]).arg(&file).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("listeners[0] out: cannot listen on 127.0.0.1:{port}")), "{stderr}");
}

#[tokio::test]
async fn hot_reload_under_load_loses_no_request_and_rejects_bad_files() {
    let v1 = http_upstream("v1").await;
    let v2 = http_upstream("v2").await;
    let port = free_port();
    let p = Proxy::start(AdminPorts::new(), &one_route(port, v1.port(), "")).await;

    let load = Load::start(&format!("http://127.0.0.1:{port}/"), 4);
    eventually(Duration::from_secs(5), || async { (v1.count() > 50).then_some(()) }).await.expect("load running");
    p.rewrite_config(&one_route(port, v2.port(), ""));
    eventually(Duration::from_secs(10), || async { (v2.count() > 50).then_some(()) }).await.expect("traffic moved to v2");

    // A broken file is refused; traffic keeps flowing to v2.
    p.rewrite_config(&one_route(port, v1.port(), "").replace("prefix: \"/\"", "prefix: \"no-slash\""));
    let m = eventually(Duration::from_secs(10), || async {
        let m = p.metrics_now().await;
        (metric_sum(&m, "oxidecar_config_reloads_total", &[("result", "failure")]) >= 1.0).then_some(m)
    })
    .await
    .expect("bad file noticed");
    assert!(metric_sum(&m, "oxidecar_config_reloads_total", &[("result", "success")]) >= 1.0);
    let before = v2.count();
    eventually(Duration::from_secs(5), || async { (v2.count() > before + 50).then_some(()) }).await.expect("still on v2");
    let v1_after = v1.count();

    // SIGHUP after fixing the file applies it.
    std::fs::write(&p.config, format!("{}{}", p.ports.yaml(), one_route(port, v1.port(), ""))).expect("write");
    p.signal("HUP");
    eventually(Duration::from_secs(10), || async { (v1.count() > v1_after + 50).then_some(()) }).await.expect("back on v1");

    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{ok} ok");
    let (code, dump) = p.admin("/config_dump").await;
    assert_eq!(code, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("json");
    assert_eq!(dump["snapshot"]["clusters"][0]["endpoints"][0]["address"], format!("127.0.0.1:{}", v1.port()));
    assert!(dump["version"].as_u64().expect("version") >= 3, "{dump}");
}

#[tokio::test]
async fn sigterm_drains_a_slow_request_then_exits_zero() {
    let slow = http_upstream("slow").await;
    let port = free_port();
    let mut p = Proxy::start(AdminPorts::new(), &one_route(port, slow.port(), "drain_timeout: 5s\n")).await;
    let (code, body) = http_get(&format!("http://127.0.0.1:{}/healthz/ready", p.ports.health)).await.expect("health");
    assert_eq!((code, body.trim()), (200, "LIVE"));

    let in_flight = tokio::spawn(async move { send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/slow/1500"), &[], "").await });
    eventually(Duration::from_secs(5), || async { (slow.count() == 1).then_some(()) }).await.expect("request in flight");
    let started = std::time::Instant::now();
    p.signal("TERM");
    let not_ready = eventually(Duration::from_secs(2), || async {
        let (code, _) = p.admin("/ready").await;
        (code == 503).then_some(())
    })
    .await;
    assert!(not_ready.is_some(), "/ready turns 503 while draining");
    let refused = eventually(Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(local(port)).await.is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "listener stops accepting");
    let reply = in_flight.await.expect("join").expect("in-flight request completes");
    assert_eq!(reply.status, 200);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(0), "exit status 0");
    assert!(started.elapsed() < Duration::from_secs(5), "exits once drained, not at the deadline: {:?}", started.elapsed());
}

#[tokio::test]
async fn admin_endpoints_describe_the_running_config() {
    let app = http_upstream("app").await;
    let port = free_port();
    let p = Proxy::start(AdminPorts::new(), &one_route(port, app.port(), "")).await;
    send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("request");
    let (code, clusters) = p.admin("/clusters").await;
    assert_eq!(code, 200);
    assert!(clusters.contains(&format!("app::127.0.0.1:{}::rq_total::1", app.port())), "{clusters}");
    assert!(clusters.contains(&format!("app::127.0.0.1:{}::health_flags::healthy", app.port())), "{clusters}");
    let (_, json) = p.admin("/clusters?format=json").await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["clusters"][0]["endpoints"][0]["rq_total"], 1);
    let (code, dump) = p.admin("/config_dump").await;
    assert_eq!(code, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("json");
    assert_eq!(dump["snapshot"]["listeners"][0]["name"], "out");
    assert_eq!(dump["snapshot"]["route_configs"][0]["name"], "main");
    let merged = http_get(&format!("http://127.0.0.1:{}/stats/prometheus", p.ports.merged_metrics)).await.expect("15020");
    assert!(merged.1.contains("istio_requests_total"), "{}", merged.1);
}

/// The command README gives: `oxidecar run` with nothing else (the default ports must be free).
#[tokio::test]
async fn embedded_default_runs_with_nothing_installed() {
    let mut child = Command::new(binary())
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let ready = eventually(Duration::from_secs(20), || async {
        matches!(http_get("http://127.0.0.1:15000/ready").await, Ok((200, _))).then_some(())
    })
    .await;
    let health = http_get("http://127.0.0.1:15021/healthz/ready").await.map(|r| r.0).ok();
    let metrics = http_get("http://127.0.0.1:15090/stats/prometheus").await.map(|r| r.0).ok();
    // Without capture there is no original destination: passthrough answers 503, never loops.
    let passthrough = send(&http1_client(), "GET", "http://127.0.0.1:15001/", &[], "").await.map(|r| r.status).ok();
    // The runtime API is up on Dapr's default port with the embedded in-memory components.
    let dapr_health = http_get("http://127.0.0.1:3500/v1.0/healthz").await.map(|r| r.0).ok();
    let state = send(&http1_client(), "POST", "http://127.0.0.1:3500/v1.0/state/statestore", &[("content-type", "application/json")], r#"[{"key":"k","value":"v"}]"#)
        .await
        .map(|r| r.status)
        .ok();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.is_some(), "embedded default became ready");
    assert_eq!(health, Some(200));
    assert_eq!(metrics, Some(200));
    assert_eq!(passthrough, Some(503));
    assert!(dapr_health.is_some_and(|c| (200..300).contains(&c)), "{dapr_health:?}");
    assert!(state.is_some_and(|c| (200..300).contains(&c)), "in-memory statestore saves: {state:?}");
}
