//! Dapr Resiliency YAML on the real binary, driven by the official Dapr Python SDK: invocation
//! retried on a flaky app until it succeeds, a timeout cutting a slow call with DEADLINE_EXCEEDED,
//! a circuit breaker that opens (calls fail fast without reaching the app) and closes again, state
//! store retry and timeout policies against a real Redis behind a relay the test controls, and a
//! bad Resiliency file (also a bad inbound policy reference) stopping start-up with a line naming
//! the file, resource and field. Inbound policies have their own tests: inbound_resiliency.rs.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use oxidecar_tests::*;
use tokio::net::{TcpListener, TcpStream};

fn python() -> String {
    std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| format!("{}/.cache/oxidecar-venv/bin/python", std::env::var("HOME").unwrap_or_default()))
}

/// The app the sidecar serves, with knobs: `/flaky` fails (500) while `flaky_left` > 0, `/slow`
/// takes 8 s, `/fragile` fails while `broken` is set. Every path counts its hits.
#[derive(Default)]
struct App {
    flaky_left: AtomicU64,
    flaky_hits: AtomicU64,
    slow_hits: AtomicU64,
    slow_done: AtomicU64,
    broken: AtomicBool,
    fragile_hits: AtomicU64,
}

async fn serve_app(app: Arc<App>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let status = match req.uri().path() {
                            "/flaky" => {
                                app.flaky_hits.fetch_add(1, Ordering::SeqCst);
                                let failing = app.flaky_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                                if failing { 500 } else { 200 }
                            }
                            "/slow" => {
                                app.slow_hits.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_secs(20)).await;
                                app.slow_done.fetch_add(1, Ordering::SeqCst);
                                200
                            }
                            "/fragile" => {
                                app.fragile_hits.fetch_add(1, Ordering::SeqCst);
                                if app.broken.load(Ordering::SeqCst) { 500 } else { 200 }
                            }
                            _ => 404,
                        };
                        let body = if status == 200 { "done" } else { "app failed" };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder().status(status).header("content-type", "text/plain").body(Full::new(Bytes::from(body))).expect("response"),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    port
}

/// A sidecar for app `checkout` with `resources` in its resources path.
struct Sidecar {
    _proxy: Proxy,
    grpc: u16,
    http: u16,
    _dir: TempDir,
}

async fn sidecar(app_port: Option<u16>, resources: &str) -> Sidecar {
    let dir = TempDir::new("resiliency");
    std::fs::write(dir.0.join("resources.yaml"), resources).expect("resources");
    let (grpc, http) = (free_port(), free_port());
    let (g, h, res) = (grpc.to_string(), http.to_string(), dir.0.display().to_string());
    let mut args = vec!["--app-id", "checkout", "--dapr-grpc-port", &g, "--dapr-http-port", &h, "--resources-path", &res];
    let port = app_port.map(|p| p.to_string());
    if let Some(p) = &port {
        args.extend(["--app-port", p]);
    }
    let proxy = Proxy::start_with_args(AdminPorts::new(), "", &args).await;
    Sidecar { _proxy: proxy, grpc, http, _dir: dir }
}

impl Sidecar {
    /// Runs a Python snippet with the SDK pointed at this sidecar; returns its stdout, failing the
    /// test with both outputs when the script fails.
    async fn python(&self, protocol: &str, script: &str) -> String {
        let out = tokio::process::Command::new(python())
            .arg("-c")
            .arg(script)
            .env("DAPR_GRPC_PORT", self.grpc.to_string())
            .env("DAPR_HTTP_PORT", self.http.to_string())
            .env("DAPR_API_METHOD_INVOCATION_PROTOCOL", protocol)
            .env("DAPR_HEALTH_TIMEOUT", "20")
            .env("PYTHONWARNINGS", "ignore")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("python with the Dapr SDK (run tests/run to create the venv)");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{protocol}: python failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
        stdout
    }
}

/// Python that prints one line per call: `ok <body>` or `err <grpc code or http status> <message>`.
const CALL: &str = r#"
import os, sys, time
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError, DaprInternalError
def call(d, method):
    try:
        r = d.invoke_method('checkout', method, data=b'', http_verb='GET')
        return 'ok ' + r.text()
    except DaprHttpError as e:
        return 'err http%s %s %s' % (e.status_code, e.error_code, e.message)
    except DaprInternalError as e:
        return 'err internal %s %s' % (e.error_code, e.message)
    except Exception as e:
        code = e.code().name if hasattr(e, 'code') else type(e).__name__
        details = e.details() if hasattr(e, 'details') else str(e)
        return 'err %s %s' % (code, details)
