//! HTTP through the proxy: outbound → inbound chains, h2c, routing by host, path, headers and
//! weights, and the local replies users see when something is missing or down.

use oxidecar_tests::upstream::http_upstream;
use oxidecar_tests::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Pod B's sidecar: inbound listener → the app. Pod A's sidecar: outbound listener → B's inbound.
async fn pod_pair(app_port: u16) -> (Proxy, Proxy, u16) {
    let b_inbound = free_port();
    let b = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
node: {{ workload: reviews-v1, namespace: bookinfo }}
listeners:
  - name: virtualInbound
    address: 127.0.0.1:{b_inbound}
    direction: inbound
    filter_chains:
      - http: {{ route_config: inbound }}
route_configs:
  - name: inbound
    virtual_hosts:
      - name: inbound
        domains: ["*"]
        routes:
          - match: {{ prefix: "/" }}
            route: {{ cluster: app }}
            request_headers_to_add: [{{ name: x-inbound, value: b }}]
clusters:
  - name: app
    service: reviews.bookinfo.svc.cluster.local
    endpoints: [{{ address: 127.0.0.1:{app_port} }}]
"#
        ),
    )
    .await;
    let a_outbound = free_port();
    let a = Proxy::start(
        AdminPorts::new(),
        &format!(
            r#"
node: {{ workload: productpage-v1, namespace: bookinfo }}
listeners:
  - name: virtualOutbound
    address: 127.0.0.1:{a_outbound}
    filter_chains:
      - http: {{ route_config: outbound }}
route_configs:
  - name: outbound
    virtual_hosts:
      - name: reviews
        domains: ["reviews", "reviews.bookinfo.svc.cluster.local", "127.0.0.1:{a_outbound}"]
        routes:
          - match: {{ prefix: "/" }}
            route: {{ cluster: reviews }}
            request_headers_to_add: [{{ name: x-outbound, value: a }}]
            request_headers_to_remove: [x-secret]
            response_headers_to_add: [{{ name: x-mesh, value: oxidecar }}]
clusters:
  - name: reviews
    service: reviews.bookinfo.svc.cluster.local
    endpoints: [{{ address: 127.0.0.1:{b_inbound} }}]
"#
        ),
    )
    .await;
    (a, b, a_outbound)
}

#[tokio::test]
async fn http1_and_h2c_travel_outbound_then_inbound() {
    let app = http_upstream("reviews-app").await;
    let (a, b, port) = pod_pair(app.port()).await;
    let url = format!("http://127.0.0.1:{port}/reviews/1?x=y");

    let r = send(&http1_client(), "POST", &url, &[("host", "reviews"), ("x-secret", "s3")], "hello").await.expect("http1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers.get("x-mesh").map(|v| v.to_str().ok()), Some(Some("oxidecar")));
    let seen = json(&r.body);
    assert_eq!(seen["server"], "reviews-app");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/reviews/1?x=y");
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["x-outbound"], "a");
    assert_eq!(seen["headers"]["x-inbound"], "b");
    assert!(seen["headers"].get("x-secret").is_none(), "header removal: {seen}");

    let h2 = h2c_client();
    let r = send(&h2, "GET", &format!("http://127.0.0.1:{port}/h2"), &[], "").await.expect("h2c");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.version, http::Version::HTTP_2);
    let seen = json(&r.body);
    assert_eq!(seen["version"], "HTTP/2.0", "auto protocol keeps h2 end to end: {seen}");
    assert_eq!(app.count(), 2);

    let a_metrics = a.metrics().await;
    let b_metrics = b.metrics().await;
    let base = [("destination_service", "reviews.bookinfo.svc.cluster.local"), ("response_code", "200")];
    let src = [base[0], base[1], ("reporter", "source"), ("source_workload", "productpage-v1"), ("destination_service_name", "reviews")];
    let dst = [base[0], base[1], ("reporter", "destination"), ("destination_workload", "reviews-v1"), ("destination_workload_namespace", "bookinfo")];
    assert_eq!(metric_sum(&a_metrics, "istio_requests_total", &src), 2.0, "{a_metrics}");
    assert_eq!(metric_sum(&b_metrics, "istio_requests_total", &dst), 2.0, "{b_metrics}");
    assert_eq!(metric_sum(&a_metrics, "istio_request_duration_milliseconds_count", &src), 2.0);
    assert_eq!(metric_sum(&a_metrics, "istio_request_bytes_sum", &src), 5.0, "POST body of 5 bytes");
    assert!(metric_sum(&a_metrics, "istio_response_bytes_sum", &src) > 100.0);
}

