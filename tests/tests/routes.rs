//! Route actions beyond forwarding and DNS clusters, against the running binary: redirects and
//! direct responses answered by the proxy, request mirroring (a copy reaches the mirror while
//! the primary answers, and a dead or slow mirror changes nothing for the client), and
//! STRICT_DNS / LOGICAL_DNS clusters resolving `localhost`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use oxidecar_tests::upstream::{Behavior, http_upstream, http_upstream_with};
use oxidecar_tests::*;

const WAIT: Duration = Duration::from_secs(10);

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn redirects_and_direct_responses_are_answered_by_the_proxy_and_counted() {
    let app = http_upstream("app").await;
    let port = free_port();
    let vhosts = r#"      - name: all
        domains: ["*"]
        routes:
          - { match: { prefix: "/old/" }, redirect: { prefix_rewrite: "/new/", host: new.example, response_code: 308 } }
          - { match: { path: "/login" }, redirect: { scheme: https, strip_query: true } }
          - match: { safe: x }
            redirect: {}
"#;
    // The last route above is a typo on purpose: `validate` must name it. Fixed below.
    let dir = TempDir::new("routes-bad");
    let bad = dir.0.join("bad.yaml");
    std::fs::write(&bad, http_config(port, vhosts, &format!("  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n", app.port()))).expect("write");
    let out = std::process::Command::new(binary()).arg("validate").arg(&bad).output().expect("validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routes[2].match.safe: unknown field `safe`"), "{stderr}");
    let more = r#"          - { match: { prefix: "/v" }, redirect: { regex_rewrite: { pattern: '^/v([0-9]+)/(.*)$', substitution: '/api/\2?version=\1' }, response_code: 302 } }
          - { match: { path: "/bad" }, redirect: { response_code: 305 } }
"#;
    std::fs::write(&bad, http_config(port, &vhosts.replace("          - match: { safe: x }\n            redirect: {}\n", more), &format!("  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n", app.port()))).expect("write");
    let out = std::process::Command::new(binary()).arg("validate").arg(&bad).output().expect("validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routes[3].redirect.response_code: 305 is not a redirect status"), "{stderr}");

    let vhosts = format!(
        "{}{}",
        vhosts.replace("          - match: { safe: x }\n            redirect: {}\n", ""),
        r#"          - { match: { prefix: "/v" }, redirect: { regex_rewrite: { pattern: '^/v([0-9]+)/(.*)$', substitution: '/api/\2?version=\1' }, response_code: 302 } }
          - match: { path: "/healthz" }
            direct_response: { status: 200, body: "ok from the mesh\n" }
            response_headers_to_add: [{ name: x-served-by, value: oxidecar }]
          - { match: { path: "/gone" }, direct_response: { status: 410 } }
          - { match: { prefix: "/" }, route: { cluster: app } }
"#
    );
    let proxy = Proxy::start(AdminPorts::new(), &http_config(port, &vhosts, &format!("  - {{ name: app, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n", app.port()))).await;
    let client = http1_client();
    let base = format!("http://127.0.0.1:{port}");

    let r = send(&client, "GET", &format!("{base}/old/items/7?color=red"), &[], "").await.expect("redirect");
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "http://new.example/new/items/7?color=red");
    let r = send(&client, "GET", &format!("{base}/login?next=/home"), &[("host", "shop.example:80")], "").await.expect("https");
    assert_eq!((r.status, r.headers["location"].to_str().expect("ascii")), (301, "https://shop.example/login"));
    let r = send(&client, "GET", &format!("{base}/v3/users?x=1"), &[("host", "api:8080")], "").await.expect("regex");
    assert_eq!((r.status, r.headers["location"].to_str().expect("ascii")), (302, "http://api:8080/api/users?version=3&x=1"));

    let r = send(&client, "GET", &format!("{base}/healthz"), &[], "").await.expect("direct");
    assert_eq!((r.status, r.body.as_str()), (200, "ok from the mesh\n"));
    assert_eq!(r.headers["x-served-by"], "oxidecar");
    assert_eq!(r.headers["content-type"], "text/plain");
    let r = send(&h2c_client(), "GET", &format!("{base}/gone"), &[], "").await.expect("direct h2");
    assert_eq!((r.status, r.body.as_str()), (410, ""));
    assert_eq!(app.count(), 0, "the proxy answered all of these itself");

    let r = send(&client, "GET", &format!("{base}/through"), &[], "").await.expect("forwarded");
    assert_eq!((r.status, json(&r.body)["server"].as_str()), (200, Some("app")));

    let counted = eventually(WAIT, || async {
        let m = proxy.metrics_now().await;
        let by_code = |c: &str| metric_sum(&m, "istio_requests_total", &[("response_code", c)]);
        (by_code("308") == 1.0 && by_code("301") == 1.0 && by_code("302") == 1.0 && by_code("410") == 1.0 && by_code("200") == 2.0).then_some(())
    })
    .await;
    assert!(counted.is_some(), "{}", proxy.metrics_now().await);
}

