//! `state.redis` against real Redis on loopback: the conformance suite on 127.0.0.1:6379, Dapr's key
//! and hash layout both ways, metadata errors, and a backend that stops and comes back (its own
//! `redis-server` on a free port).
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxidecar_components::metadata::Metadata;
use oxidecar_components::state::redis::RedisStateStore;
use oxidecar_components::state::{SetRequest, StateStore, conformance};
use oxidecar_components::{Component, ComponentError, Registry, load_resources};
use redis::AsyncCommands;

mod support;

use support::{REDIS, ResourcesDir, unique};

fn store(host: &str, timeout: &str) -> RedisStateStore {
    let m = Metadata::new([("redisHost".to_string(), host.to_string()), ("timeout".to_string(), timeout.to_string())].into());
    RedisStateStore::from_config(m).expect("valid metadata")
}

async fn direct() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{REDIS}")).expect("client");
    client.get_multiplexed_async_connection().await.expect("Redis must run on 127.0.0.1:6379")
}

fn state_store(c: &Component) -> Arc<dyn StateStore> {
    match c {
        Component::State(s) => s.clone(),
        other => panic!("expected a state store, got {other:?}"),
    }
}

#[tokio::test]
async fn passes_the_state_conformance_suite() {
    let s = store(REDIS, "2s");
    if let Err(e) = conformance::run(&s, &unique("conf")).await {
        panic!("state.redis conformance: {e}");
    }
}

#[tokio::test]
async fn dapr_key_and_hash_layout_both_ways() {
    let app = unique("layout-app");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: rstore}}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{REDIS}'}}\n  - {{name: redisPassword, value: ''}}\n  - {{name: actorStateStore, value: 'false'}}\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: rshared}}\nspec:\n  type: state.redis\n  metadata:\n  - {{name: redisHost, value: '{REDIS}'}}\n  - {{name: keyPrefix, value: none}}\n"
    );
    let res = ResourcesDir::new(&yaml);
    let loaded = load_resources(std::slice::from_ref(&res.0), &app, &Registry::builtin()).await.expect("load");
    let s = state_store(&loaded.components[0].component);
    let mut r = direct().await;

    // Written by us, read as daprd would: `<app-id>||<key>` → hash {data, version}.
    s.set(SetRequest { key: "order".into(), value: Bytes::from(r#"{"n":1}"#), ..Default::default() }).await.expect("set");
    let stored: (Option<String>, Option<String>) = redis::cmd("HMGET").arg(format!("{app}||order")).arg("data").arg("version").query_async(&mut r).await.expect("hmget");
    assert_eq!(stored, (Some(r#"{"n":1}"#.to_string()), Some("1".to_string())));

    // Written as daprd writes it, read by us with the version as ETag.
    let _: () = redis::cmd("HSET").arg(format!("{app}||from-dapr")).arg("data").arg("\"hello\"").arg("version").arg(7).query_async(&mut r).await.expect("hset");
    let item = s.get("from-dapr").await.expect("get").expect("present");
    assert_eq!((item.value, item.etag.as_deref()), (Bytes::from("\"hello\""), Some("7")));

    // keyPrefix: none stores the key as it is.
    let shared = state_store(&loaded.components[1].component);
    let key = unique("shared-key");
    shared.set(SetRequest { key: key.clone(), value: Bytes::from("x"), ..Default::default() }).await.expect("set");
    let exists: bool = r.exists(&key).await.expect("exists");
    assert!(exists, "keyPrefix none stores {key:?} without a prefix");
    let _: () = redis::cmd("DEL").arg(format!("{app}||order")).arg(format!("{app}||from-dapr")).arg(&key).query_async(&mut r).await.expect("del");
}

#[tokio::test]
async fn bad_metadata_names_key_component_and_file() {
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: rbad}\nspec:\n  type: state.redis\n  metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: redisHots, value: x}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("unknown key").to_string();
    assert!(err.contains("redisHots") && err.contains("rbad") && err.contains("components.yaml"), "{err}");
    let res = ResourcesDir::new("kind: Component\nmetadata: {name: rtls}\nspec:\n  type: state.redis\n  metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: enableTLS, value: 'true'}\n");
    let err = load_resources(std::slice::from_ref(&res.0), "app", &Registry::builtin()).await.expect_err("tls").to_string();
    assert!(err.contains("enableTLS") && err.contains("not supported") && err.contains("rtls"), "{err}");
}

/// A `redis-server` of the test's own, killed on drop.
struct Server(Child);

impl Server {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn eventually_ok(s: &RedisStateStore, deadline: Duration) -> Result<(), ComponentError> {
    let end = Instant::now() + deadline;
    loop {
        match s.get("probe").await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > end => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn backend_down_is_unavailable_within_the_timeout_and_reconnects() {
    let port = support::free_port();
    let host = format!("127.0.0.1:{port}");
    let s = store(&host, "500ms");

    // Nothing listens yet: a clear UNAVAILABLE naming the server, within the timeout.
    let start = Instant::now();
    let err = s.get("k").await.expect_err("no server");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(matches!(&err, ComponentError::Unavailable(m) if m.contains(&host)), "{err}");

    let server = Server::start(port);
    eventually_ok(&s, Duration::from_secs(10)).await.expect("connects once the server is up");
    s.set(SetRequest { key: "k".into(), value: Bytes::from("v"), ..Default::default() }).await.expect("set");

    drop(server);
    let start = Instant::now();
    let err = s.get("k").await.expect_err("server stopped");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(matches!(&err, ComponentError::Unavailable(m) if m.contains(&host)), "{err}");

    let _server = Server::start(port);
    eventually_ok(&s, Duration::from_secs(10)).await.expect("reconnects when the server returns");
}
