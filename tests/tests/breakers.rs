//! Connection circuit breakers (`max_connections`, `max_pending_requests`) on the real binary:
//! HTTP/1 requests beyond the connections wait as pending, beyond the pending queue they get
//! 503 `UO` at once; TCP connections are held to `max_connections` the same way.

use std::time::Duration;

use oxidecar_tests::upstream::{http_upstream, tcp_echo};
use oxidecar_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The value of one `/stats` line (`name: value`).
async fn stat(p: &Proxy, name: &str) -> f64 {
    let (_, text) = p.admin("/stats").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /stats:\n{text}"))
}

#[tokio::test]
async fn beyond_connections_requests_wait_and_beyond_pending_they_get_503_uo_at_once() {
    let slow = http_upstream("slow").await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: slow"),
            &format!(
                "  - {{ name: slow, protocol: http1, circuit_breakers: {{ max_connections: 1, max_pending_requests: 1 }}, endpoints: [{{ address: {} }}] }}\n",
                slow.addr
            ),
        ),
    )
    .await;
    // Long enough that the overflow answers below can only have come before the first request
    // finished; the test checks that order instead of timing anything.
    let url = format!("http://127.0.0.1:{port}/slow/4000");
    let spawn_get = || {
        let url = url.clone();
        tokio::spawn(async move { send(&http1_client(), "GET", &url, &[], "").await.expect("reply") })
    };
    let in_flight = spawn_get();
    eventually(Duration::from_secs(5), || async { (slow.count() == 1).then_some(()) }).await.expect("first request reached the upstream");
    let pending = spawn_get();
    eventually(Duration::from_secs(5), || async { (stat(&p, "cluster.slow.upstream_rq_pending_active").await == 1.0).then_some(()) })
        .await
        .expect("second request waits as pending");
    assert_eq!(stat(&p, "cluster.slow.circuit_breakers.default.cx_open").await, 1.0);
    assert_eq!(stat(&p, "cluster.slow.circuit_breakers.default.rq_pending_open").await, 1.0);

    for _ in 0..3 {
        let r = send(&http1_client(), "GET", &url, &[], "").await.expect("overflow reply");
        assert_eq!(r.status, 503, "{}", r.body);
        let reason = r.headers.get("x-oxidecar-reason").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(reason.contains("max_pending_requests"), "the reason names the breaker: {reason}");
    }
    assert!(!in_flight.is_finished() && !pending.is_finished(), "the 503s came back while the admitted requests were still running");
    assert_eq!(slow.count(), 1, "overflowed and pending requests did not reach the upstream");

    assert_eq!(in_flight.await.expect("join").status, 200);
    assert_eq!(pending.await.expect("join").status, 200, "the pending request got the connection once it was free");
    assert_eq!(slow.count(), 2);

    let m = p.metrics().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("response_code", "503"), ("response_flags", "UO")]), 3.0, "{m}");
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("response_code", "200"), ("response_flags", "-")]), 2.0, "{m}");
    assert_eq!(stat(&p, "cluster.slow.upstream_rq_pending_overflow").await, 3.0);
    assert_eq!(stat(&p, "cluster.slow.upstream_rq_pending_total").await, 1.0);
    assert_eq!(stat(&p, "cluster.slow.upstream_cx_overflow").await, 4.0, "every request that found the connection taken");
    assert_eq!(stat(&p, "cluster.slow.upstream_rq_pending_active").await, 0.0);
    assert_eq!(stat(&p, "cluster.slow.circuit_breakers.default.cx_open").await, 0.0);
}

#[tokio::test]
async fn tcp_connections_are_held_to_max_connections() {
    let echo = tcp_echo().await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
listeners:
  - name: out
    address: 127.0.0.1:{port}
    filter_chains: [{{ tcp: {{ cluster: echo }} }}]
clusters:
  - {{ name: echo, circuit_breakers: {{ max_connections: 1, max_pending_requests: 1 }}, endpoints: [{{ address: {echo} }}] }}
"#
        ),
    )
    .await;
    let read_some = |mut s: TcpStream| async move {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answer in time").unwrap_or(0);
        (s, buf[..n].to_vec())
    };
    let mut first = TcpStream::connect(local(port)).await.expect("connect");
    first.write_all(b"one").await.expect("write");
    let (first, got) = read_some(first).await;
    assert_eq!(got, b"one");

    // The second connection is accepted but waits for the upstream connection.
    let mut second = TcpStream::connect(local(port)).await.expect("connect");
    second.write_all(b"two").await.expect("write");
    eventually(Duration::from_secs(5), || async { (stat(&p, "cluster.echo.upstream_rq_pending_active").await == 1.0).then_some(()) })
        .await
        .expect("second connection pending");

    // The third finds the queue full and is closed at once, without an answer.
    let third = TcpStream::connect(local(port)).await.expect("connect");
    let (_, got) = read_some(third).await;
    assert!(got.is_empty(), "overflowed connection is closed: {got:?}");

    drop(first);
    let (_second, got) = read_some(second).await;
    assert_eq!(got, b"two", "the pending connection proceeds once the first closes");

    let m = p.metrics().await;
    assert_eq!(metric_sum(&m, "istio_tcp_connections_opened_total", &[("response_flags", "UO")]), 1.0, "{m}");
    assert_eq!(stat(&p, "cluster.echo.upstream_rq_pending_overflow").await, 1.0);
    assert_eq!(stat(&p, "cluster.echo.upstream_cx_overflow").await, 2.0);
}
