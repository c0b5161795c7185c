//! bindings.http against an HTTP server of the test's own on a loopback port: the bindings
//! conformance suite, Dapr's request and response metadata, non-2xx handling, and an endpoint
//! that is down.
#![cfg(feature = "http-binding")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use oxidecar_components::ComponentError;
use oxidecar_components::bindings::http::HttpBinding;
use oxidecar_components::bindings::{self, BindingRequest, OutputBinding};
use oxidecar_components::metadata::Metadata;

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

/// Stores bodies by path; echoes `x-trace` and `authorization` back as `x-echo-*`.
async fn server() -> String {
    let listener = support::listen_in_range().await;
    let addr = listener.local_addr().expect("addr");
    let store: Arc<Mutex<HashMap<String, Bytes>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let mut echo = Vec::new();
                        for h in ["x-trace", "authorization"] {
                            if let Some(v) = req.headers().get(h) {
                                echo.push((format!("x-echo-{h}"), v.clone()));
                            }
                        }
                        let method = req.method().clone();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let (status, out) = match method.as_str() {
                            "POST" | "PUT" => {
                                store.lock().expect("store").insert(path, body);
                                (StatusCode::CREATED, Bytes::new())
                            }
                            "GET" => match store.lock().expect("store").get(&path) {
                                Some(b) => (StatusCode::OK, b.clone()),
                                None => (StatusCode::NOT_FOUND, Bytes::from("no such item")),
                            },
                            _ => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
                        };
                        let mut resp = Response::builder().status(status);
                        for (k, v) in echo {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, Infallible>(resp.body(Full::new(out)).expect("response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    format!("http://{addr}")
}

fn req(op: &str, path: &str, data: &'static str) -> BindingRequest {
    BindingRequest { operation: op.into(), data: Bytes::from(data), metadata: HashMap::from([("path".to_string(), path.to_string())]) }
}

#[tokio::test]
async fn bindings_http_passes_the_bindings_conformance_suite() {
    let url = server().await;
    let b: Arc<dyn OutputBinding> = Arc::new(HttpBinding::from_config(meta(&[("url", &format!("{url}/base/"))])).expect("metadata"));
    let fixture = bindings::conformance::Fixture {
        write: req("create", "/items/a", "hello"),
        read: req("get", "items/a", ""),
        expected: Bytes::from("hello"),
        missing: None,
    };
    if let Err(e) = bindings::conformance::run(b, fixture).await {
        panic!("bindings.http conformance: {e}");
    }
}

#[tokio::test]
async fn bindings_http_speaks_daprs_metadata() {
    let url = server().await;
    let b = HttpBinding::from_config(meta(&[("url", &url), ("securityToken", "s3cret"), ("securityTokenHeader", "Authorization")])).expect("metadata");
    b.invoke(req("put", "/k", "v")).await.expect("put");
    let mut get = req("get", "/k", "");
    get.metadata.insert("X-Trace".into(), "abc".into());
    let resp = b.invoke(get).await.expect("get");
    assert_eq!(resp.data, Bytes::from("v"));
    assert_eq!(resp.metadata.get("statusCode").map(String::as_str), Some("200"));
    assert_eq!(resp.metadata.get("status").map(String::as_str), Some("200 OK"));
    assert_eq!(resp.metadata.get("X-Echo-X-Trace").map(String::as_str), Some("abc"), "request metadata travels as headers");
    assert_eq!(resp.metadata.get("X-Echo-Authorization").map(String::as_str), Some("s3cret"), "securityToken is sent");

    let err = b.invoke(req("get", "/missing", "")).await.expect_err("404");
    assert!(matches!(&err, ComponentError::Failed(m) if m.contains("404") && m.contains("/missing")), "{err}");
    let lenient = HttpBinding::from_config(meta(&[("url", &url), ("errorIfNot2XX", "false")])).expect("metadata");
    let resp = lenient.invoke(req("get", "/missing", "")).await.expect("answered");
    assert_eq!((resp.metadata["statusCode"].as_str(), resp.data), ("404", Bytes::from("no such item")));
}

#[tokio::test]
async fn bindings_http_bad_metadata_and_down_endpoint() {
    let err = |pairs: &[(&str, &str)]| HttpBinding::from_config(meta(pairs)).expect_err("invalid").to_string();
    assert!(err(&[]).contains("\"url\""));
    assert!(err(&[("url", "https://example.com")]).contains("https"));
    assert!(err(&[("url", "http://h"), ("maxResponseBodySize", "big")]).contains("maxResponseBodySize"));
    assert!(err(&[("url", "http://h"), ("securityToken", "t")]).contains("securityTokenHeader"));

    let url = format!("http://127.0.0.1:{}", support::free_port());
    let b = HttpBinding::from_config(meta(&[("url", &url), ("responseTimeout", "2s")])).expect("metadata");
    let start = Instant::now();
    let e = b.invoke(req("get", "/x", "")).await.expect_err("nothing listens");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert!(matches!(&e, ComponentError::Unavailable(m) if m.contains(&url)), "{e}");
}