#[tokio::test]
async fn routes_by_host_path_and_header() {
    let v1 = http_upstream("v1").await;
    let v2 = http_upstream("v2").await;
    let api = http_upstream("api").await;
    let port = free_port();
    let _p = Proxy::start(
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
      - name: reviews
        domains: ["reviews", "reviews:9080"]
        routes:
          - match: {{ prefix: "/", headers: [{{ name: end-user, exact: jason }}] }}
            route: {{ cluster: v2 }}
          - match: {{ regex: "/api/v[0-9]+/.*" }}
            route: {{ cluster: api }}
          - match: {{ prefix: "/" }}
            route: {{ cluster: v1 }}
clusters:
  - {{ name: v1, endpoints: [{{ address: 127.0.0.1:{} }}] }}
  - {{ name: v2, endpoints: [{{ address: 127.0.0.1:{} }}] }}
  - {{ name: api, endpoints: [{{ address: 127.0.0.1:{} }}] }}
"#,
            v1.port(),
            v2.port(),
            api.port()
        ),
    )
    .await;
    let c = http1_client();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let server = |r: Reply| json(&r.body)["server"].as_str().unwrap_or("").to_string();
    assert_eq!(server(send(&c, "GET", &url("/"), &[("host", "reviews"), ("end-user", "jason")], "").await.expect("r")), "v2");
    assert_eq!(server(send(&c, "GET", &url("/"), &[("host", "reviews:9080"), ("end-user", "other")], "").await.expect("r")), "v1");
    assert_eq!(server(send(&c, "GET", &url("/api/v2/items"), &[("host", "reviews")], "").await.expect("r")), "api");
    assert_eq!(server(send(&c, "GET", &url("/api/vX/items"), &[("host", "reviews")], "").await.expect("r")), "v1");

    let r = send(&c, "GET", &url("/"), &[("host", "ratings")], "").await.expect("r");
    assert_eq!(r.status, 404, "unknown host");
    assert_eq!(r.headers.get("x-oxidecar-reason").and_then(|v| v.to_str().ok()), Some("no route matched"));
}

#[tokio::test]
async fn weighted_clusters_split_within_tolerance() {
    let v1 = http_upstream("v1").await;
    let v3 = http_upstream("v3").await;
    let port = free_port();
    let _p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("weighted_clusters: [{ name: v1, weight: 80 }, { name: v3, weight: 20 }]"),
            &format!(
                "  - {{ name: v1, endpoints: [{{ address: {} }}] }}\n  - {{ name: v3, endpoints: [{{ address: {} }}] }}\n",
                v1.addr, v3.addr
            ),
        ),
    )
    .await;
    let c = http1_client();
    let n = 1000;
    for _ in 0..n {
        let r = send(&c, "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("request");
        assert_eq!(r.status, 200);
    }
    let share = v3.count() as f64 / n as f64;
    assert_eq!(v1.count() + v3.count(), n);
    // 20% ± 4.5 points is over 3.5 standard deviations for 1000 draws.
    assert!((0.155..=0.245).contains(&share), "v3 got {share}");
}

#[tokio::test]
async fn upstream_down_is_503_with_reason_and_retries_skip_dead_endpoints() {
    let live = http_upstream("live").await;
    let dead = free_port();
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
      - name: down
        domains: ["down"]
        routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: down }} }}]
      - name: mixed
        domains: ["mixed"]
        routes:
          - match: {{ prefix: "/" }}
            route: {{ cluster: mixed, retry_policy: {{ num_retries: 2, retry_on: [connect-failure] }} }}
clusters:
  - name: down
    connect_timeout: 500ms
    endpoints: [{{ address: 127.0.0.1:{dead} }}]
  - name: mixed
    endpoints: [{{ address: 127.0.0.1:{dead} }}, {{ address: 127.0.0.1:{} }}]
