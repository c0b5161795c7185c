//! `pubsub.jetstream` against a real NATS server with JetStream on loopback: the pub/sub
//! conformance suite, metadata errors, and an outage (a relay in front of the shared server, cut
//! and restored).
#![cfg(feature = "pubsub-jetstream")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oxidecar_components::metadata::Metadata;
use oxidecar_components::pubsub::conformance::{self, Guarantees};
use oxidecar_components::pubsub::jetstream::{JetStreamPubSub, PUBLISH_TIMEOUT};
use oxidecar_components::pubsub::PubSub;
use oxidecar_components::{BoxFuture, Registry, load_resources};
use support::{Relay, ResourcesDir, collector, msg, received, unique};
use tokio_util::sync::CancellationToken;

const NATS: &str = "127.0.0.1:4222";

fn component(addr: &str, consumer: &str, extra: &[(&str, &str)]) -> JetStreamPubSub {
    let url = format!("nats://{addr}");
    let m = [("natsURL", url.as_str()), ("consumerID", consumer), ("ackWait", "2s"), ("memoryStorage", "true")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    JetStreamPubSub::from_config(Metadata::new(m)).expect("valid metadata")
}

/// Removes the streams a test created (their names start with the sanitized prefix).
async fn delete_streams(prefix: &str) {
    let Ok(client) = async_nats::connect(NATS).await else { return };
    let js = async_nats::jetstream::new(client);
    let prefix = prefix.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_");
    let names: Vec<String> = js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
    for n in names.iter().filter(|n| n.starts_with(&prefix)) {
        let _ = js.delete_stream(n).await;
    }
}

#[tokio::test]
async fn passes_the_pubsub_conformance_suite() {
    let ns = unique("ps-js");
    let open = |consumer: String| {
        Box::pin(async move { Ok(Arc::new(component(NATS, &consumer, &[("concurrency", "parallel")])) as Arc<dyn PubSub>) }) as BoxFuture<_>
    };
    let result = conformance::run(&open, Guarantees { consumer_groups: true, durable: true }, &ns).await;
    delete_streams(&ns).await;
    if let Err(e) = result {
        panic!("pubsub.jetstream conformance: {e}");
    }
}

#[tokio::test]
async fn named_stream_is_created_then_extended_and_metadata_travels_as_headers() {
    let stream = unique("psjs-named");
    let (t1, t2) = (format!("{stream}-a"), format!("{stream}-b"));
    let ps = component(NATS, &unique("named"), &[("streamName", &stream)]);
    let (h, got) = collector();
    ps.subscribe(&t1, h.clone(), CancellationToken::new()).await.expect("subscribe");
    ps.subscribe(&t2, h, CancellationToken::new()).await.expect("subscribe");
    let mut m = msg(&t2, "two");
    m.metadata.insert("rawPayload".into(), "true".into());
    ps.publish(msg(&t1, "one")).await.expect("publish");
    ps.publish(m).await.expect("publish");
    assert!(received(&got, &["one", "two"]).await, "{:?}", got.lock().expect("lock"));
    let js = async_nats::jetstream::new(async_nats::connect(NATS).await.expect("connect"));
    let mut st = js.get_stream(&stream).await.expect("the named stream exists");
    let subjects = st.info().await.expect("info").config.subjects.clone();
    assert_eq!(subjects, vec![t1.clone(), t2.clone()]);
    let raw = st.get_last_raw_message_by_subject(&t2).await.expect("stored");
    assert_eq!(raw.headers.get("rawPayload").map(|v| v.to_string()), Some("true".to_string()));
    ps.close().await;
    let _ = js.delete_stream(&stream).await;
}

#[tokio::test]
async fn bad_metadata_names_key_component_and_file() {
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: events}\nspec:\n  type: pubsub.jetstream\n  metadata:\n  - {name: natsURL, value: 'nats://127.0.0.1:4222'}\n  - {name: ackPolicy, value: none}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("bad value").to_string();
    assert!(err.contains("ackPolicy") && err.contains("events") && err.contains("components.yaml"), "{err}");
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: events}\nspec:\n  type: pubsub.jetstream\n  metadata:\n  - {name: natsUrl, value: 'nats://127.0.0.1:4222'}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("missing natsURL").to_string();
    assert!(err.contains("natsURL") && err.contains("events"), "{err}");
}

#[tokio::test]
async fn outage_fails_publish_within_the_timeout_then_reconnects_without_loss() {
    let relay = Relay::start(NATS).await;
    let topic = unique("psjs-outage");
    let ps = component(&relay.addr(), &unique("outage"), &[]);
    let other = component(NATS, &unique("other"), &[]);
    support::outage(&relay, &ps, &other, &topic, PUBLISH_TIMEOUT + Duration::from_secs(2)).await;
    ps.close().await;
    other.close().await;
    delete_streams(&topic).await;
}
