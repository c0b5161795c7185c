//! Inbound Resiliency policies (`targets.components.<name>.inbound`) on the real binary, with a
//! subscriber built on the official Dapr Python SDK (tests/python/inbound_app.py, dapr-ext-grpc)
//! that logs every delivery attempt with its arrival time: a failing delivery is retried at the
//! policy's spacing until the app takes it, and once the policy gives up the message goes back to
//! the broker, which redelivers it (nothing is lost); a slow app is cut by the timeout and retried;
//! DROP is never retried; an input binding event is retried; a circuit breaker stops deliveries
//! from its component after the trip and lets them through again once a trial after its timeout
//! succeeds, without losing the messages that arrived while it was open. An HTTP subscriber
//! answering 5xx is retried the same way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use oxidecar_tests::sdk::{KillOnDrop, Sidecar, assert_ok};
use oxidecar_tests::{TempDir, eventually, free_port, http_get, metric_sum};
use serde::Deserialize;
use tokio::net::TcpListener;

const RESOURCES: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cbpubsub}
spec: {type: pubsub.in-memory, version: v1}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cron-inbound}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {name: schedule, value: '@every 2s'}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: inbound}
spec:
  policies:
    timeouts: {delivery: 500ms}
    retries:
      steady: {policy: constant, duration: 300ms, maxRetries: 5}
    circuitBreakers:
      appCB: {maxRequests: 1, timeout: 5s, trip: consecutiveFailures >= 3}
  targets:
    components:
      pubsub: {inbound: {timeout: delivery, retry: steady}}
      cron-inbound: {inbound: {retry: steady}}
      cbpubsub: {inbound: {circuitBreaker: appCB}}
"#;

/// One delivery attempt as the app logged it.
#[derive(Debug, Clone, Deserialize)]
struct Attempt {
    kind: String,
    topic: String,
    data: String,
    /// Arrival, seconds since the epoch.
    t: f64,
    answer: String,
}

/// The sidecar, its app and the app's attempt log.
struct Setup {
    s: Sidecar,
    _app: KillOnDrop,
    log: PathBuf,
    broken: PathBuf,
    _dir: TempDir,
}

async fn setup(app_id: &str) -> Setup {
    let dir = TempDir::new("inbound");
    let (log, broken) = (dir.0.join("attempts.jsonl"), dir.0.join("BROKEN"));
    let port = free_port();
    let s = Sidecar::start_with_resources(app_id, Some((port, "grpc")), &[], RESOURCES).await;
    let app = KillOnDrop(
        s.command("inbound_app.py")
            .env("APP_PORT", port.to_string())
            .env("LOG", &log)
            .env("BROKEN", &broken)
            .spawn()
            .expect("spawn app"),
    );
    // The in-memory broker keeps messages only for topics someone subscribed to: wait until the
    // sidecar has read the app's subscriptions and subscribed.
    let metadata = format!("http://127.0.0.1:{}/v1.0/metadata", s.http);
    let subscribed = eventually(Duration::from_secs(30), || async {
        let (_, body) = http_get(&metadata).await.ok()?;
        (body.contains("\"fragile\"") && body.contains("\"stubborn\"")).then_some(())
    })
    .await;
    assert!(
        subscribed.is_some(),
        "the sidecar never subscribed for the app"
    );
    Setup {
        s,
        _app: app,
        log,
        broken,
        _dir: dir,
    }
}

impl Setup {
    async fn publish(&self, pubsub: &str, topic: &str, data: &[&str]) {
        let out = self
            .s
            .run(
                "inbound_publish.py",
                &[
                    ("PUBSUB", pubsub),
                    ("TOPIC", topic),
                    ("DATA", &data.join(",")),
                ],
            )
            .await;
        assert_ok("inbound_publish.py", &out);
    }

    /// The attempts logged so far for `topic` (and `data`, when given), in arrival order.
    fn attempts(&self, topic: &str, data: Option<&str>) -> Vec<Attempt> {
        read_log(&self.log)
            .into_iter()
            .filter(|a| a.topic == topic && data.is_none_or(|d| a.data == d))
            .collect()
    }

    /// Waits until `topic`/`data` has a successful attempt; all its attempts then.
    async fn until_delivered(
        &self,
        topic: &str,
        data: Option<&str>,
        within: Duration,
    ) -> Vec<Attempt> {
        let done = eventually(within, || async {
            let a = self.attempts(topic, data);
            a.iter().any(|a| a.answer == "success").then_some(a)
        })
        .await;
        done.unwrap_or_else(|| {
            panic!(
                "{topic}/{data:?} never delivered; attempts: {:#?}",
                self.attempts(topic, data)
            )
        })
    }
}