"#,
            live.port()
        ),
    )
    .await;
    let c = http1_client();
    let url = format!("http://127.0.0.1:{port}/x");
    let started = std::time::Instant::now();
    let r = send(&c, "GET", &url, &[("host", "down")], "").await.expect("reply");
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("x-oxidecar-reason").and_then(|v| v.to_str().ok()), Some("upstream connect error"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "no hang");

    for _ in 0..10 {
        let r = send(&c, "GET", &url, &[("host", "mixed")], "").await.expect("reply");
        assert_eq!(r.status, 200, "connect-failure retry reaches the live endpoint: {}", r.body);
    }
    let m = p.metrics().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("destination_service", "down"), ("response_code", "503"), ("response_flags", "UF")]), 1.0, "{m}");
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("destination_service", "mixed"), ("response_code", "200")]), 10.0);
    let (code, clusters) = p.admin("/clusters").await;
    assert_eq!(code, 200);
    let fails: u64 = clusters
        .lines()
        .filter(|l| l.starts_with(&format!("mixed::127.0.0.1:{dead}::cx_connect_fail::")))
        .filter_map(|l| l.rsplit("::").next()?.parse::<u64>().ok())
        .sum();
    assert!(fails >= 1, "dead endpoint's connect failures are counted: {clusters}");
}

#[tokio::test]
async fn circuit_breaker_overflow_is_503_uo() {
    let slow = http_upstream("slow").await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: slow"),
            &format!("  - {{ name: slow, circuit_breakers: {{ max_requests: 1 }}, endpoints: [{{ address: {} }}] }}\n", slow.addr),
        ),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/slow/600");
    let first = tokio::spawn({
        let url = url.clone();
        async move { send(&http1_client(), "GET", &url, &[], "").await.expect("first").status }
    });
    eventually(std::time::Duration::from_secs(5), || async { (slow.count() == 1).then_some(()) }).await.expect("first request reached the upstream");
    let second = send(&http1_client(), "GET", &url, &[], "").await.expect("second");
    assert_eq!(second.status, 503);
    assert!(second.headers.get("x-oxidecar-reason").and_then(|v| v.to_str().ok()).is_some_and(|r| r.contains("overflow")));
    assert_eq!(first.await.expect("join"), 200);
    let m = p.metrics().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("response_flags", "UO")]), 1.0, "{m}");
}

#[tokio::test]
async fn route_timeout_is_504_ut() {
    let slow = http_upstream("slow").await;
    let port = free_port();
    let _p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: slow, timeout: 200ms"),
            &format!("  - {{ name: slow, endpoints: [{{ address: {} }}] }}\n", slow.addr),
        ),
    )
    .await;
    let c = http1_client();
    let r = send(&c, "GET", &format!("http://127.0.0.1:{port}/slow/2000"), &[], "").await.expect("reply");
    assert_eq!(r.status, 504);
    assert_eq!(r.headers.get("x-oxidecar-reason").and_then(|v| v.to_str().ok()), Some("upstream request timeout"));
    let r = send(&c, "GET", &format!("http://127.0.0.1:{port}/slow/10"), &[], "").await.expect("reply");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint() {
    let good = http_upstream("good").await;
    let bad = oxidecar_tests::upstream::http_upstream_failing("bad", 500).await;
    let port = free_port();
    let p = Proxy::start(
        AdminPorts::new(),
        &http_config(
            port,
            &catch_all("cluster: app"),
            &format!(
                "  - name: app\n    outlier_detection: {{ consecutive_5xx: 3, base_ejection_time: 30s, max_ejection_percent: 50 }}\n    endpoints: [{{ address: {} }}, {{ address: {} }}]\n",
                good.addr, bad.addr
            ),
        ),
    )
    .await;
    let c = http1_client();
    let mut failures = 0;
    for _ in 0..40 {
        let r = send(&c, "GET", &format!("http://127.0.0.1:{port}/"), &[], "").await.expect("reply");
        if r.status != 200 {
            failures += 1;
        }
    }
    assert_eq!(bad.count(), 3, "ejected after 3 consecutive 5xx");
    assert_eq!(failures, 3);
    assert_eq!(good.count(), 37);
    let (_, clusters) = p.admin("/clusters").await;
    assert!(clusters.contains(&format!("app::{}::health_flags::/failed_outlier_check", bad.addr)), "{clusters}");
    assert!(clusters.contains(&format!("app::{}::health_flags::healthy", good.addr)), "{clusters}");
}