"#;

const RETRY_AND_TIMEOUT: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: invoke-policies}
scopes: [checkout]
spec:
  policies:
    timeouts: {quick: 500ms}
    retries:
      fixed: {policy: constant, duration: 20ms, maxRetries: 5}
  targets:
    apps:
      checkout: {timeout: quick, retry: fixed}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: not-for-us}
scopes: [someone-else]
spec:
  policies:
    retries:
      never: {maxRetries: 0}
  targets:
    apps:
      checkout: {retry: never}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_is_retried_on_a_flaky_app_and_cut_by_a_timeout() {
    let app = Arc::new(App::default());
    let s = sidecar(Some(serve_app(app.clone()).await), RETRY_AND_TIMEOUT).await;
    for protocol in ["grpc", "http"] {
        app.flaky_left.store(3, Ordering::SeqCst);
        app.flaky_hits.store(0, Ordering::SeqCst);
        let out = s.python(protocol, &format!("{CALL}\nwith DaprClient() as d:\n    print(call(d, 'flaky'))\n")).await;
        assert_eq!(out.trim(), "ok done", "{protocol}: retried until the app succeeded");
        assert_eq!(app.flaky_hits.load(Ordering::SeqCst), 4, "{protocol}: three failures and the success");
    }

    // A slow call: each attempt is cut at 500 ms (and retried, as Dapr does), so the caller hears
    // DEADLINE_EXCEEDED while the app is still working on the first attempt (it takes 20 s).
    let out = s.python("grpc", &format!("{CALL}\nwith DaprClient() as d:\n    print(call(d, 'slow'))\n")).await;
    assert!(out.starts_with("err DEADLINE_EXCEEDED"), "{out}");
    assert!(out.contains("timeout policy \"quick\""), "the message names the policy: {out}");
    assert_eq!(app.slow_hits.load(Ordering::SeqCst), 6, "one try and five retries");
    assert_eq!(app.slow_done.load(Ordering::SeqCst), 0, "the error came before any slow answer");
    let out = s.python("http", &format!("{CALL}\nwith DaprClient() as d:\n    print(call(d, 'slow'))\n")).await;
    assert!(out.starts_with("err http500 ERR_DIRECT_INVOKE") && out.contains("deadline exceeded"), "{out}");
    assert_eq!(app.slow_done.load(Ordering::SeqCst), 0);
}

const BREAKER: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: breaker}
spec:
  policies:
    circuitBreakers:
      appCB: {maxRequests: 1, timeout: 2s, trip: consecutiveFailures >= 3}
  targets:
    apps:
      checkout: {circuitBreaker: appCB}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_opens_fails_fast_and_closes_when_the_app_recovers() {
    let app = Arc::new(App::default());
    app.broken.store(true, Ordering::SeqCst);
    let s = sidecar(Some(serve_app(app.clone()).await), BREAKER).await;
    let out = s.python("grpc", &format!("{CALL}\nwith DaprClient() as d:\n    for _ in range(8):\n        print(call(d, 'fragile'))\n")).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    for l in &lines[..3] {
        assert!(l.starts_with("err") && l.contains("500"), "the app's own failures: {out}");
    }
    for l in &lines[3..] {
        assert!(l.starts_with("err UNAVAILABLE") && l.contains("circuit breaker \"appCB\" is open"), "fail fast once open: {out}");
    }
    assert_eq!(app.fragile_hits.load(Ordering::SeqCst), 3, "calls while open never reached the app");

    // The app recovers; after the breaker's 2 s timeout one trial call goes through and closes it.
    app.broken.store(false, Ordering::SeqCst);
    let script = format!(
        "{CALL}\nwith DaprClient() as d:\n    deadline = time.time() + 20\n    r = call(d, 'fragile')\n    while not r.startswith('ok') and time.time() < deadline:\n        assert 'circuit breaker' in r, r\n        time.sleep(0.1)\n        r = call(d, 'fragile')\n    print(r)\n    for _ in range(3):\n        print(call(d, 'fragile'))\n"
    );
    let out = s.python("http", &script).await;
    assert!(out.lines().all(|l| l == "ok done"), "closed again: {out}");
    assert_eq!(app.fragile_hits.load(Ordering::SeqCst), 3 + 4, "only the trial call and the three after it reached the app");
}

/// A TCP relay to the real Redis that resets the first `refuse` connections, or (when `stall`)
/// accepts connections and never answers.
struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

