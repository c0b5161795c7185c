//! Resilience on the proxy's path: retries on upstream answers (HTTP status and gRPC status), not
//! replaying non-idempotent requests unless the policy says so, per-try timeouts, and an instance
//! killed under load while retries and outlier ejection keep requests succeeding.

use std::time::Duration;

use oxidecar_tests::grpc::{EchoClient, EchoRequest, grpc_upstream, grpc_upstream_failing};
use oxidecar_tests::upstream::{Behavior, http_upstream, http_upstream_failing, http_upstream_with};
use oxidecar_tests::*;

fn cluster(name: &str, addrs: &[std::net::SocketAddr], extra: &str) -> String {
    let eps: Vec<String> = addrs.iter().map(|a| format!("{{ address: {a} }}")).collect();
    format!("  - name: {name}\n{extra}    endpoints: [{}]\n", eps.join(", "))
}

#[tokio::test]
async fn retries_on_5xx_but_not_post_unless_allowed() {
    let good = http_upstream("good").await;
    let bad = http_upstream_failing("bad", 503).await;
    let port = free_port();
    let vhosts = "      - name: safe\n        domains: [\"safe\"]\n        routes: [{ match: { prefix: \"/\" }, route: { cluster: app, retry_policy: { num_retries: 2, retry_on: [5xx], base_interval: 1ms } } }]\n      - name: post\n        domains: [\"post\"]\n        routes: [{ match: { prefix: \"/\" }, route: { cluster: app, retry_policy: { num_retries: 2, retry_on: [5xx], base_interval: 1ms, retry_non_idempotent: true } } }]\n";
    let p = Proxy::start(AdminPorts::new(), &http_config(port, vhosts, &cluster("app", &[good.addr, bad.addr], ""))).await;
    let c = http1_client();
    let url = format!("http://127.0.0.1:{port}/x");
    for _ in 0..20 {
        let r = send(&c, "GET", &url, &[("host", "safe")], "").await.expect("reply");
        assert_eq!(r.status, 200, "GET retried past the 503: {}", r.body);
    }
    assert!(bad.count() >= 5, "round robin reached the bad instance: {}", bad.count());
    let mut post_failures = 0;
    for _ in 0..20 {
        let r = send(&c, "POST", &url, &[("host", "safe")], "order").await.expect("reply");
        if r.status == 503 {
            post_failures += 1;
        }
    }
    assert!(post_failures >= 5, "POST is not replayed by default ({post_failures} of 20 failed)");
    for _ in 0..20 {
        let r = send(&c, "POST", &url, &[("host", "post")], "order").await.expect("reply");
        assert_eq!(r.status, 200, "retry_non_idempotent replays POST with its body");
        let seen: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(seen["body"], "order");
    }
    let m = p.metrics().await;
    let expected_ok = 40 + 20 - post_failures;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("response_code", "200")]), f64::from(expected_ok), "{m}");
}

#[tokio::test]
async fn exhausted_retries_return_the_last_answer_with_urx() {
    let bad = http_upstream_failing("bad", 502).await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &http_config(port, &catch_all("cluster: app, retry_policy: { num_retries: 2, retry_on: [gateway-error], base_interval: 1ms }"), &cluster("app", &[bad.addr], "")),
    )
    .await;
    let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("reply");
    assert_eq!(r.status, 502, "the upstream's own last answer");
    assert_eq!(bad.count(), 3, "one try and two retries");
    let counted = eventually(Duration::from_secs(5), || async {
        let m = p.metrics().await;
        (metric_sum(&m, "istio_requests_total", &[("response_code", "502"), ("response_flags", "URX")]) == 1.0).then_some(())
    })
    .await;
    assert!(counted.is_some(), "{}", p.metrics().await);
}

#[tokio::test]
async fn grpc_unavailable_is_retried_on_another_instance() {
    let good = grpc_upstream("echo-ok").await;
    let bad = grpc_upstream_failing("echo-down", tonic::Code::Unavailable).await;
    let port = free_port();
    let _p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: echo, retry_policy: { num_retries: 2, retry_on: [unavailable], base_interval: 1ms }"),
            &cluster("echo", &[good, bad], "    protocol: h2\n"),
        ),
    )
    .await;
    let mut client = EchoClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect");
    for i in 0..10 {
        let r = client.unary(EchoRequest { message: format!("m{i}"), fail_code: 0 }).await.expect("retried to echo-ok");
        assert_eq!(r.into_inner().message, format!("echo-ok: m{i}"));
    }
    // A status the policy does not name is passed through untouched.
    let err = client.unary(EchoRequest { message: "x".into(), fail_code: tonic::Code::NotFound as i32 }).await.expect_err("not found");
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn per_try_timeout_moves_on_to_a_faster_instance() {
    let slow = http_upstream_with("slow", Behavior { status: None, delay: Some(Duration::from_secs(3)) }).await;
    let fast = http_upstream("fast").await;
    let port = free_port();
    let _p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: app, timeout: 2s, retry_policy: { num_retries: 1, retry_on: [gateway-error], per_try_timeout: 200ms, base_interval: 1ms }"),
            &cluster("app", &[slow.addr, fast.addr], ""),
        ),
    )
    .await;
    let c = http1_client();
    let started = std::time::Instant::now();
    for _ in 0..4 {
        let r = send(&c, "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("reply");
        assert_eq!(r.status, 200);
    }
    assert!(slow.count() >= 1, "the slow instance was tried");
    assert!(started.elapsed() < Duration::from_secs(3), "per-try timeouts, not the slow answers, bound the time: {:?}", started.elapsed());
}

