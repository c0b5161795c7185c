//! Service invocation over the mesh: an app calls another app by id through its sidecar; the call
//! rides sidecar A's outbound listener (routing, LB, metrics) to sidecar B's inbound listener, whose
//! runtime delivers it to the target app.

use oxidecar_tests::upstream::{http_upstream, http_upstream_failing};
use oxidecar_tests::*;

/// Sidecar B serves app `orders` (an HTTP app) on its inbound listener, whose port is returned.
async fn orders_sidecar(orders_app_port: u16) -> (Proxy, u16) {
    let b_inbound = free_port();
    let b = Proxy::start_with_args(
        AdminPorts::new(),
        &format!(
            r#"
node: {{ workload: orders-v1, namespace: shop }}
listeners:
  - name: virtualInbound
    address: 127.0.0.1:{b_inbound}
    direction: inbound
    filter_chains: [{{ http: {{ route_config: inbound }} }}]
route_configs:
  - name: inbound
    virtual_hosts:
{}clusters:
  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{orders_app_port} }}] }}
"#,
            catch_all("cluster: app")
        ),
        &["--app-id", "orders", "--app-port", &orders_app_port.to_string()],
    )
    .await;
    (b, b_inbound)
}

/// Sidecar B serves app `orders` (an HTTP app); sidecar A serves `checkout` and routes `orders` to B.
async fn two_sidecars(orders_app_port: u16) -> (Proxy, Proxy, u16, u16) {
    let (b, b_inbound) = orders_sidecar(orders_app_port).await;
    let (a_outbound, a_grpc, a_http) = (free_port(), free_port(), free_port());
    let a = Proxy::start_with_args(
        AdminPorts::new(),
        &checkout_sidecar_config(a_outbound, &format!("[{{ address: 127.0.0.1:{b_inbound} }}]")),
        &["--app-id", "checkout", "--dapr-grpc-port", &a_grpc.to_string(), "--dapr-http-port", &a_http.to_string()],
    )
    .await;
    (a, b, a_grpc, a_http)
}

