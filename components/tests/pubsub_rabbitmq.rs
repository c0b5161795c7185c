//! `pubsub.rabbitmq` against the real RabbitMQ on loopback: the pub/sub conformance suite, metadata
//! errors, and an outage (a relay in front of the shared broker, cut and restored).
#![cfg(feature = "pubsub-rabbitmq")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use oxidecar_components::metadata::Metadata;
use oxidecar_components::pubsub::PubSub;
use oxidecar_components::pubsub::conformance::{self, Guarantees};
use oxidecar_components::pubsub::rabbitmq::{PUBLISH_TIMEOUT, RabbitMqPubSub};
use oxidecar_components::{BoxFuture, Registry, load_resources};
use support::{Relay, ResourcesDir, unique};

const AMQP: &str = "127.0.0.1:5672";

/// Durable queues that stay while their consumer is away, failed messages back on the queue.
fn component(addr: &str, consumer: &str) -> RabbitMqPubSub {
    let url = format!("amqp://guest:guest@{addr}");
    let m = [("connectionString", url.as_str()), ("consumerID", consumer), ("durable", "true"), ("deletedWhenUnused", "false"), ("requeueInFailure", "true"), ("reconnectWait", "1s")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RabbitMqPubSub::from_config(Metadata::new(m)).expect("valid metadata")
}

/// Deletes the queues and exchanges a test made (names start with `prefix`).
async fn cleanup(prefix: &str) {
    let Ok(out) = tokio::process::Command::new("rabbitmqctl").args(["-q", "list_queues", "name"]).output().await else { return };
    let Ok(conn) = lapin::Connection::connect(&format!("amqp://guest:guest@{AMQP}"), Default::default()).await else { return };
    let Ok(ch) = conn.create_channel().await else { return };
    for q in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(prefix)) {
        let _ = ch.queue_delete(q.trim().into(), Default::default()).await;
    }
}

#[tokio::test]
async fn passes_the_pubsub_conformance_suite() {
    let ns = unique("ps-rmq");
    let open = |consumer: String| Box::pin(async move { Ok(Arc::new(component(AMQP, &consumer)) as Arc<dyn PubSub>) }) as BoxFuture<_>;
    let result = conformance::run(&open, Guarantees { consumer_groups: true, durable: true }, &ns).await;
    cleanup(&ns).await;
    if let Err(e) = result {
        panic!("pubsub.rabbitmq conformance: {e}");
    }
}

#[tokio::test]
async fn bad_metadata_names_key_component_and_file() {
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: jobs}\nspec:\n  type: pubsub.rabbitmq\n  metadata:\n  - {name: connectionString, value: 'amqp://guest:guest@127.0.0.1:5672'}\n  - {name: exchangeKind, value: headers}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("bad kind").to_string();
    assert!(err.contains("exchangeKind") && err.contains("jobs") && err.contains("components.yaml"), "{err}");
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: jobs}\nspec:\n  type: pubsub.rabbitmq\n  metadata:\n  - {name: connectionString, value: 'amqp://guest:guest@127.0.0.1:5672'}\n  - {name: prefetch, value: '10'}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("unknown key").to_string();
    assert!(err.contains("prefetch") && err.contains("jobs"), "{err}");
}

#[tokio::test]
async fn outage_fails_publish_within_the_timeout_then_reconnects_without_loss() {
    let relay = Relay::start(AMQP).await;
    let topic = unique("psrmq-outage");
    let consumer = unique("psrmq-outage-group");
    let ps = component(&relay.addr(), &consumer);
    let other = component(AMQP, &unique("psrmq-other"));
    support::outage(&relay, &ps, &other, &topic, PUBLISH_TIMEOUT + Duration::from_secs(2)).await;
    ps.close().await;
    other.close().await;
    cleanup(&consumer).await;
}
