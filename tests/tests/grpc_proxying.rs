//! Dapr's gRPC proxying: an app calls a plain gRPC service on its sidecar's runtime gRPC port with
//! metadata `dapr-app-id`; the call rides sidecar A's outbound listener (routing, lanes, metrics)
//! to sidecar B's inbound, which hands it to B's gRPC app — unary, streaming, errors and trailers
//! intact, the caller named in `dapr-caller-app-id`.

use std::net::SocketAddr;

use oxidecar_tests::grpc::{EchoClient, EchoRequest, grpc_upstream};
use oxidecar_tests::*;
use tokio_stream::StreamExt;
use tonic::Request;

/// A sidecar for app `orders` whose app is the gRPC service at `app`. Its inbound listener routes
/// plain traffic to `inbound_route` (another service), so a proxied call that reaches `app` was
/// recognised as one.
async fn orders_sidecar(app: SocketAddr, inbound_route: SocketAddr) -> (Proxy, u16) {
    let inbound = free_port();
    let p = Proxy::start_with_args(
        AdminPorts::new(),
        &format!(
            "node: {{ workload: orders-v1, namespace: shop }}\nlisteners:\n  - name: virtualInbound\n    address: 127.0.0.1:{inbound}\n    direction: inbound\n    filter_chains: [{{ http: {{ route_config: in }} }}]\nroute_configs:\n  - name: in\n    virtual_hosts:\n{}clusters:\n  - {{ name: other, protocol: h2, endpoints: [{{ address: {inbound_route} }}] }}\n",
            catch_all("cluster: other")
        ),
        &["--app-id", "orders", "--app-port", &app.port().to_string(), "--app-protocol", "grpc"],
    )
    .await;
    (p, inbound)
}

fn call(message: &str, app_id: Option<&str>, fail_code: i32) -> Request<EchoRequest> {
    let mut req = Request::new(EchoRequest { message: message.to_string(), fail_code });
    if let Some(id) = app_id {
        req.metadata_mut().insert("dapr-app-id", id.parse().expect("ascii"));
    }
    req
}

#[tokio::test]
async fn grpc_calls_with_dapr_app_id_reach_the_target_app_over_the_mesh() {
    let (orders, orders_dev, elsewhere) = (grpc_upstream("orders").await, grpc_upstream("orders-dev").await, grpc_upstream("inbound-route").await);
    let (b, b_in) = orders_sidecar(orders, elsewhere).await;
    let (_c, c_in) = orders_sidecar(orders_dev, elsewhere).await;
    let (a_out, a_grpc) = (free_port(), free_port());
    let a = Proxy::start_with_args(
        AdminPorts::new(),
        &checkout_sidecar_config(a_out, &format!("[{{ address: 127.0.0.1:{b_in} }}, {{ address: 127.0.0.1:{c_in}, labels: {{ lane: dev }} }}]")),
        &["--app-id", "checkout", "--dapr-grpc-port", &a_grpc.to_string()],
    )
    .await;
    let mut client = EchoClient::connect(format!("http://127.0.0.1:{a_grpc}")).await.expect("connect to sidecar A");

    // Unary: the app's answer, its response metadata, and the caller named by the sidecar.
    let resp = client.unary(call("hi", Some("orders"), 0)).await.expect("proxied unary call");
    assert_eq!(resp.metadata().get("x-served-by").and_then(|v| v.to_str().ok()), Some("orders"));
    assert_eq!(resp.metadata().get("x-echo-caller").and_then(|v| v.to_str().ok()), Some("checkout"));
    assert_eq!(resp.into_inner().message, "orders: hi");

    // Bidirectional streaming, several messages each way on one call.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut outbound = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    outbound.metadata_mut().insert("dapr-app-id", "orders".parse().expect("ascii"));
    let mut replies = client.chat(outbound).await.expect("proxied stream").into_inner();
    for word in ["one", "two", "three"] {
        tx.send(EchoRequest { message: word.to_string(), fail_code: 0 }).await.expect("send");
        let reply = replies.next().await.expect("a reply per message").expect("reply ok");
        assert_eq!(reply.message, format!("orders: {}", word.to_uppercase()));
    }
    drop(tx);
    assert!(replies.next().await.is_none(), "the stream ends when the caller ends it");

    // The app's error status, message and trailers come back as they were.
    let err = client.unary(call("nope", Some("orders"), tonic::Code::NotFound as i32)).await.expect_err("the app fails");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "failing as asked: nope");
    assert_eq!(err.metadata().get("x-test-trailer").and_then(|v| v.to_str().ok()), Some("present"));

    // The call took the mesh path: lanes apply, and both sidecars counted it.
    let mut lane = call("in lane", Some("orders"), 0);
    lane.metadata_mut().insert("x-lane", "dev".parse().expect("ascii"));
    assert_eq!(client.unary(lane).await.expect("lane call").into_inner().message, "orders-dev: in lane");
    let a_m = a.metrics().await;
    let svc = ("destination_service", "orders.shop.svc.cluster.local");
    assert_eq!(metric_sum(&a_m, "istio_requests_total", &[("reporter", "source"), svc, ("grpc_response_status", "0")]), 3.0, "{a_m}");
    assert_eq!(metric_sum(&a_m, "istio_requests_total", &[("reporter", "source"), svc, ("grpc_response_status", "5")]), 1.0, "{a_m}");
    let b_m = b.metrics().await;
    assert_eq!(metric_sum(&b_m, "istio_requests_total", &[("reporter", "destination"), ("destination_workload", "orders-v1")]), 3.0, "{b_m}");

    // An app id the mesh does not know: a clear error naming it; nothing reached an app.
    let err = client.unary(call("x", Some("payments"), 0)).await.expect_err("unknown app");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("\"payments\"") && err.message().contains("no route"), "{err:?}");

    // Without dapr-app-id a non-Dapr service is not served, and the error names the method.
    let err = client.unary(call("x", None, 0)).await.expect_err("no app id");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("/oxidecar.test.Echo/Unary") && err.message().contains("dapr-app-id"), "{err:?}");
}
