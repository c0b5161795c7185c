//! Istio's standard labels, filled from node metadata and Istio's metadata exchange between two
//! real sidecars; bounded label values, dropped labels; the app's metrics merged on 15020.

use std::time::Duration;

use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The one sample line of `family` whose labels include every pair in `labels`.
fn sample<'a>(text: &'a str, family: &str, labels: &[(&str, &str)]) -> &'a str {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .collect();
    assert_eq!(lines.len(), 1, "{family} with {labels:?}: {lines:#?}\n{text}");
    lines[0]
}

/// Sidecar B: inbound HTTP (`port`) and TCP (`tcp_port`) listeners in front of `app_port`, for
/// workload `reviews-v2`.
fn inbound_config(port: u16, tcp_port: u16, app_port: u16, telemetry: &str) -> String {
    format!(
        r#"node:
  workload: reviews-v2
  namespace: shop
  labels: {{ app: reviews, version: v2 }}
  cluster_id: east
{telemetry}listeners:
  - name: virtualInbound
    address: 127.0.0.1:{port}
    direction: inbound
    filter_chains: [{{ http: {{ route_config: in }} }}]
  - name: tcpIn
    address: 127.0.0.1:{tcp_port}
    direction: inbound
    filter_chains: [{{ tcp: {{ cluster: app }} }}]
route_configs:
  - name: in
    virtual_hosts:
{}clusters:
  - {{ name: app, service: reviews.shop.svc.cluster.local, endpoints: [{{ address: 127.0.0.1:{app_port} }}] }}
"#,
        catch_all("cluster: app")
    )
}

/// Sidecar A: an outbound listener sending `reviews` traffic to B, for workload `workload`.
fn outbound_config(port: u16, b_port: u16, workload: &str) -> String {
    format!(
        r#"node:
  workload: {workload}
  namespace: front
  labels: {{ app: productpage, version: v1, service.istio.io/canonical-revision: r1 }}
{}"#,
        http_config(port, &catch_all("cluster: reviews"), &format!("  - {{ name: reviews, service: reviews.shop.svc.cluster.local, endpoints: [{{ address: 127.0.0.1:{b_port} }}] }}\n"))
    )
}

#[tokio::test]
async fn two_sidecars_report_istios_full_label_set() {
    let app = http_upstream("reviews").await;
    let (b_port, b_tcp) = (free_port(), free_port());
    let b = Proxy::start(AdminPorts::new(), &inbound_config(b_port, b_tcp, app.port(), "")).await;
    let a_port = free_port();
    let a = Proxy::start(AdminPorts::new(), &outbound_config(a_port, b_port, "productpage-v1")).await;

    let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{a_port}/reviews/1"), &[("host", "reviews")], "").await.expect("request");
    assert_eq!(r.status, 200);
    let seen: serde_json::Value = serde_json::from_str(&r.body).expect("upstream JSON");
    assert!(seen["headers"].get("x-envoy-peer-metadata").is_none(), "the app never sees exchange headers: {seen}");
    assert!(r.headers.get("x-envoy-peer-metadata").is_none(), "nor does the client");

    let am = a.metrics().await;
    let line = sample(&am, "istio_requests_total", &[("reporter", "source")]);
    for (k, v) in [
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "front"),
        ("source_principal", "unknown"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "r1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v2"),
        ("destination_workload_namespace", "shop"),
        ("destination_principal", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_service", "reviews.shop.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "shop"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v2"),
        ("destination_cluster", "east"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", "-"),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
    ] {
        assert!(line.contains(&format!("{k}=\"{v}\"")), "source reporter lacks {k}={v}: {line}");
    }
    assert!(line.ends_with(" 1"), "{line}");
    assert_eq!(metric_sum(&am, "istio_request_duration_milliseconds_count", &[("destination_workload", "reviews-v2")]), 1.0);
    assert_eq!(metric_sum(&am, "istio_response_bytes_sum", &[("destination_app", "reviews")]), r.body.len() as f64);

    let bm = b.metrics().await;
    let line = sample(&bm, "istio_requests_total", &[("reporter", "destination")]);
    for (k, v) in [
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "front"),
        ("source_app", "productpage"),
        ("source_canonical_revision", "r1"),
        ("destination_workload", "reviews-v2"),
        ("destination_app", "reviews"),
        ("destination_cluster", "east"),
        ("connection_security_policy", "none"),
        ("response_code", "200"),
    ] {
        assert!(line.contains(&format!("{k}=\"{v}\"")), "destination reporter lacks {k}={v}: {line}");
    }

    // TCP on B's inbound: this node as the destination, the same label names.
    let mut s = tokio::net::TcpStream::connect(local(b_tcp)).await.expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.0 200"), "{}", String::from_utf8_lossy(&buf));
    drop(s);
    let bm = eventually(Duration::from_secs(5), || async {
        let m = b.metrics_now().await;
        (metric_sum(&m, "istio_tcp_connections_closed_total", &[]) == 1.0).then_some(m)
    })
    .await
    .expect("tcp connection counted");
    let tcp = sample(&bm, "istio_tcp_sent_bytes_total", &[("request_protocol", "tcp")]);
    for (k, v) in [("reporter", "destination"), ("destination_workload", "reviews-v2"), ("destination_canonical_service", "reviews"), ("source_workload", "unknown"), ("connection_security_policy", "none")] {
        assert!(tcp.contains(&format!("{k}=\"{v}\"")), "tcp lacks {k}={v}: {tcp}");
    }
    assert!(!tcp.contains("response_code"), "{tcp}");
}