/// A request as the recording upstream saw it: headers and body.
type Seen = Arc<Mutex<Vec<(http::HeaderMap, String, String)>>>;

/// An HTTP/1 upstream that records every request (headers, path, body) and answers 200.
async fn recording_upstream() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Default::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
                        record.lock().expect("lock").push((parts.headers, path, String::from_utf8_lossy(&body).into_owned()));
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"mirror answer"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn mirrors_get_a_copy_and_never_hold_up_or_break_the_primary() {
    let primary = http_upstream("primary").await;
    let (mirror_addr, seen) = recording_upstream().await;
    let slow = http_upstream_with("slow-mirror", Behavior { status: None, delay: Some(Duration::from_secs(3)) }).await;
    let dead = free_port();
    let port = free_port();
    let vhosts = r#"      - name: reviews
        domains: ["reviews", "reviews:9080", "*"]
        routes:
          - match: { prefix: "/" }
            route: { cluster: primary, mirrors: [{ cluster: shadow }, { cluster: never, percent: 0 }] }
            request_headers_to_add: [{ name: x-route, value: mirrored }]
      - name: dead
        domains: ["dead"]
        routes: [{ match: { prefix: "/" }, route: { cluster: primary, mirrors: [{ cluster: dead }] } }]
      - name: slow
        domains: ["slow"]
        routes: [{ match: { prefix: "/" }, route: { cluster: primary, mirrors: [{ cluster: slow }] } }]
"#;
    let clusters = format!(
        "  - {{ name: primary, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n  - {{ name: shadow, endpoints: [{{ address: {mirror_addr} }}] }}\n  \
         - {{ name: never, endpoints: [{{ address: {mirror_addr} }}] }}\n  - {{ name: dead, connect_timeout: 1s, endpoints: [{{ address: 127.0.0.1:{dead} }}] }}\n  \
         - {{ name: slow, endpoints: [{{ address: 127.0.0.1:{} }}] }}\n",
        primary.port(),
        slow.port()
    );
    let proxy = Proxy::start(AdminPorts::new(), &http_config(port, vhosts, &clusters)).await;
    let client = http1_client();
    let url = format!("http://127.0.0.1:{port}/orders?id=7");

    let r = send(&client, "POST", &url, &[("host", "reviews:9080"), ("content-type", "text/plain")], "one order").await.expect("primary");
    assert_eq!(r.status, 200);
    let echoed = json(&r.body);
    assert_eq!((echoed["server"].as_str(), echoed["body"].as_str()), (Some("primary"), Some("one order")));
    let copy = eventually(WAIT, || async { seen.lock().expect("lock").first().cloned() }).await.expect("the mirror got a copy");
    let (headers, path, body) = copy;
    assert_eq!(headers["host"], "reviews-shadow:9080");
    assert_eq!((path.as_str(), body.as_str()), ("/orders?id=7", "one order"));
    assert_eq!(headers["x-route"], "mirrored");
    assert_eq!(headers["content-type"], "text/plain");

    // A GET over HTTP/2 (authority 127.0.0.1:PORT) is mirrored too; the 0 % mirror never is.
    let r = send(&h2c_client(), "GET", &url, &[], "").await.expect("h2 primary");
    assert_eq!(r.status, 200);
    let second = eventually(WAIT, || async { seen.lock().expect("lock").get(1).cloned() }).await.expect("second copy");
    assert_eq!((second.0["host"].to_str().expect("ascii"), second.2.as_str()), (format!("127.0.0.1-shadow:{port}").as_str(), ""));

    // Dead and slow mirrors: the primary answers at once, every time.
    for host in ["dead", "slow"] {
        for _ in 0..3 {
            let started = Instant::now();
            let r = send(&client, "POST", &url, &[("host", host)], "x").await.expect("primary despite the mirror");
            assert_eq!(r.status, 200, "{host}: {}", r.body);
            assert!(started.elapsed() < Duration::from_millis(1500), "{host} mirror held the primary up for {:?}", started.elapsed());
        }
    }
    assert_eq!(primary.count(), 8);
    let counted = eventually(WAIT, || async {
        let m = proxy.metrics_now().await;
        let n = |c: &str, r: &str| metric_sum(&m, "oxidecar_mirror_requests_total", &[("cluster", c), ("result", r)]);
        (n("shadow", "answered") == 2.0 && n("dead", "failed") == 3.0 && n("slow", "answered") == 3.0 && n("never", "answered") == 0.0).then_some(())
    })
    .await;
    assert!(counted.is_some(), "{}", proxy.metrics_now().await);
    assert_eq!(seen.lock().expect("lock").len(), 2, "only the shadow cluster's copies reached the recorder");
    let m = proxy.metrics_now().await;
    assert_eq!(metric_sum(&m, "istio_requests_total", &[("response_code", "200")]), 8.0, "copies are not counted as requests");
}

