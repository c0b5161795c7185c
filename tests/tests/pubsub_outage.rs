//! A pub/sub backend that goes away under the real `oxidecar` binary: `pubsub.redis` reaches Redis
//! through a relay the test cuts and restores (the server itself is never stopped), a Dapr Python
//! SDK app subscribes, and the SDK publishes (tests/python/outage_check.py, one phase per state of
//! the relay). While Redis is unreachable, PublishEvent fails fast with UNAVAILABLE naming the
//! component and the sidecar keeps serving; once it is back, publishes succeed, the subscription
//! resumes, and no acknowledged message is lost.

use std::process::Output;
use std::time::Duration;

use oxidecar_tests::relay::Relay;
use oxidecar_tests::sdk::{KillOnDrop, Sidecar, assert_ok};
use oxidecar_tests::{free_port, http_get};

/// The data of every publish a phase saw acknowledged.
fn acked(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.strip_prefix("ACKED ")).map(str::to_string).collect()
}

fn component(relay: &Relay) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: redispubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: '{}'}}
  - {{name: timeout, value: 1s}}
  - {{name: dialTimeout, value: 500ms}}
  - {{name: readTimeout, value: 500ms}}
  - {{name: processingTimeout, value: 2s}}
  - {{name: redeliverInterval, value: 1s}}
",
        relay.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_outage_fails_fast_and_loses_no_acknowledged_message() {
    let relay = Relay::start("127.0.0.1:6379").await;
    let topic = format!("outage-{}-{}", std::process::id(), free_port());
    let port = free_port();
    let s = Sidecar::start_with_resources("outage-app", Some((port, "grpc")), &[], &component(&relay)).await;
    let app = KillOnDrop(s.command("outage_app.py").env("APP_PORT", port.to_string()).env("TOPIC", &topic).spawn().expect("spawn app"));

    let before = s.run("outage_check.py", &[("TOPIC", &topic), ("PHASE", "before")]).await;
    assert_ok("outage_check.py before", &before);
    let mut all = acked(&before);
    assert_eq!(all.len(), 10, "publishes acknowledged before the outage: {all:?}");

    relay.cut();
    let down = s.run("outage_check.py", &[("TOPIC", &topic), ("PHASE", "down")]).await;
    assert_ok("outage_check.py down", &down);
    assert!(acked(&down).is_empty(), "a publish was acknowledged while Redis was unreachable: {:?}", acked(&down));
    let (status, _) = http_get(&format!("http://127.0.0.1:{}/ready", s.proxy.ports.admin)).await.expect("admin");
    assert_eq!(status, 200, "the sidecar stays ready while a backend is down");

    relay.restore();
    let after = s.run("outage_check.py", &[("TOPIC", &topic), ("PHASE", "after"), ("ACKED", &all.join(","))]).await;
    assert_ok("outage_check.py after", &after);
    all.extend(acked(&after));
    assert!(all.len() >= 21, "acknowledged: {all:?}");

    // The stream goes once nothing reads it any more.
    drop(app);
    drop(s);

    let redis = redis::Client::open("redis://127.0.0.1:6379").expect("client");
    if let Ok(mut r) = tokio::time::timeout(Duration::from_secs(5), redis.get_multiplexed_async_connection()).await.expect("redis answers") {
        let _: Result<i64, _> = redis::cmd("DEL").arg(&topic).query_async(&mut r).await;
    }
}