#[tokio::test]
async fn peer_label_values_are_capped_and_dropped_labels_are_empty() {
    let app = http_upstream("reviews").await;
    let (b_port, b_tcp) = (free_port(), free_port());
    let telemetry = "telemetry:\n  metrics: { max_label_values: 2, drop_labels: [destination_version, source_version] }\n";
    let b = Proxy::start(AdminPorts::new(), &inbound_config(b_port, b_tcp, app.port(), telemetry)).await;
    let a_port = free_port();
    let a = Proxy::start(AdminPorts::new(), &outbound_config(a_port, b_port, "caller-0")).await;
    for i in 0..4 {
        if i > 0 {
            let before = metric_sum(&a.metrics_now().await, "oxidecar_config_reloads_total", &[("result", "success")]);
            a.rewrite_config(&outbound_config(a_port, b_port, &format!("caller-{i}")));
            eventually(Duration::from_secs(10), || async {
                (metric_sum(&a.metrics_now().await, "oxidecar_config_reloads_total", &[("result", "success")]) > before).then_some(())
            })
            .await
            .expect("reload applied");
        }
        let r = send(&http1_client(), "GET", &format!("http://127.0.0.1:{a_port}/"), &[("host", "reviews")], "").await.expect("request");
        assert_eq!(r.status, 200);
    }
    let bm = b.metrics().await;
    let per_source = |w: &str| metric_sum(&bm, "istio_requests_total", &[("source_workload", w)]);
    assert_eq!((per_source("caller-0"), per_source("caller-1")), (1.0, 1.0));
    assert_eq!((per_source("caller-2"), per_source("caller-3")), (0.0, 0.0), "beyond the cap of 2");
    assert_eq!(per_source("other"), 2.0);
    assert_eq!(metric_sum(&bm, "istio_requests_total", &[("destination_version", ""), ("source_version", "")]), 4.0, "dropped labels are empty");
}

