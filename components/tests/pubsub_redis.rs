//! `pubsub.redis` against real Redis on loopback: the pub/sub conformance suite, daprd's stream
//! layout, metadata errors, and an outage (a relay in front of the shared server, cut and restored).
#![cfg(feature = "pubsub-redis")]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oxidecar_components::metadata::Metadata;
use oxidecar_components::pubsub::conformance::{self, Guarantees};
use oxidecar_components::pubsub::redis::RedisPubSub;
use oxidecar_components::pubsub::PubSub;
use oxidecar_components::{BoxFuture, Component, Registry, load_resources};
use support::{Relay, ResourcesDir, collector, msg, received, unique};
use tokio_util::sync::CancellationToken;

const REDIS: &str = "127.0.0.1:6379";

fn component(host: &str, consumer: &str, extra: &[(&str, &str)]) -> RedisPubSub {
    let mut m: std::collections::BTreeMap<String, String> =
        [("redisHost", host), ("consumerID", consumer), ("processingTimeout", "1s"), ("redeliverInterval", "200ms")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    m.retain(|_, v| !v.is_empty());
    RedisPubSub::from_config(Metadata::new(m)).expect("valid metadata")
}

async fn direct() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{REDIS}")).expect("client");
    client.get_multiplexed_async_connection().await.expect("Redis must run on 127.0.0.1:6379")
}

async fn delete_streams(prefix: &str) {
    let mut r = direct().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut r).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query_async(&mut r).await;
    }
}

#[tokio::test]
async fn passes_the_pubsub_conformance_suite() {
    let ns = unique("ps-redis");
    let open = |consumer: String| {
        Box::pin(async move { Ok(Arc::new(component(REDIS, &consumer, &[])) as Arc<dyn PubSub>) }) as BoxFuture<_>
    };
    let result = conformance::run(&open, Guarantees { consumer_groups: true, durable: true }, &ns).await;
    delete_streams(&ns).await;
    if let Err(e) = result {
        panic!("pubsub.redis conformance: {e}");
    }
}

#[tokio::test]
async fn daprd_stream_layout_both_ways() {
    let topic = unique("ps-redis-layout");
    let ps = component(REDIS, &unique("layout-group"), &[]);
    let (h, got) = collector();
    ps.subscribe(&topic, h, CancellationToken::new()).await.expect("subscribe");
    ps.publish(msg(&topic, "from-oxidecar")).await.expect("publish");
    let mut r = direct().await;
    // daprd reads the `data` field of each entry.
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE").arg(&topic).arg("-").arg("+").query_async(&mut r).await.expect("xrange");
    assert_eq!(entries.first().and_then(|(_, f)| f.get("data")).map(String::as_str), Some("from-oxidecar"));
    // ... and writes entries the same way.
    let _: String = redis::cmd("XADD").arg(&topic).arg("*").arg("data").arg("from-daprd").query_async(&mut r).await.expect("xadd");
    assert!(received(&got, &["from-oxidecar", "from-daprd"]).await, "{:?}", got.lock().expect("lock"));
    ps.close().await;
    delete_streams(&topic).await;
}

#[tokio::test]
async fn component_file_defaults_the_consumer_group_to_the_app_id_and_names_bad_keys() {
    let res = ResourcesDir::new(&format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: orders}}\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{REDIS}'}}\n  - {{name: redisPassword, value: ''}}\n"
    ));
    let app = unique("psredis-app");
    let loaded = load_resources(std::slice::from_ref(&res.0), &app, &Registry::builtin()).await.expect("load");
    let Component::PubSub(ps) = &loaded.components[0].component else { panic!("not a pubsub") };
    let topic = unique("ps-redis-group");
    let (h, _) = collector();
    ps.subscribe(&topic, h, CancellationToken::new()).await.expect("subscribe");
    let mut r = direct().await;
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO").arg("GROUPS").arg(&topic).query_async(&mut r).await.expect("xinfo");
    let names: Vec<String> = groups.iter().filter_map(|g| g.get("name")).map(|v| redis::from_redis_value::<String>(v.clone()).unwrap_or_default()).collect();
    assert_eq!(names, vec![app.clone()], "the consumer group is the app id");
    ps.close().await;
    delete_streams(&topic).await;

    let res = ResourcesDir::new("kind: Component\nmetadata: {name: orders}\nspec:\n  type: pubsub.redis\n  metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: processingTimout, value: 10s}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("unknown key").to_string();
    assert!(err.contains("processingTimout") && err.contains("orders") && err.contains("components.yaml"), "{err}");
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: orders}\nspec:\n  type: pubsub.redis\n  metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: redeliverInterval, value: often}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("bad value").to_string();
    assert!(err.contains("redeliverInterval") && err.contains("often") && err.contains("orders"), "{err}");
}

#[tokio::test]
async fn outage_fails_publish_within_the_timeout_then_reconnects_without_loss() {
    let relay = Relay::start(REDIS).await;
    let topic = unique("ps-redis-outage");
    let timeouts: &[(&str, &str)] = &[("readTimeout", "500ms"), ("dialTimeout", "500ms"), ("timeout", "1s")];
    let ps = component(&relay.addr(), &unique("outage-group"), timeouts);
    let other = component(REDIS, &unique("other"), &[]);
    support::outage(&relay, &ps, &other, &topic, Duration::from_secs(3)).await;
    ps.close().await;
    other.close().await;
    delete_streams(&topic).await;
}
