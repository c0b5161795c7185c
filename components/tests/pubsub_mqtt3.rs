//! `pubsub.mqtt3` against the real Mosquitto on loopback: the pub/sub conformance suite (durable
//! sessions; MQTT 3 has no consumer groups), metadata errors, and an outage (a relay in front of the
//! shared broker, cut and restored).
#![cfg(feature = "pubsub-mqtt3")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxidecar_components::metadata::Metadata;
use oxidecar_components::pubsub::PubSub;
use oxidecar_components::pubsub::conformance::{self, Guarantees};
use oxidecar_components::pubsub::mqtt3::{Mqtt3PubSub, PUBLISH_TIMEOUT};
use oxidecar_components::{BoxFuture, Registry, load_resources};
use support::{Relay, ResourcesDir, msg, unique};

const MQTT: &str = "127.0.0.1:1883";

fn component(addr: &str, client_id: &str, extra: &[(&str, &str)]) -> Mqtt3PubSub {
    let url = format!("tcp://{addr}");
    let m = [("url", url.as_str()), ("consumerID", client_id)].iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Mqtt3PubSub::from_config(Metadata::new(m)).expect("valid metadata")
}

/// Ends the persistent sessions a test left in the shared broker (a clean-session connect drops them).
async fn forget_sessions(ids: &[String]) {
    for id in ids {
        let ps = component(MQTT, id, &[("cleanSession", "true")]);
        let _ = ps.publish(msg("oxidecar-test-cleanup", "x")).await;
        ps.close().await;
    }
}

#[tokio::test]
async fn passes_the_pubsub_conformance_suite() {
    let ns = unique("ps-mqtt");
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let open = move |client_id: String| {
        seen.lock().expect("lock").push(client_id.clone());
        Box::pin(async move { Ok(Arc::new(component(MQTT, &client_id, &[])) as Arc<dyn PubSub>) }) as BoxFuture<_>
    };
    let result = conformance::run(&open, Guarantees { consumer_groups: false, durable: true }, &ns).await;
    let ids = ids.lock().expect("lock").clone();
    forget_sessions(&ids).await;
    if let Err(e) = result {
        panic!("pubsub.mqtt3 conformance: {e}");
    }
}

#[tokio::test]
async fn bad_metadata_names_key_component_and_file() {
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: telemetry}\nspec:\n  type: pubsub.mqtt3\n  metadata:\n  - {name: url, value: 'tcp://127.0.0.1:1883'}\n  - {name: qos, value: '5'}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("bad qos").to_string();
    assert!(err.contains("qos") && err.contains("telemetry") && err.contains("components.yaml"), "{err}");
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: telemetry}\nspec:\n  type: pubsub.mqtt3\n  metadata:\n  - {name: url, value: 'ssl://user:secret@127.0.0.1:8883'}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("tls").to_string();
    assert!(err.contains("url") && err.contains("TLS") && !err.contains("secret"), "{err}");
}

#[tokio::test]
async fn outage_fails_publish_within_the_timeout_then_reconnects_without_loss() {
    let relay = Relay::start(MQTT).await;
    let topic = unique("psmqtt-outage");
    let (id, other_id) = (unique("outage"), unique("other"));
    let ps = component(&relay.addr(), &id, &[]);
    let other = component(MQTT, &other_id, &[]);
    support::outage(&relay, &ps, &other, &topic, PUBLISH_TIMEOUT + Duration::from_secs(2)).await;
    ps.close().await;
    other.close().await;
    forget_sessions(&[id, other_id]).await;
}