#[tokio::test]
async fn an_instance_killed_under_load_costs_almost_nothing_and_comes_back() {
    let instances = [http_upstream("i1").await, http_upstream("i2").await, http_upstream("i3").await];
    let addrs: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: app, retry_policy: { num_retries: 2, retry_on: [5xx], base_interval: 1ms }"),
            &cluster(
                "app",
                &addrs,
                "    connect_timeout: 200ms\n    outlier_detection: { consecutive_5xx: 3, consecutive_gateway_errors: 3, base_ejection_time: 1s, max_ejection_percent: 50 }\n",
            ),
        ),
    )
    .await;
    let load = Load::start(&format!("http://127.0.0.1:{port}/"), 4);
    let victim = &instances[1];
    eventually(Duration::from_secs(5), || async { (victim.count() > 100).then_some(()) }).await.expect("load reaches all");
    victim.kill();
    let ejected = eventually(Duration::from_secs(5), || async {
        let (_, c) = p.admin("/clusters").await;
        c.contains(&format!("app::{}::health_flags::/failed_outlier_check", victim.addr)).then_some(())
    })
    .await;
    assert!(ejected.is_some(), "the dead instance is ejected");
    let at_kill = load.ok();
    eventually(Duration::from_secs(10), || async { (load.ok() > at_kill + 500).then_some(()) }).await.expect("load goes on");
    victim.revive().await;
    let before = victim.count();
    let back = eventually(Duration::from_secs(10), || async { (victim.count() > before + 20).then_some(()) }).await;
    let (ok, failed) = load.finish().await;
    assert!(back.is_some(), "the revived instance gets traffic again after its ejection ends");
    let rate = ok as f64 / (ok + failed) as f64;
    assert!(rate >= 0.999, "{ok} ok, {failed} failed: {rate}");
}

#[tokio::test]
async fn consistent_hashing_keeps_a_user_on_one_instance() {
    let instances = [http_upstream("h1").await, http_upstream("h2").await, http_upstream("h3").await];
    let addrs: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let port = free_port();
    let vhosts = "      - name: ring\n        domains: [\"ring\"]\n        routes: [{ match: { prefix: \"/\" }, route: { cluster: ring, hash_policy: [{ header: x-user }] } }]\n      - name: maglev\n        domains: [\"maglev\"]\n        routes: [{ match: { prefix: \"/\" }, route: { cluster: maglev, hash_policy: [{ header: x-missing }, { cookie: session }] } }]\n";
    let clusters = format!("{}{}", cluster("ring", &addrs, "    lb_policy: ring_hash\n"), cluster("maglev", &addrs, "    lb_policy: maglev\n"));
    let _p = Proxy::start(AdminPorts::new(), &http_config(port, vhosts, &clusters)).await;
    let c = http1_client();
    let url = format!("http://127.0.0.1:{port}/");
    let server = |r: Reply| serde_json::from_str::<serde_json::Value>(&r.body).map(|v| v["server"].as_str().unwrap_or("").to_string()).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let first = server(send(&c, "GET", &url, &[("host", "ring"), ("x-user", &user)], "").await.expect("r"));
        for _ in 0..3 {
            assert_eq!(server(send(&c, "GET", &url, &[("host", "ring"), ("x-user", &user)], "").await.expect("r")), first, "{user} sticks");
        }
        let cookie = format!("theme=dark; session={user}");
        let m1 = server(send(&c, "GET", &url, &[("host", "maglev"), ("cookie", &cookie)], "").await.expect("r"));
        let m2 = server(send(&c, "GET", &url, &[("host", "maglev"), ("cookie", &cookie)], "").await.expect("r"));
        assert_eq!(m1, m2, "cookie-keyed maglev sticks");
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "users spread over every instance");
}

#[tokio::test]
async fn active_health_checks_take_failing_endpoints_out_and_back() {
    let a = http_upstream("a").await;
    let b = http_upstream("b").await;
    let sick = http_upstream_failing("sick", 503).await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: app"),
            &cluster(
                "app",
                &[a.addr, b.addr, sick.addr],
                "    health_check: { interval: 100ms, timeout: 300ms, unhealthy_threshold: 2, healthy_threshold: 1, http_path: /healthz }\n",
            ),
        ),
    )
    .await;
    let flag = |clusters: &str, addr: std::net::SocketAddr| {
        clusters.lines().find_map(|l| l.strip_prefix(&format!("app::{addr}::health_flags::")).map(str::to_string))
    };
    let sick_out = eventually(Duration::from_secs(5), || async {
        let (_, c) = p.admin("/clusters").await;
        (flag(&c, sick.addr).as_deref() == Some("/failed_active_hc")).then_some(())
    })
    .await;
    assert!(sick_out.is_some(), "an endpoint answering 503 to its health check is out");
    b.kill();
    let b_out = eventually(Duration::from_secs(5), || async {
        let (_, c) = p.admin("/clusters").await;
        (flag(&c, b.addr).as_deref() == Some("/failed_active_hc")).then_some(())
    })
    .await;
    assert!(b_out.is_some(), "a dead endpoint is out");
    let c = http1_client();
    for _ in 0..20 {
        let r = send(&c, "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("reply");
        assert_eq!(r.status, 200, "no request reaches an unhealthy endpoint, even without retries");
    }
    b.revive().await;
    let back = eventually(Duration::from_secs(5), || async {
        let (_, c) = p.admin("/clusters").await;
        (flag(&c, b.addr).as_deref() == Some("healthy")).then_some(())
    })
    .await;
    assert!(back.is_some(), "a revived endpoint passes its check and returns");
}