async fn relay(refuse: u64, stall: bool) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut down, _)) = listener.accept().await else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if stall {
                held.push(down);
                continue;
            }
            if n <= refuse {
                drop(down);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect("127.0.0.1:6379").await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    Relay { addr, accepted }
}

fn redis_store(name: &str, relay: &Relay) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: \"{}\"}}\n  - {{name: timeout, value: 20s}}\n  - {{name: readTimeout, value: 20s}}\n  - {{name: keyPrefix, value: none}}\n---\n",
        relay.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_store_retry_and_timeout_policies() {
    let (flaky, plain, stalled) = (relay(4, false).await, relay(4, false).await, relay(0, true).await);
    let resources = format!(
        "{}{}{}{}",
        redis_store("flakystore", &flaky),
        redis_store("plainstore", &plain),
        redis_store("slowstore", &stalled),
        r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: store-policies}
spec:
  policies:
    timeouts: {short: 500ms}
    retries:
      patient: {policy: exponential, maxInterval: 100ms, maxRetries: 10}
  targets:
    components:
      flakystore: {outbound: {retry: patient}}
      slowstore: {outbound: {timeout: short}}
"#
    );
    let s = sidecar(None, &resources).await;
    let key = format!("resiliency-{}", std::process::id());
    let script = format!(
        r#"
import time
from dapr.clients import DaprClient
with DaprClient() as d:
    d.save_state('flakystore', '{key}', 'kept')
    print('flaky', d.get_state('flakystore', '{key}').data.decode())
    try:
        d.save_state('plainstore', '{key}', 'x')
        print('plain ok')
    except Exception as e:
        print('plain err', e.code().name)
    started = time.time()
    try:
        d.save_state('slowstore', '{key}', 'x')
        print('slow ok')
    except Exception as e:
        print('slow err', e.code().name, round(time.time() - started, 1), e.details())
"#
    );
    let out = s.python("grpc", &script).await;
    assert!(out.contains("flaky kept"), "the retry policy rode out the refused connections: {out}");
    assert!(flaky.accepted.load(Ordering::SeqCst) > 4, "refused connections were retried");
    assert!(out.contains("plain err UNAVAILABLE"), "without a policy the same failure reaches the app: {out}");
    let slow = out.lines().find(|l| l.starts_with("slow")).unwrap_or_default();
    assert!(slow.starts_with("slow err DEADLINE_EXCEEDED") && slow.contains("timeout policy \"short\""), "{out}");
    assert!(stalled.accepted.load(Ordering::SeqCst) >= 1, "the stalled store was reached");
    drop(s);
}

#[tokio::test]
async fn bad_resiliency_files_stop_start_up_naming_file_resource_and_field() {
    let cases = [
        (BREAKER.replace("circuitBreaker: appCB", "circuitBreaker: appCb"), "spec.targets.apps.checkout.circuitBreaker: unknown circuit breaker policy \"appCb\" (defined: appCB)"),
        (BREAKER.replace("timeout: 2s", "timeout: 2 seconds"), "spec.policies.circuitBreakers.appCB.timeout: \"2 seconds\" has an unknown unit"),
        (BREAKER.replace("consecutiveFailures >= 3", "failures >= 3"), "spec.policies.circuitBreakers.appCB.trip: \"failures >= 3\": unknown count \"failures\""),
        (
            BREAKER.replace("apps:\n      checkout: {circuitBreaker: appCB}", "components:\n      pubsub: {inbound: {circuitBreaker: appCb}}"),
            "spec.targets.components.pubsub.inbound.circuitBreaker: unknown circuit breaker policy \"appCb\" (defined: appCB)",
        ),
    ];
    for (yaml, want) in cases {
        let dir = TempDir::new("bad-resiliency");
        let file = dir.0.join("res.yaml");
        std::fs::write(&file, &yaml).expect("write");
        let config = dir.0.join("mesh.yaml");
        std::fs::write(&config, AdminPorts::new().yaml()).expect("write config");
        let out = tokio::process::Command::new(binary())
            .args(["run", "--config"])
            .arg(&config)
            .args(["--app-id", "checkout", "--resources-path"])
            .arg(&file)
            .args(["--dapr-grpc-port", &free_port().to_string(), "--dapr-http-port", &free_port().to_string()])
            .output()
            .await
            .expect("run oxidecar");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()) && stderr.contains("resiliency \"breaker\"") && stderr.contains(want), "{stderr}\nwanted: {want}");
    }
}
