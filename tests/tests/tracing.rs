//! Tracing: W3C and B3 context through two real sidecars, spans exported over OTLP/gRPC to an
//! in-test receiver (names, parent/child links, attributes), sampling, runtime API spans, and a
//! collector that is down.

use std::time::Duration;

use oxidecar_tests::otlp::{OtlpReceiver, Received};
use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::*;

fn telemetry(endpoint: &str, sampling: u32) -> String {
    format!("telemetry:\n  tracing: {{ sampling: {sampling}, otlp: {{ endpoint: \"{endpoint}\" }} }}\n")
}

/// Sidecar B (inbound, workload reviews in shop) in front of `app`.
fn inbound(port: u16, app: u16, telemetry: &str) -> String {
    format!(
        "node: {{ workload: reviews-v1, namespace: shop, labels: {{ app: reviews }} }}\n{telemetry}listeners:\n  - name: in\n    address: 127.0.0.1:{port}\n    direction: inbound\n    filter_chains: [{{ http: {{ route_config: in }} }}]\nroute_configs:\n  - name: in\n    virtual_hosts:\n{}clusters:\n  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{app} }}] }}\n",
        catch_all("cluster: app")
    )
}

/// Sidecar A (outbound, workload productpage in front) sending to `to`.
fn outbound(port: u16, to: u16, telemetry: &str) -> String {
    format!(
        "node: {{ workload: productpage-v1, namespace: front, labels: {{ app: productpage }} }}\n{telemetry}{}",
        http_config(port, &catch_all("cluster: reviews"), &format!("  - {{ name: reviews, endpoints: [{{ address: 127.0.0.1:{to} }}] }}\n"))
    )
}

