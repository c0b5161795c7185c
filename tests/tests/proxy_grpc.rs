//! gRPC through the proxy over h2c: unary calls with status codes and trailers intact, and a
//! bidirectional stream that interleaves both ways.

use oxidecar_tests::grpc::{EchoClient, EchoRequest, grpc_upstream};
use oxidecar_tests::*;
use tokio_stream::StreamExt;

async fn proxy_to(upstream: std::net::SocketAddr) -> (Proxy, u16) {
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
listeners:
  - name: out
    address: 127.0.0.1:{port}
    filter_chains: [{{ http: {{ route_config: main }} }}]
route_configs:
  - name: main
    virtual_hosts:
      - name: echo
        domains: ["*"]
        routes:
          - match: {{ prefix: "/oxidecar.test.Echo/" }}
            route: {{ cluster: echo }}
clusters:
  - name: echo
    service: echo.test.svc.cluster.local
    protocol: h2
    endpoints: [{{ address: {upstream} }}]
"#
        ),
    )
    .await;
    (p, port)
}

#[tokio::test]
async fn unary_calls_keep_status_codes_and_trailers() {
    let upstream = grpc_upstream("echo-1").await;
    let (p, port) = proxy_to(upstream).await;
    let mut client = EchoClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect");

    let ok = client.unary(EchoRequest { message: "hi".into(), fail_code: 0 }).await.expect("unary ok");
    assert_eq!(ok.metadata().get("x-served-by").and_then(|v| v.to_str().ok()), Some("echo-1"));
    assert_eq!(ok.into_inner().message, "echo-1: hi");

    let err = client
        .unary(EchoRequest { message: "nope".into(), fail_code: tonic::Code::PermissionDenied as i32 })
        .await
        .expect_err("server error");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(err.message(), "failing as asked: nope");
    assert_eq!(err.metadata().get("x-test-trailer").and_then(|v| v.to_str().ok()), Some("present"));

    let m = p.metrics().await;
    let grpc = [("request_protocol", "grpc"), ("destination_service", "echo.test.svc.cluster.local")];
    assert_eq!(metric_sum(&m, "istio_requests_total", &[grpc[0], grpc[1], ("grpc_response_status", "0")]), 1.0, "{m}");
    assert_eq!(metric_sum(&m, "istio_requests_total", &[grpc[0], grpc[1], ("grpc_response_status", "7")]), 1.0, "{m}");
}

#[tokio::test]
async fn bidirectional_stream_flows_both_ways() {
    let upstream = grpc_upstream("echo-2").await;
    let (_p, port) = proxy_to(upstream).await;
    let mut client = EchoClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect");

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut replies = client.chat(outbound).await.expect("chat").into_inner();
    // Each reply arrives before the next message is sent: the stream is live both ways, not buffered.
    for word in ["alpha", "beta", "gamma"] {
        tx.send(EchoRequest { message: word.into(), fail_code: 0 }).await.expect("send");
        let reply = tokio::time::timeout(std::time::Duration::from_secs(5), replies.next())
            .await
            .expect("reply in time")
            .expect("stream open")
            .expect("reply ok");
        assert_eq!(reply.message, format!("echo-2: {}", word.to_uppercase()));
    }
    drop(tx);
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), replies.next()).await.expect("end in time");
    assert!(end.is_none(), "stream ends cleanly with status OK: {end:?}");
}

#[tokio::test]
async fn grpc_to_a_dead_upstream_is_unavailable() {
    let dead = local(free_port());
    let (_p, port) = proxy_to(dead).await;
    let mut client = EchoClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect");
    let err = client.unary(EchoRequest { message: "x".into(), fail_code: 0 }).await.expect_err("unavailable");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("upstream connect error"), "{err:?}");
}
