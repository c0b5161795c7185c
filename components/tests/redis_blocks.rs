//! lock.redis, sequencer.redis, configuration.redis and bindings.redis against Redis on
//! 127.0.0.1:6379: each passes its block's conformance suite, and the key layouts match daprd's.
#![cfg(feature = "redis")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use oxidecar_components::bindings::redis::RedisBinding;
use oxidecar_components::bindings::{self, BindingRequest, OutputBinding};
use oxidecar_components::configuration::redis::RedisConfigStore;
use oxidecar_components::configuration::{self, ConfigStore};
use oxidecar_components::lock::redis::RedisLockStore;
use oxidecar_components::lock::{self, LockStore};
use oxidecar_components::metadata::Metadata;
use oxidecar_components::sequencer::redis::RedisSequencer;
use oxidecar_components::sequencer::{self, Sequencer};
use oxidecar_components::{Component, Registry, load_resources};
use support::{REDIS, ResourcesDir, unique};

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

async fn direct() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{REDIS}")).expect("client");
    client.get_multiplexed_async_connection().await.expect("Redis must run on 127.0.0.1:6379")
}

#[tokio::test]
async fn lock_redis_passes_the_lock_conformance_suite() {
    let store: Arc<dyn LockStore> = Arc::new(RedisLockStore::from_config(meta(&[("redisHost", REDIS)])).expect("metadata"));
    if let Err(e) = lock::conformance::run(store, &unique("lock")).await {
        panic!("lock.redis conformance: {e}");
    }
}

#[tokio::test]
async fn lock_redis_uses_daprs_key_layout() {
    let app = unique("lockapp");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: redislock}}\nspec:\n  type: lock.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{REDIS}'}}\n  - {{name: redisPassword, value: ''}}\n"
    );
    let res = ResourcesDir::new(&yaml);
    let loaded = load_resources(std::slice::from_ref(&res.0), &app, &Registry::builtin()).await.expect("load");
    let Component::Lock(store) = &loaded.components[0].component else { panic!("not a lock store") };
    assert!(store.try_lock("order-1", "owner-a", Duration::from_secs(30)).await.expect("lock"));
    let mut r = direct().await;
    let key = format!("lock||{app}||order-1");
    let (owner, ttl): (Option<String>, i64) = redis::pipe().get(&key).pttl(&key).query_async(&mut r).await.expect("read");
    assert_eq!(owner.as_deref(), Some("owner-a"), "daprd reads the owner at {key}");
    assert!(ttl > 25_000 && ttl <= 30_000, "the lease is the key's expiry: {ttl} ms");
    // A lock daprd took is respected.
    let _: () = redis::cmd("SET").arg(format!("lock||{app}||taken")).arg("daprd-owner").arg("PX").arg(30_000).query_async(&mut r).await.expect("set");
    assert!(!store.try_lock("taken", "me", Duration::from_secs(5)).await.expect("lock"));
    let status = store.unlock("taken", "daprd-owner").await.expect("unlock");
    assert_eq!(status, lock::UnlockStatus::Success);
}

#[tokio::test]
async fn sequencer_redis_passes_the_sequencer_conformance_suite() {
    let seq: Arc<dyn Sequencer> = Arc::new(RedisSequencer::from_config(meta(&[("redisHost", REDIS)])).expect("metadata"));
    if let Err(e) = sequencer::conformance::run(seq, &unique("seq")).await {
        panic!("sequencer.redis conformance: {e}");
    }
}

#[tokio::test]
async fn configuration_redis_passes_the_configuration_conformance_suite() {
    let s = RedisConfigStore::from_config(meta(&[("redisHost", REDIS)])).expect("metadata");
    if let Err(e) = configuration::conformance::run(&s, &unique("cfg"), &HashMap::new()).await {
        panic!("configuration.redis conformance: {e}");
    }
    s.close().await;
}

#[tokio::test]
async fn configuration_redis_reads_and_follows_daprs_value_version_strings() {
    let s = RedisConfigStore::from_config(meta(&[("redisHost", REDIS)])).expect("metadata");
    let mut r = direct().await;
    let key = unique("dapr-cfg");
    // As an operator feeds daprd: SET key "value||version".
    let _: () = redis::cmd("SET").arg(&key).arg("blue||7").query_async(&mut r).await.expect("set");
    let got = s.get(std::slice::from_ref(&key)).await.expect("get");
    assert_eq!((got[&key].value.as_str(), got[&key].version.as_str()), ("blue", "7"));
    let mut sub = s.subscribe(vec![key.clone()], &HashMap::new()).await.expect("subscribe");
    let _: () = redis::cmd("SET").arg(&key).arg("green||8").query_async(&mut r).await.expect("set");
    let batch = tokio::time::timeout(Duration::from_secs(5), sub.updates.recv()).await.expect("delivered").expect("open");
    assert_eq!((batch[&key].value.as_str(), batch[&key].version.as_str()), ("green", "8"));
    // Our own writes keep the layout and count the version on.
    s.set(HashMap::from([(key.clone(), "red".to_string())])).await.expect("set");
    let raw: String = redis::cmd("GET").arg(&key).query_async(&mut r).await.expect("get");
    assert_eq!(raw, "red||9");
    // The store switched keyspace notifications on (additively).
    let flags: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events").query_async(&mut r).await.expect("config");
    assert!(flags[1].contains('K'), "{flags:?}");
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut r).await.expect("del");
    s.close().await;
}

#[tokio::test]
async fn bindings_redis_passes_the_bindings_conformance_suite_on_plain_keys() {
    let b: Arc<dyn OutputBinding> = Arc::new(RedisBinding::from_config(meta(&[("redisHost", REDIS)])).expect("metadata"));
    let key = unique("binding");
    let with_key = |op: &str, data: &'static str| BindingRequest {
        operation: op.into(),
        data: bytes::Bytes::from(data),
        metadata: HashMap::from([("key".to_string(), key.clone())]),
    };
    let fixture = bindings::conformance::Fixture {
        write: with_key("create", "payload"),
        read: with_key("get", ""),
        expected: bytes::Bytes::from("payload"),
        missing: Some((BindingRequest { operation: "get".into(), ..Default::default() }, "key")),
    };
    if let Err(e) = bindings::conformance::run(b.clone(), fixture).await {
        panic!("bindings.redis conformance: {e}");
    }
    // The key is Redis's own (daprd's layout): readable by any client, and deletable through us.
    let mut r = direct().await;
    let raw: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut r).await.expect("get");
    assert_eq!(raw.as_deref(), Some("payload"));
    let mut ttl = with_key("create", "short");
    ttl.metadata.insert("ttlInSeconds".into(), "60".into());
    b.invoke(ttl).await.expect("create with ttl");
    let left: i64 = redis::cmd("TTL").arg(&key).query_async(&mut r).await.expect("ttl");
    assert!(left > 50 && left <= 60, "ttlInSeconds is the key's expiry: {left}");
    b.invoke(with_key("delete", "")).await.expect("delete");
    assert_eq!(b.invoke(with_key("get", "")).await.expect("get").data, bytes::Bytes::new(), "a deleted key reads empty");
}
