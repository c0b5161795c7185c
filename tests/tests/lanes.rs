//! Lanes: requests carrying a lane (header or baggage) reach the destination's endpoints of that
//! lane, fall back to the base lane when it has none, and never pull base traffic into a lane; the
//! lane follows a trace into the calls an app makes, and rides service invocation.

use oxidecar_tests::grpc::{EchoClient, EchoRequest, grpc_upstream};
use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::*;

fn server(r: &Reply) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body).map(|v| v["server"].as_str().unwrap_or("").to_string()).unwrap_or_default()
}

#[tokio::test]
async fn http_lane_routing_with_base_fallback_and_trace_memory() {
    let base = http_upstream("reviews-v1").await;
    let alice = http_upstream("reviews-alice").await;
    let app = http_upstream("local-app").await;
    let (outbound, inbound) = (free_port(), free_port());
    let p = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
listeners:
  - name: out
    address: 127.0.0.1:{outbound}
    filter_chains: [{{ http: {{ route_config: out }} }}]
  - name: in
    address: 127.0.0.1:{inbound}
    direction: inbound
    filter_chains: [{{ http: {{ route_config: in }} }}]
route_configs:
  - name: out
    virtual_hosts:
{}  - name: in
    virtual_hosts:
{}clusters:
  - name: reviews
    endpoints:
      - {{ address: {}, labels: {{ version: v1 }} }}
      - {{ address: {}, labels: {{ version: v1, lane: dev-alice }} }}
  - {{ name: app, endpoints: [{{ address: {} }}] }}
"#,
            catch_all("cluster: reviews"),
            catch_all("cluster: app"),
            base.addr,
            alice.addr,
            app.addr
        ),
    )
    .await;
    let c = http1_client();
    let out = format!("http://127.0.0.1:{outbound}/reviews/1");
    for _ in 0..20 {
        assert_eq!(server(&send(&c, "GET", &out, &[], "").await.expect("r")), "reviews-v1", "no lane: base only");
    }
    assert_eq!(alice.count(), 0, "a lane endpoint never receives base traffic");
    assert_eq!(server(&send(&c, "GET", &out, &[("x-lane", "dev-alice")], "").await.expect("r")), "reviews-alice");
    assert_eq!(server(&send(&c, "GET", &out, &[("baggage", "user=7,lane=dev-alice")], "").await.expect("r")), "reviews-alice");
    assert_eq!(server(&send(&c, "GET", &out, &[("x-lane", "dev-bob")], "").await.expect("r")), "reviews-v1", "no dev-bob endpoint: base");

    // A lane-L request arrives inbound; the app's follow-up call carries only the trace context.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(&c, "GET", &format!("http://127.0.0.1:{inbound}/work"), &[("x-lane", "dev-alice"), ("traceparent", trace)], "").await.expect("inbound");
    assert_eq!(server(&r), "local-app");
    let follow_up = send(&c, "GET", &out, &[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-a3ce929d0e0e4736-01")], "").await.expect("r");
    assert_eq!(server(&follow_up), "reviews-alice", "the lane followed the trace");
    let seen: serde_json::Value = serde_json::from_str(&follow_up.body).expect("json");
    assert_eq!(seen["headers"]["x-lane"], "dev-alice", "and travels on as a header");

    let m = p.metrics().await;
    let lane = |l: &str, served: &str| metric_sum(&m, "oxidecar_lane_requests_total", &[("lane", l), ("served_lane", served), ("reporter", "source")]);
    assert_eq!(lane("dev-alice", "dev-alice"), 3.0, "{m}");
    assert_eq!(lane("dev-bob", "base"), 1.0, "{m}");
}

#[tokio::test]
async fn grpc_lane_routing() {
    let base = grpc_upstream("echo-base").await;
    let lane = grpc_upstream("echo-qa").await;
    let port = free_port();
    let _p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: echo"),
            &format!("  - {{ name: echo, protocol: h2, endpoints: [{{ address: {base} }}, {{ address: {lane}, labels: {{ lane: qa-7 }} }}] }}\n"),
        ),
    )
    .await;
    let mut client = EchoClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect");
    let plain = client.unary(EchoRequest { message: "x".into(), fail_code: 0 }).await.expect("base");
    assert_eq!(plain.into_inner().message, "echo-base: x");
    let mut req = tonic::Request::new(EchoRequest { message: "y".into(), fail_code: 0 });
    req.metadata_mut().insert("x-lane", "qa-7".parse().expect("ascii"));
    assert_eq!(client.unary(req).await.expect("lane").into_inner().message, "echo-qa: y");
}

#[tokio::test]
async fn service_invocation_stays_in_its_lane() {
    let base_app = http_upstream("orders").await;
    let dev_app = http_upstream("orders-dev").await;
    let sidecar_for = |app: &oxidecar_tests::upstream::HttpUpstream, inbound: u16| {
        (
            format!(
                "listeners:\n  - name: virtualInbound\n    address: 127.0.0.1:{inbound}\n    direction: inbound\n    filter_chains: [{{ http: {{ route_config: in }} }}]\nroute_configs:\n  - name: in\n    virtual_hosts:\n{}clusters:\n  - {{ name: app, endpoints: [{{ address: {} }}] }}\n",
                catch_all("cluster: app"),
                app.addr
            ),
            app.port().to_string(),
        )
    };
    let (b_in, c_in) = (free_port(), free_port());
    let (b_cfg, b_port) = sidecar_for(&base_app, b_in);
    let (c_cfg, c_port) = sidecar_for(&dev_app, c_in);
    let _b = Proxy::start_with_args(AdminPorts::new(), &b_cfg, &["--app-id", "orders", "--app-port", &b_port]).await;
    let _c = Proxy::start_with_args(AdminPorts::new(), &c_cfg, &["--app-id", "orders", "--app-port", &c_port]).await;
    let (a_out, a_http) = (free_port(), free_port());
    let _a = Proxy::start_with_args(
        AdminPorts::new(),
        &format!(
            "listeners:\n  - name: virtualOutbound\n    address: 127.0.0.1:{a_out}\n    filter_chains: [{{ http: {{ route_config: out }} }}]\nroute_configs:\n  - name: out\n    virtual_hosts:\n{}clusters:\n  - name: orders\n    endpoints: [{{ address: 127.0.0.1:{b_in} }}, {{ address: 127.0.0.1:{c_in}, labels: {{ lane: dev }} }}]\n",
            catch_all("cluster: orders")
        ),
        &["--app-id", "checkout", "--dapr-http-port", &a_http.to_string()],
    )
    .await;
    let url = format!("http://127.0.0.1:{a_http}/v1.0/invoke/orders/method/neworder");
    let c = http1_client();
    assert_eq!(server(&send(&c, "POST", &url, &[], "{}").await.expect("base")), "orders");
    assert_eq!(server(&send(&c, "POST", &url, &[("x-lane", "dev")], "{}").await.expect("lane")), "orders-dev");
    assert_eq!(server(&send(&c, "POST", &url, &[("baggage", "lane=dev")], "{}").await.expect("lane")), "orders-dev");
}