/// Serves `body` as Prometheus text on every request; returns its port.
async fn app_metrics(body: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (status, text) = if req.starts_with("GET /custom ") { ("200 OK", body) } else { ("404 Not Found", "") };
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn merged_port_appends_the_apps_metrics() {
    let app_port = app_metrics("# TYPE app_orders_total counter\napp_orders_total 5\n").await;
    let ports = AdminPorts::new();
    let listener = free_port();
    let body = format!(
        "telemetry:\n  metrics: {{ app_scrape: {{ port: {app_port}, path: /custom }} }}\n{}",
        http_config(listener, &catch_all("cluster: app"), "  - { name: app, endpoints: [{ address: 127.0.0.1:9 }] }\n")
    );
    let p = Proxy::start(ports, &body).await;
    let (code, merged) = http_get(&format!("http://127.0.0.1:{}/stats/prometheus", ports.merged_metrics)).await.expect("15020");
    assert_eq!(code, 200);
    assert!(merged.contains("app_orders_total 5"), "{merged}");
    assert!(merged.contains("# TYPE oxidecar_http_active_requests gauge"), "ours too: {merged}");
    let own = p.metrics_now().await;
    assert!(!own.contains("app_orders_total"), "15090 is the proxy's own metrics only");

    // A wrong path: ours still served, the failure counted.
    p.rewrite_config(&body.replace("/custom", "/nope"));
    let merged = eventually(Duration::from_secs(10), || async {
        let m = http_get(&format!("http://127.0.0.1:{}/stats/prometheus", ports.merged_metrics)).await.expect("15020").1;
        (metric_sum(&m, "oxidecar_app_metrics_scrapes_total", &[("result", "failure")]) >= 1.0).then_some(m)
    })
    .await
    .expect("failure counted");
    assert!(!merged.contains("app_orders_total 5"));
    assert!(merged.contains("oxidecar_http_active_requests"));
}

#[tokio::test]
async fn merge_target_comes_from_pilot_agents_annotations_variable() {
    let app_port = app_metrics("app_ready 1\n").await;
    let ports = AdminPorts::new();
    let dir = TempDir::new("annotations");
    let config = dir.0.join("mesh.yaml");
    std::fs::write(&config, ports.yaml()).expect("config");
    let mut child = tokio::process::Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--dapr-grpc-port", &free_port().to_string(), "--dapr-http-port", &free_port().to_string()])
        .env("ISTIO_PROMETHEUS_ANNOTATIONS", format!(r#"{{"scrape":"true","port":"{app_port}","path":"/custom"}}"#))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let merged = eventually(Duration::from_secs(20), || async {
        http_get(&format!("http://127.0.0.1:{}/stats/prometheus", ports.merged_metrics)).await.ok().filter(|r| r.0 == 200).map(|r| r.1)
    })
    .await
    .expect("15020 answers");
    assert!(merged.contains("app_ready 1"), "{merged}");
    let _ = child.kill().await;
}

#[tokio::test]
async fn istio_injector_variables_name_the_workload_when_the_config_does_not() {
    let app = http_upstream("app").await;
    let ports = AdminPorts::new();
    let port = free_port();
    let dir = TempDir::new("node-env");
    let config = dir.0.join("mesh.yaml");
    std::fs::write(&config, format!("{}{}", ports.yaml(), http_config(port, &catch_all("cluster: app"), &format!("  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n", app.port())))).expect("config");
    let _child = tokio::process::Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--dapr-grpc-port", &free_port().to_string(), "--dapr-http-port", &free_port().to_string()])
        .env("ISTIO_META_WORKLOAD_NAME", "ratings-v1")
        .env("POD_NAMESPACE", "bookinfo")
        .env("ISTIO_METAJSON_LABELS", r#"{"app":"ratings","version":"v1"}"#)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let ok = eventually(Duration::from_secs(20), || async {
        matches!(send(&http1_client(), "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await, Ok(r) if r.status == 200).then_some(())
    })
    .await;
    assert!(ok.is_some(), "the proxy serves");
    let m = eventually(Duration::from_secs(5), || async {
        let m = http_get(&format!("http://127.0.0.1:{}/stats/prometheus", ports.metrics)).await.ok()?.1;
        (metric_sum(&m, "istio_requests_total", &[("source_workload", "ratings-v1")]) >= 1.0).then_some(m)
    })
    .await
    .expect("source labels from the injector's variables");
    let line = sample(&m, "istio_requests_total", &[("source_workload", "ratings-v1")]);
    for (k, v) in [("source_workload_namespace", "bookinfo"), ("source_app", "ratings"), ("source_version", "v1"), ("source_canonical_service", "ratings")] {
        assert!(line.contains(&format!("{k}=\"{v}\"")), "{k}={v}: {line}");
    }
}