async fn spans_of(rx: &OtlpReceiver, trace: &str, n: usize) -> Vec<Received> {
    eventually(Duration::from_secs(10), || async {
        let s: Vec<Received> = rx.spans().into_iter().filter(|s| s.trace_id() == trace).collect();
        (s.len() >= n).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("fewer than {n} spans of trace {trace}: {:#?}", rx.spans()))
}

#[tokio::test]
async fn w3c_context_crosses_two_sidecars_and_spans_link_up() {
    let rx = OtlpReceiver::start().await;
    let app = http_upstream("reviews").await;
    let (a_port, b_port) = (free_port(), free_port());
    let _b = Proxy::start(AdminPorts::new(), &inbound(b_port, app.port(), &telemetry(&rx.endpoint(), 0))).await;
    let _a = Proxy::start(AdminPorts::new(), &outbound(a_port, b_port, &telemetry(&rx.endpoint(), 0))).await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = send(
        &http1_client(),
        "GET",
        &format!("http://127.0.0.1:{a_port}/reviews/7"),
        &[("host", "reviews:9080"), ("traceparent", &format!("00-{trace}-{caller_span}-01")), ("tracestate", "congo=t61rcWkgMzE")],
        "",
    )
    .await
    .expect("request");
    assert_eq!(r.status, 200);
    let seen: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let app_tp = seen["headers"]["traceparent"].as_str().expect("the app gets a traceparent").to_string();
    assert_eq!(seen["headers"]["tracestate"], "congo=t61rcWkgMzE");
    assert!(seen["headers"]["x-request-id"].as_str().is_some_and(|id| id.len() == 36), "a request id is added: {seen}");

    let spans = spans_of(&rx, trace, 2).await;
    let client = spans.iter().find(|s| s.span.kind == 3).expect("the outbound hop is a CLIENT span");
    let server = spans.iter().find(|s| s.span.kind == 2).expect("the inbound hop is a SERVER span");
    assert_eq!(client.parent_id(), caller_span, "A's span is the caller's child");
    assert_eq!(server.parent_id(), client.span_id(), "B's span is A's child");
    assert_eq!(app_tp, format!("00-{trace}-{}-01", server.span_id()), "the app's parent is B's span");
    assert_eq!(client.span.name, "reviews");
    assert_eq!(server.span.name, "reviews inbound");
    assert_eq!(client.service, "productpage.front");
    assert_eq!(server.service, "reviews.shop");
    assert_eq!(client.span.trace_state, "congo=t61rcWkgMzE");
    for (k, v) in [("http.request.method", "GET"), ("url.path", "/reviews/7"), ("http.response.status_code", "200"), ("upstream_cluster", "reviews"), ("response_flags", "-")] {
        assert_eq!(client.attr(k).as_deref(), Some(v), "{k} on {client:#?}");
    }
    assert_eq!(client.attr("upstream_address"), Some(format!("127.0.0.1:{b_port}")));
    assert_eq!(server.attr("upstream_cluster").as_deref(), Some("app"));
    assert_eq!(client.attr("guid:x-request-id"), seen["headers"]["x-request-id"].as_str().map(str::to_owned), "one request id across hops");
    // B starts after A sent the request and before A got the answer (B may log its end a moment
    // after A, since each side's span ends when that side has finished writing).
    let (a, b) = (&client.span, &server.span);
    assert!(a.start_time_unix_nano <= b.start_time_unix_nano && b.start_time_unix_nano <= a.end_time_unix_nano, "{a:?}\n{b:?}");
}

#[tokio::test]
async fn b3_is_joined_and_rewritten_and_sampling_decides_for_new_traces() {
    let rx = OtlpReceiver::start().await;
    let app = http_upstream("app").await;
    let port = free_port();
    let p = Proxy::start(AdminPorts::new(), &outbound(port, app.port(), &telemetry(&rx.endpoint(), 0))).await;
    let client = http1_client();
    let r = send(
        &client,
        "GET",
        &format!("http://127.0.0.1:{port}/"),
        &[("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")],
        "",
    )
    .await
    .expect("request");
    let seen: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let span = spans_of(&rx, "463ac35c9f6413ad48485a3953bb6124", 1).await.remove(0);
    assert_eq!(span.parent_id(), "a2fb4a1d1a96d312");
    assert_eq!(seen["headers"]["x-b3-traceid"], "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(seen["headers"]["x-b3-spanid"].as_str(), Some(span.span_id().as_str()), "our span is the app's parent");
    assert_eq!(seen["headers"]["x-b3-parentspanid"], "a2fb4a1d1a96d312");
    assert_eq!(seen["headers"]["x-b3-sampled"], "1");
    assert_eq!(seen["headers"]["traceparent"].as_str(), Some(format!("00-463ac35c9f6413ad48485a3953bb6124-{}-01", span.span_id()).as_str()));

    // No context and sampling 0: a new, unsampled trace is propagated and nothing is exported.
    for _ in 0..5 {
        let r = send(&client, "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("request");
        let seen: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        let tp = seen["headers"]["traceparent"].as_str().expect("a trace is started").to_string();
        assert!(tp.starts_with("00-") && tp.ends_with("-00") && tp.len() == 55, "{tp}");
    }
    // The receiver keeps a span before it answers; the proxy counts it once the answer is back.
    let m = eventually(Duration::from_secs(5), || async {
        let m = p.metrics().await;
        (metric_sum(&m, "oxidecar_trace_spans_total", &[("result", "exported")]) >= 1.0).then_some(m)
    })
    .await
    .expect("the sampled span counted");
    assert_eq!(metric_sum(&m, "oxidecar_trace_spans_total", &[("result", "exported")]), 1.0, "only the sampled request: {m}");
    assert_eq!(rx.spans().len(), 1);

    // Sampling 100: every new trace is exported.
    p.rewrite_config(&outbound(port, app.port(), &telemetry(&rx.endpoint(), 100)));
    let exported = eventually(Duration::from_secs(10), || async {
        let _ = send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await;
        (rx.spans().len() >= 3).then_some(())
    })
    .await;
    assert!(exported.is_some(), "sampled new traces are exported after the reload");
    assert!(rx.spans().iter().filter(|s| s.span.parent_span_id.is_empty()).count() >= 2, "new traces are roots");
}

#[tokio::test]
async fn runtime_api_calls_are_spans_in_the_callers_trace() {
    let rx = OtlpReceiver::start().await;
    let app = http_upstream("app").await;
    let dapr_http = free_port();
    let _p = Proxy::start_with_args(
        AdminPorts::new(),
        &outbound(free_port(), app.port(), &telemetry(&rx.endpoint(), 0)),
        &["--dapr-http-port", &dapr_http.to_string()],
    )
    .await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = send(
        &http1_client(),
        "POST",
        &format!("http://127.0.0.1:{dapr_http}/v1.0/state/statestore"),
        &[("content-type", "application/json"), ("traceparent", &format!("00-{trace}-b7ad6b7169203331-01"))],
        r#"[{"key":"k","value":"v"}]"#,
    )
    .await
    .expect("save");
    assert_eq!(r.status, 204);
    let span = spans_of(&rx, trace, 1).await.remove(0);
    assert_eq!(span.span.name, "runtime/SaveState");
    assert_eq!(span.parent_id(), "b7ad6b7169203331");
    assert_eq!(span.attr("rpc.method").as_deref(), Some("SaveState"));
    assert_eq!(span.attr("http.response.status_code").as_deref(), Some("204"));
    assert_eq!(span.span.kind, 2, "SERVER");
}

#[tokio::test]
async fn a_collector_that_is_down_costs_spans_not_requests() {
    let app = http_upstream("app").await;
    let port = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let p = Proxy::start(AdminPorts::new(), &outbound(port, app.port(), &telemetry(&dead, 100))).await;
    for _ in 0..3 {
        assert_eq!(send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("request").status, 200);
    }
    let m = eventually(Duration::from_secs(15), || async {
        let m = p.metrics_now().await;
        (metric_sum(&m, "oxidecar_trace_spans_total", &[("result", "failed")]) >= 3.0).then_some(m)
    })
    .await
    .expect("failed exports counted");
    assert_eq!(metric_sum(&m, "oxidecar_trace_spans_total", &[("result", "exported")]), 0.0);
}

/// Runs `code` with the Dapr Python SDK against the runtime's gRPC port.
async fn python_sdk(grpc: u16, http: u16, code: &str) -> std::process::Output {
    let python = std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| format!("{}/.cache/oxidecar-venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    tokio::process::Command::new(python)
        .args(["-c", code])
        .env("DAPR_GRPC_PORT", grpc.to_string())
        .env("DAPR_HTTP_PORT", http.to_string())
        .output()
        .await
        .expect("python")
}

#[tokio::test]
async fn runtime_api_metrics_name_the_component_and_grpc_calls_are_spans() {
    let rx = OtlpReceiver::start().await;
    let app = http_upstream("app").await;
    let (grpc, http) = (free_port(), free_port());
    let p = Proxy::start_with_args(
        AdminPorts::new(),
        &outbound(free_port(), app.port(), &telemetry(&rx.endpoint(), 100)),
        &["--dapr-grpc-port", &grpc.to_string(), "--dapr-http-port", &http.to_string()],
    )
    .await;
    let client = http1_client();
    let url = |store: &str| format!("http://127.0.0.1:{http}/v1.0/state/{store}");
    let body = r#"[{"key":"k","value":"v"}]"#;
    assert_eq!(send(&client, "POST", &url("statestore"), &[("content-type", "application/json")], body).await.expect("save").status, 204);
    let bad = send(&client, "POST", &url("no-such-store"), &[("content-type", "application/json")], body).await.expect("save");
    assert!(bad.status >= 400, "{}", bad.status);
    let out = python_sdk(
        grpc,
        http,
        "from dapr.clients import DaprClient\nwith DaprClient() as c:\n    c.save_state('statestore', 'g', 'v')\n    print(c.get_state('statestore', 'g').data.decode())\n",
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");

    let m = p.metrics().await;
    let calls = |labels: &[(&str, &str)]| metric_sum(&m, "oxidecar_runtime_api_requests_total", labels);
    assert_eq!(calls(&[("protocol", "http"), ("method", "SaveState"), ("component", "statestore"), ("code", "204")]), 1.0, "{m}");
    assert_eq!(calls(&[("protocol", "http"), ("method", "SaveState"), ("component", "")]), 1.0, "an unknown store is not a label value");
    assert!(!m.contains("no-such-store"));
    assert_eq!(calls(&[("protocol", "grpc"), ("method", "SaveState"), ("component", "statestore"), ("code", "OK")]), 1.0, "{m}");
    assert_eq!(calls(&[("protocol", "grpc"), ("method", "GetState"), ("component", "statestore"), ("code", "OK")]), 1.0);
    assert_eq!(metric_sum(&m, "oxidecar_runtime_api_request_duration_seconds_count", &[("protocol", "grpc"), ("component", "statestore")]), 2.0);

    let spans = eventually(Duration::from_secs(10), || async {
        let s = rx.spans();
        (s.iter().any(|s| s.attr("runtime.protocol").as_deref() == Some("grpc") && s.span.name == "runtime/GetState")).then_some(s)
    })
    .await
    .expect("gRPC runtime spans exported");
    let get = spans.iter().find(|s| s.span.name == "runtime/GetState").expect("GetState span");
    assert_eq!(get.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(get.attr("rpc.system").as_deref(), Some("dapr"));
    assert!(spans.iter().any(|s| s.span.name == "runtime/SaveState" && s.attr("runtime.protocol").as_deref() == Some("grpc")));
}