#[tokio::test]
async fn dns_clusters_resolve_localhost_and_keep_re_resolving() {
    let app = http_upstream("dns-app").await;
    let port = free_port();
    let vhosts = r#"      - { name: strict, domains: ["strict"], routes: [{ match: { prefix: "/" }, route: { cluster: strict } }] }
      - { name: logical, domains: ["logical"], routes: [{ match: { prefix: "/" }, route: { cluster: logical } }] }
      - { name: nowhere, domains: ["nowhere"], routes: [{ match: { prefix: "/" }, route: { cluster: nowhere } }] }
"#;
    let clusters = format!(
        r#"  - name: strict
    type: strict_dns
    dns: {{ hosts: [{{ host: localhost, port: {p} }}, {{ host: 127.0.0.1, port: {p} }}], refresh_rate: 300ms, lookup_family: v4_only }}
  - name: logical
    type: logical_dns
    dns: {{ hosts: [{{ host: localhost, port: {p} }}], lookup_family: all }}
  - name: nowhere
    type: strict_dns
    dns: {{ hosts: [{{ host: no-such-host.invalid, port: 80 }}], refresh_rate: 300ms }}
"#,
        p = app.port()
    );
    let proxy = Proxy::start(AdminPorts::new(), &http_config(port, vhosts, &clusters)).await;
    let client = http1_client();
    let url = format!("http://127.0.0.1:{port}/");
    for host in ["strict", "logical"] {
        let r = eventually(WAIT, || async {
            send(&client, "GET", &url, &[("host", host)], "").await.ok().filter(|r| r.status == 200)
        })
        .await;
        assert_eq!(r.map(|r| json(&r.body)["server"].clone()), Some(serde_json::json!("dns-app")), "{host} cluster never resolved");
    }
    let (_, clusters_page) = proxy.admin("/clusters").await;
    let strict_endpoints = clusters_page.lines().filter(|l| l.starts_with("strict::") && l.contains("::cx_connect_fail::")).count();
    assert_eq!(strict_endpoints, 1, "localhost and 127.0.0.1 are one endpoint:\n{clusters_page}");

    // An unresolvable name: 503 no healthy upstream, failures counted, the proxy keeps serving.
    let r = send(&client, "GET", &url, &[("host", "nowhere")], "").await.expect("answer");
    assert_eq!(r.status, 503);
    let m = |c: &'static str, r: &'static str| {
        let proxy = &proxy;
        async move { metric_sum(&proxy.metrics_now().await, "oxidecar_dns_resolutions_total", &[("cluster", c), ("result", r)]) }
    };
    let first = m("strict", "success").await;
    let again = eventually(WAIT, || async { (m("strict", "success").await >= first + 4.0 && m("nowhere", "failure").await >= 3.0).then_some(()) }).await;
    assert!(again.is_some(), "no re-resolution every 300ms:\n{}", proxy.metrics_now().await);
    let r = send(&client, "GET", &url, &[("host", "strict")], "").await.expect("still served");
    assert_eq!(r.status, 200);
}