fn read_log(path: &Path) -> Vec<Attempt> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

/// Seconds between consecutive attempts.
fn gaps(attempts: &[Attempt]) -> Vec<f64> {
    attempts.windows(2).map(|w| w[1].t - w[0].t).collect()
}

fn answers(attempts: &[Attempt]) -> Vec<&str> {
    attempts.iter().map(|a| a.answer.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_retry_and_timeout_policies_wrap_each_delivery() {
    let t = setup("inbound-app").await;
    t.publish("pubsub", "flaky", &["f-1"]).await;
    t.publish("pubsub", "slow", &["s-1"]).await;
    t.publish("pubsub", "dropped", &["d-1"]).await;
    t.publish("pubsub", "stubborn", &["st-1"]).await;

    // Three failures (RETRY, an exception, RETRY), each retried after the policy's constant 300 ms
    // (oxidecar's built-in retries would wait 100, 200, then 400 ms).
    let flaky = t
        .until_delivered("flaky", Some("f-1"), Duration::from_secs(15))
        .await;
    assert_eq!(
        answers(&flaky),
        ["fail", "fail", "fail", "success"],
        "{flaky:#?}"
    );
    for gap in gaps(&flaky) {
        assert!(
            (0.28..1.0).contains(&gap),
            "retried {gap:.3}s after the previous attempt, not at the policy's 300 ms: {flaky:#?}"
        );
    }

    // The first attempt takes the app 3 s: the 500 ms timeout cuts it and the retry, 300 ms
    // later, gets the message through long before the slow attempt would have ended.
    let slow = t
        .until_delivered("slow", Some("s-1"), Duration::from_secs(15))
        .await;
    assert_eq!(answers(&slow), ["slow", "success"], "{slow:#?}");
    let gap = gaps(&slow)[0];
    assert!(
        (0.75..1.6).contains(&gap),
        "timeout (0.5 s) plus wait (0.3 s), got {gap:.3}s: {slow:#?}"
    );

    // The policy allows six attempts; the message fails eight times, so after the sixth it goes
    // back to the broker, which redelivers it, and a second run of the policy gets it through.
    let stubborn = t
        .until_delivered("stubborn", Some("st-1"), Duration::from_secs(20))
        .await;
    assert_eq!(
        stubborn.len(),
        9,
        "nacked after six attempts, redelivered by the broker, delivered at the ninth: {stubborn:#?}"
    );
    assert_eq!(answers(&stubborn).last(), Some(&"success"));

    // Input binding events get the binding's policy: the first event fails twice and is retried
    // (without the policy the next event would only come with the next tick, 2 s later).
    let cron = t
        .until_delivered("cron-inbound", None, Duration::from_secs(15))
        .await;
    assert!(cron.iter().all(|a| a.kind == "binding"));
    assert_eq!(
        answers(&cron)[..3],
        ["fail", "fail", "success"],
        "{cron:#?}"
    );
    for gap in &gaps(&cron)[..2] {
        assert!(
            (0.28..1.0).contains(gap),
            "binding retried at the policy's spacing, got {gap:.3}s: {cron:#?}"
        );
    }

    // DROP is the app's answer, never retried.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dropped = t.attempts("dropped", None);
    assert_eq!(answers(&dropped), ["drop"], "{dropped:#?}");

    let m = t.s.proxy.metrics().await;
    let count = |topic: &str, outcome: &str| {
        metric_sum(
            &m,
            "oxidecar_pubsub_deliveries_total",
            &[("topic", topic), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (count("flaky", "delivered"), count("dropped", "dropped")),
        (1.0, 1.0),
        "{m}"
    );
    assert_eq!(
        (count("stubborn", "failed"), count("stubborn", "delivered")),
        (1.0, 1.0),
        "one exhausted policy run, then the delivery: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_circuit_breaker_stops_deliveries_and_resumes_them() {
    let t = setup("inbound-cb-app").await;
    std::fs::write(&t.broken, "").expect("flag");
    t.publish("cbpubsub", "fragile", &["c-1"]).await;

    // No retry policy: each failure sends the message back to the in-memory broker, which offers
    // it again 200 ms later. The third failure in a row opens the breaker.
    let tripped = eventually(Duration::from_secs(15), || async {
        let a = t.attempts("fragile", None);
        (a.len() >= 3).then_some(a)
    })
    .await
    .expect("three failed deliveries");
    assert_eq!(answers(&tripped), ["fail"; 3], "{tripped:#?}");
    let opened_at = tripped[2].t;

    // While it is open nothing reaches the app, also not messages published meanwhile.
    t.publish("cbpubsub", "fragile", &["c-2", "c-3"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let while_open = t.attempts("fragile", None);
    assert_eq!(
        while_open.len(),
        3,
        "deliveries while the breaker is open: {while_open:#?}"
    );

    // The app recovers before the breaker's 5 s timeout; the first trial after it succeeds and
    // closes the breaker, and every message (none lost) is delivered.
    std::fs::remove_file(&t.broken).expect("unflag");
    let all = eventually(Duration::from_secs(15), || async {
        let a = t.attempts("fragile", None);
        ["c-1", "c-2", "c-3"]
            .iter()
            .all(|d| a.iter().any(|a| a.data == *d && a.answer == "success"))
            .then_some(a)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "not every message was delivered: {:#?}",
            t.attempts("fragile", None)
        )
    });
    let trial = &all[3];
    assert_eq!(trial.answer, "success", "{all:#?}");
    assert!(
        trial.t - opened_at >= 4.9,
        "the trial came {:.3}s after the breaker opened, before its 5 s timeout: {all:#?}",
        trial.t - opened_at
    );
    assert_eq!(
        all.len(),
        6,
        "three failures, then each message once: {all:#?}"
    );

    let m = t.s.proxy.metrics().await;
    let refused = metric_sum(
        &m,
        "oxidecar_pubsub_deliveries_total",
        &[("pubsub", "cbpubsub"), ("outcome", "refused")],
    );
    assert!(
        refused >= 1.0,
        "messages the open breaker sent back to the broker are counted: {m}"
    );
}

/// An HTTP subscriber (programmatic subscription to pubsub/httpflaky at /orders) answering 503
/// to the first two deliveries; it records when each POST arrived.
async fn http_app(hits: Arc<Mutex<Vec<Instant>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let hits = hits.clone();
                        async move {
                            let (status, body) = match (req.method().as_str(), req.uri().path()) {
                                ("GET", "/dapr/subscribe") => (
                                    200,
                                    r#"[{"pubsubname":"pubsub","topic":"httpflaky","route":"/orders"}]"#,
                                ),
                                ("POST", "/orders") => {
                                    let mut hits = hits.lock().expect("hits");
                                    hits.push(Instant::now());
                                    if hits.len() <= 2 {
                                        (503, "busy")
                                    } else {
                                        (200, r#"{"status":"SUCCESS"}"#)
                                    }
                                }
                                _ => (404, ""),
                            };
                            let resp = http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)));
                            Ok::<_, std::convert::Infallible>(resp.expect("response"))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_subscriber_answering_5xx_is_retried_by_the_inbound_policy() {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let port = http_app(hits.clone()).await;
    let s = Sidecar::start_with_resources("inbound-http-app", Some((port, "http")), &[], RESOURCES)
        .await;
    let metadata = format!("http://127.0.0.1:{}/v1.0/metadata", s.http);
    let subscribed = eventually(Duration::from_secs(30), || async {
        http_get(&metadata)
            .await
            .ok()
            .filter(|(_, b)| b.contains("\"httpflaky\""))
    })
    .await;
    assert!(
        subscribed.is_some(),
        "the sidecar never subscribed for the app"
    );
    let out = s
        .run(
            "inbound_publish.py",
            &[
                ("PUBSUB", "pubsub"),
                ("TOPIC", "httpflaky"),
                ("DATA", "h-1"),
            ],
        )
        .await;
    assert_ok("inbound_publish.py", &out);
    let delivered = eventually(Duration::from_secs(15), || async {
        let h = hits.lock().expect("hits").clone();
        (h.len() >= 3).then_some(h)
    })
    .await
    .expect("three POSTs");
    for w in delivered.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (Duration::from_millis(280)..Duration::from_secs(1)).contains(&gap),
            "POST retried after {gap:?}, not at the policy's 300 ms"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        hits.lock().expect("hits").len(),
        3,
        "two 503s, then the success; nothing after"
    );
}