#[tokio::test]
async fn invoke_by_app_id_rides_the_mesh_to_the_target_app() {
    let app = http_upstream("orders-app").await;
    let (a, b, _grpc, http_port) = two_sidecars(app.port()).await;

    let r = send(
        &http1_client(),
        "POST",
        &format!("http://127.0.0.1:{http_port}/v1.0/invoke/orders/method/neworder?id=7"),
        &[("content-type", "application/json"), ("x-request-tag", "t1"), ("accept-encoding", "gzip, deflate"), ("user-agent", "dapr-sdk-python/1.19.0")],
        r#"{"item":"book"}"#,
    )
    .await
    .expect("invoke");
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: serde_json::Value = serde_json::from_str(&r.body).expect("app answer");
    assert_eq!(seen["server"], "orders-app");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/neworder?id=7");
    assert_eq!(seen["body"], r#"{"item":"book"}"#);
    assert_eq!(seen["headers"]["dapr-caller-app-id"], "checkout");
    assert_eq!(seen["headers"]["x-request-tag"], "t1");

    // The call was mesh traffic on both sides.
    let svc = ("destination_service", "orders.shop.svc.cluster.local");
    let a_m = a.metrics().await;
    assert_eq!(metric_sum(&a_m, "istio_requests_total", &[("reporter", "source"), svc, ("source_workload", "checkout-v1"), ("response_code", "200")]), 1.0, "{a_m}");
    let b_m = b.metrics().await;
    assert_eq!(metric_sum(&b_m, "istio_requests_total", &[("reporter", "destination"), ("destination_workload", "orders-v1"), ("response_code", "200")]), 1.0, "{b_m}");

    // An app id the mesh does not know: a clear error, and the sidecar keeps serving.
    let before = app.count();
    let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{http_port}/v1.0/invoke/payments/method/x"), &[], "").await.expect("reply");
    assert!(r.status >= 400, "{}", r.body);
    assert!(r.body.contains("payments") && r.body.contains("no route matched"), "{}", r.body);
    assert_eq!(app.count(), before);
}

/// A hands the call to its outbound listener in process (no TCP connection to it), and the call is
/// still that listener's traffic: the route's retry policy moves past a failing endpoint, and the
/// listener's access log and metrics record every call.
#[tokio::test]
async fn invocation_handed_over_in_process_keeps_the_listeners_retries_metrics_and_access_log() {
    let app = http_upstream("orders-app").await;
    let broken = http_upstream_failing("broken-orders", 503).await;
    let (_b, b_inbound) = orders_sidecar(app.port()).await;
    let dir = TempDir::new("invoke-log");
    let log = dir.0.join("access.log");
    let (a_outbound, a_http) = (free_port(), free_port());
    let endpoints = format!("[{{ address: 127.0.0.1:{} }}, {{ address: 127.0.0.1:{b_inbound} }}]", broken.port());
    let sidecar = checkout_sidecar_config(a_outbound, &endpoints);
    let retry_on_5xx = sidecar.replace("retry_policy: { retry_on: [connect-failure] }", "retry_policy: { num_retries: 3, retry_on: [5xx], base_interval: 1ms }");
    assert_ne!(retry_on_5xx, sidecar, "the harness config has the route's retry policy to replace");
    let config = format!("telemetry:\n  access_log: {{ format: json, path: {} }}\n{retry_on_5xx}", log.display());
    let a = Proxy::start_with_args(AdminPorts::new(), &config, &["--app-id", "checkout", "--dapr-http-port", &a_http.to_string()]).await;

    const CALLS: usize = 4;
    for i in 0..CALLS {
        let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{a_http}/v1.0/invoke/orders/method/neworder?n={i}"), &[], "")
            .await
            .expect("invoke");
        assert_eq!(r.status, 200, "call {i}: {}", r.body);
        let seen: serde_json::Value = serde_json::from_str(&r.body).expect("app answer");
        assert_eq!(seen["server"], "orders-app");
        assert_eq!(seen["path"], format!("/neworder?n={i}"));
    }
    let reached = (0..CALLS).filter(|i| app.seen_on(&format!("/neworder?n={i}")).len() == 1).count();
    assert_eq!(reached, CALLS, "every call reached the app once");
    assert!(broken.count() >= 1, "round robin sent some tries to the failing endpoint");

    let entries: Vec<serde_json::Value> = eventually(std::time::Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let entries: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (entries.len() >= CALLS).then_some(entries)
    })
    .await
    .unwrap_or_else(|| panic!("A's access log has fewer than {CALLS} lines: {:?}", std::fs::read_to_string(&log)));
    assert_eq!(entries.len(), CALLS, "one line per call: {entries:?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["listener"], "virtualOutbound", "{e}");
        assert_eq!(e["direction"], "outbound", "{e}");
        assert_eq!(e["authority"], "orders.shop.svc.cluster.local", "{e}");
        assert_eq!(e["path"], format!("/v1.0/invoke/orders/method/neworder?n={i}"), "{e}");
        assert_eq!(e["response_code"], 200, "{e}");
        assert_eq!(e["upstream_cluster"], "orders", "{e}");
        assert_eq!(e["upstream_host"], format!("127.0.0.1:{b_inbound}"), "the last try went to B: {e}");
        // An in-memory connection: the listener's address, and no client port.
        assert_eq!(e["downstream_remote_address"], "127.0.0.1:0", "{e}");
    }
    let retries: u64 = entries.iter().map(|e| e["retries"].as_u64().unwrap_or(0)).sum();
    assert_eq!(retries, broken.count(), "each try on the failing endpoint was retried: {entries:?}");

    let m = a.metrics().await;
    let ok = [("reporter", "source"), ("destination_service", "orders.shop.svc.cluster.local"), ("response_code", "200")];
    assert_eq!(metric_sum(&m, "istio_requests_total", &ok), CALLS as f64, "{m}");
}

