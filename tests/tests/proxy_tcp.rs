//! TCP through the proxy: plain TCP routes, weighted TCP routes, protocol sniffing on a listener
//! that serves both HTTP and TCP, server-first protocols, and TCP metrics.

use std::time::Duration;

use oxidecar_tests::upstream::{http_upstream, tcp_echo, tcp_greeter};
use oxidecar_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn roundtrip(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(local(port)).await.expect("connect");
    s.write_all(payload).await.expect("write");
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.expect("in time").expect("read");
    got
}

#[tokio::test]
async fn tcp_echo_through_a_tcp_route_with_metrics() {
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
  - {{ name: echo, service: tcp-echo.test.svc.cluster.local, endpoints: [{{ address: {echo} }}] }}
"#
        ),
    )
    .await;
    // A long-lived connection is counted while it is open, not only when it closes.
    let mut open = TcpStream::connect(local(port)).await.expect("connect");
    open.write_all(b"still here").await.expect("write");
    let mut echo_back = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), open.read_exact(&mut echo_back)).await.expect("in time").expect("read");
    let labels = [("destination_service", "tcp-echo.test.svc.cluster.local"), ("request_protocol", "tcp")];
    let live = eventually(Duration::from_secs(5), || async {
        let m = p.metrics_now().await;
        (metric_sum(&m, "istio_tcp_sent_bytes_total", &labels) == 10.0).then_some(m)
    })
    .await;
    assert!(live.is_some(), "bytes of an open connection are counted");
    drop(open);

    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(roundtrip(port, &payload).await, payload);
    assert_eq!(roundtrip(port, b"ping\n").await, b"ping\n");
    let closed = eventually(Duration::from_secs(5), || async {
        let m = p.metrics().await;
        (metric_sum(&m, "istio_tcp_connections_closed_total", &labels) == 3.0).then_some(m)
    })
    .await
    .expect("all connections closed and counted");
    assert_eq!(metric_sum(&closed, "istio_tcp_connections_opened_total", &labels), 3.0);
    assert_eq!(metric_sum(&closed, "istio_tcp_received_bytes_total", &labels), 100_015.0, "{closed}");
    assert_eq!(metric_sum(&closed, "istio_tcp_sent_bytes_total", &labels), 100_015.0);
}

#[tokio::test]
async fn one_listener_sniffs_http_tcp_and_server_first_protocols() {
    let web = http_upstream("web").await;
    let echo = tcp_echo().await;
    let greeter = tcp_greeter(b"220 smtp.example ESMTP\r\n").await;
    let (port, smtp_port) = (free_port(), free_port());
    let _p = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
listeners:
  - name: sniffing
    address: 127.0.0.1:{port}
    protocol_sniff_timeout: 100ms
    filter_chains:
      - {{ http: {{ route_config: main }} }}
      - {{ tcp: {{ cluster: echo }} }}
  - name: smtp
    address: 127.0.0.1:{smtp_port}
    protocol_sniff_timeout: 100ms
    filter_chains:
      - {{ http: {{ route_config: main }} }}
      - {{ tcp: {{ cluster: greeter }} }}
route_configs:
  - name: main
    virtual_hosts:
      - {{ name: web, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: web }} }}] }}
clusters:
  - {{ name: web, endpoints: [{{ address: 127.0.0.1:{} }}] }}
  - {{ name: echo, endpoints: [{{ address: {echo} }}] }}
  - {{ name: greeter, endpoints: [{{ address: {greeter} }}] }}
"#,
            web.port()
        ),
    )
    .await;
    let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/x"), &[], "").await.expect("http");
    assert_eq!(r.status, 200);
    assert_eq!(web.count(), 1);
    // A redis-style command is not HTTP: it goes to the TCP chain.
    assert_eq!(roundtrip(port, b"*1\r\n$4\r\nPING\r\n").await, b"*1\r\n$4\r\nPING\r\n");
    // A short first write that could still become HTTP ("GE") is resolved by the next bytes.
    assert_eq!(roundtrip(port, b"GEO 1 2\r\n").await, b"GEO 1 2\r\n");
    // Server-first: the client waits for the greeting; the sniff timeout hands it to TCP.
    let mut s = TcpStream::connect(local(smtp_port)).await.expect("connect");
    let mut greeting = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut greeting)).await.expect("greeting in time").expect("read");
    assert_eq!(&greeting, b"220 smtp.example ESMTP\r\n");
}

#[tokio::test]
async fn weighted_tcp_routes_and_unmatched_ports_close() {
    let a = tcp_greeter(b"A").await;
    let b = tcp_greeter(b"B").await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
listeners:
  - name: split
    address: 127.0.0.1:{port}
    filter_chains:
      - tcp: {{ weighted_clusters: [{{ name: a, weight: 80 }}, {{ name: b, weight: 20 }}] }}
  - name: nothing
    address: 127.0.0.1:{}
    filter_chains:
      - {{ match: {{ destination_port: 1 }}, tcp: {{ cluster: a }} }}
clusters:
  - {{ name: a, endpoints: [{{ address: {a} }}] }}
  - {{ name: b, endpoints: [{{ address: {b} }}] }}
"#,
            free_port()
        ),
    )
    .await;
    let mut to_b = 0;
    let n = 400;
    for _ in 0..n {
        let mut s = TcpStream::connect(local(port)).await.expect("connect");
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte)).await.expect("in time").expect("read");
        if &byte == b"B" {
            to_b += 1;
        }
    }
    let share = f64::from(to_b) / f64::from(n);
    assert!((0.13..=0.27).contains(&share), "b got {share}");

    let cfg = std::fs::read_to_string(&p.config).expect("config");
    let nothing_port: u16 = cfg.split("name: nothing\n    address: 127.0.0.1:").nth(1).and_then(|r| r.lines().next()).and_then(|l| l.parse().ok()).expect("port");
    let mut s = TcpStream::connect(local(nothing_port)).await.expect("connect");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0, "no chain for this port: the connection is closed");
    let m = p.metrics().await;
    assert_eq!(metric_sum(&m, "oxidecar_listener_no_filter_chain_total", &[("listener", "nothing")]), 1.0, "{m}");
}