/// A's in-memory connections to its outbound listener are kept alive and reused: many calls, eight
/// at a time, with bodies from empty to larger than the in-memory buffer, interleaved with calls
/// the mesh itself refuses (their bodies unread), each get their own answer.
#[tokio::test]
async fn calls_on_reused_in_memory_connections_keep_their_own_requests_and_answers() {
    let app = http_upstream("orders-app").await;
    let (_a, _b, _grpc, http_port) = two_sidecars(app.port()).await;
    let client = http1_client();
    for round in 0..5 {
        let calls = (0..8).map(|i| {
            let client = client.clone();
            async move {
                let n = round * 8 + i;
                let url = format!("http://127.0.0.1:{http_port}/v1.0/invoke/orders/method/neworder?n={n}");
                match n % 4 {
                    // The mesh answers instead of an app, without reading the body it was sent;
                    // the connection is used again after it.
                    3 => {
                        let unread = "u".repeat(if n % 8 == 3 { 100 * 1024 } else { 10 });
                        let r = send(&client, "POST", &format!("http://127.0.0.1:{http_port}/v1.0/invoke/payments/method/x{n}"), &[], &unread).await.expect("reply");
                        assert!(r.status >= 400 && r.body.contains("payments"), "call {n}: {} {}", r.status, r.body);
                    }
                    verb => {
                        // Empty, small, and 100 KiB (past the 64 KiB an in-memory pipe buffers).
                        let body = match verb {
                            0 => String::new(),
                            1 => format!("{{\"n\":{n}}}"),
                            _ => format!("{n}:").repeat(100 * 1024 / 3),
                        };
                        let method = if body.is_empty() { "GET" } else { "POST" };
                        let r = send(&client, method, &url, &[("content-type", "text/plain")], &body).await.expect("invoke");
                        assert_eq!(r.status, 200, "call {n}: {}", r.body);
                        let seen: serde_json::Value = serde_json::from_str(&r.body).expect("app answer");
                        assert_eq!(seen["path"], format!("/neworder?n={n}"), "call {n}");
                        assert_eq!(seen["method"], method, "call {n}");
                        assert_eq!(seen["body"].as_str().map(str::len), Some(body.len()), "call {n}");
                        assert!(seen["body"] == body.as_str(), "call {n} got another call's body");
                    }
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }
    let once = (0..40).filter(|n| n % 4 != 3).filter(|n| app.seen_on(&format!("/neworder?n={n}")).len() == 1).count();
    assert_eq!(once, 30, "every call the mesh did not refuse reached the app once");
}

#[tokio::test]
async fn dapr_python_sdk_invokes_over_http_and_grpc() {
    let app = http_upstream("orders-app").await;
    let (_a, _b, grpc_port, http_port) = two_sidecars(app.port()).await;
    let python = std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/oxidecar-venv/bin/python", std::env::var("HOME").unwrap_or_default())
    });
    let script = r#"
import json, sys
from dapr.clients import DaprClient
with DaprClient() as d:
    r = d.invoke_method('orders', 'neworder', data=b'{"qty": 2}', http_verb='POST', content_type='application/json')
    seen = json.loads(r.text())
    assert seen['path'] == '/neworder', seen
    assert seen['body'] == '{"qty": 2}', seen
    assert seen['headers']['dapr-caller-app-id'] == 'checkout', seen
print('ok')
"#;
    for protocol in ["http", "grpc"] {
        // Async, so the app (served on this test's runtime) keeps answering while Python runs.
        let out = tokio::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .env("DAPR_GRPC_PORT", grpc_port.to_string())
            .env("DAPR_HTTP_PORT", http_port.to_string())
            .env("DAPR_API_METHOD_INVOCATION_PROTOCOL", protocol)
            .output()
            .await
            .expect("python with the Dapr SDK (run tests/run to create the venv)");
        assert!(
            out.status.success(),
            "{protocol}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The target is a gRPC app (`dapr.ext.grpc.App`): B's inbound hands the call to B's runtime, which
/// calls the app's `AppCallback.OnInvoke`.
#[tokio::test]
async fn invoking_a_grpc_app_goes_through_on_invoke() {
    let python = std::env::var("OXIDECAR_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/oxidecar-venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let app_port = free_port();
    let script = r#"
import sys, warnings
warnings.filterwarnings("ignore")
from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse
app = App()
@app.method(name="neworder")
def neworder(request: InvokeMethodRequest) -> InvokeMethodResponse:
    return InvokeMethodResponse(b"grpc app got " + request.data, "text/plain")
app.run(int(sys.argv[1]))
"#;
    let mut app = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(app_port.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("python gRPC app (run tests/run to create the venv)");
    let up = eventually(std::time::Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(local(app_port)).await.ok().map(|_| ())
    })
    .await;
    assert!(up.is_some(), "the gRPC app listens");

    let b_in = free_port();
    let _b = Proxy::start_with_args(
        AdminPorts::new(),
        &format!(
            "listeners:\n  - name: virtualInbound\n    address: 127.0.0.1:{b_in}\n    direction: inbound\n    filter_chains: [{{ http: {{ route_config: in }} }}]\nroute_configs:\n  - name: in\n    virtual_hosts:\n{}clusters:\n  - {{ name: app, protocol: h2, endpoints: [{{ address: 127.0.0.1:{app_port} }}] }}\n",
            catch_all("cluster: app")
        ),
        &["--app-id", "orders", "--app-port", &app_port.to_string(), "--app-protocol", "grpc"],
    )
    .await;
    let (a_out, a_http) = (free_port(), free_port());
    let _a = Proxy::start_with_args(
        AdminPorts::new(),
        &http_config(a_out, &catch_all("cluster: orders"), &format!("  - {{ name: orders, endpoints: [{{ address: 127.0.0.1:{b_in} }}] }}\n"))
            .replace("name: out\n", "name: virtualOutbound\n"),
        &["--app-id", "checkout", "--dapr-http-port", &a_http.to_string()],
    )
    .await;
    let r = send(&http1_client(), "POST", &format!("http://127.0.0.1:{a_http}/v1.0/invoke/orders/method/neworder"), &[("content-type", "text/plain")], "order-9")
        .await
        .expect("invoke");
    let _ = app.kill().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "grpc app got order-9");
}
