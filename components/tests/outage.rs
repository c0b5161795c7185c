//! Backends that go away and come back, simulated by a relay in front of the shared servers (the
//! servers themselves are never stopped): calls fail with `Unavailable` naming the server within
//! the configured timeout — also when the network stalls instead of refusing — the components
//! reconnect on their own, and configuration subscriptions resume and deliver what changed while
//! the backend was unreachable.
#![cfg(all(feature = "redis", feature = "postgres"))]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxidecar_components::configuration::ConfigStore;
use oxidecar_components::configuration::postgres::PostgresConfigStore;
use oxidecar_components::configuration::redis::RedisConfigStore;
use oxidecar_components::lock::LockStore;
use oxidecar_components::lock::redis::RedisLockStore;
use oxidecar_components::metadata::Metadata;
use oxidecar_components::state::postgres::PostgresStateStore;
use oxidecar_components::state::redis::RedisStateStore;
use oxidecar_components::state::{SetRequest, StateStore};
use oxidecar_components::ComponentError;
use support::{REDIS, Relay, eventually, unique, unique_ident};

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

/// Asserts `r` is `Unavailable` naming `addr` and came within `limit` of `start`.
fn unavailable<T: std::fmt::Debug>(r: Result<T, ComponentError>, addr: &str, start: Instant, limit: Duration) {
    let took = start.elapsed();
    assert!(took < limit, "failed after {took:?}, limit {limit:?}");
    match r {
        Err(ComponentError::Unavailable(m)) => assert!(m.contains(addr), "{m} names {addr}"),
        other => panic!("expected Unavailable naming {addr}, got {other:?}"),
    }
}

fn set(key: &str, value: &str) -> SetRequest {
    SetRequest { key: key.to_string(), value: Bytes::from(value.to_string()), ..Default::default() }
}

#[tokio::test]
async fn redis_components_fail_fast_and_reconnect() {
    let relay = Relay::start(REDIS).await;
    let host = relay.addr();
    let opts = [("redisHost", host.as_str()), ("timeout", "1s"), ("dialTimeout", "500ms"), ("readTimeout", "500ms")];
    let state = RedisStateStore::from_config(meta(&opts)).expect("metadata");
    let lock = RedisLockStore::from_config(meta(&opts)).expect("metadata");
    let key = unique("outage");
    state.set(set(&key, "before")).await.expect("set through the relay");

    relay.cut();
    let start = Instant::now();
    unavailable(state.get(&key).await, &host, start, Duration::from_secs(2));
    let start = Instant::now();
    unavailable(lock.try_lock(&key, "me", Duration::from_secs(5)).await, &host, start, Duration::from_secs(2));

    relay.restore();
    let item = eventually(Duration::from_secs(10), || state.get(&key)).await.expect("state.redis reconnects");
    assert_eq!(item.map(|i| i.value), Some(Bytes::from("before")));
    eventually(Duration::from_secs(10), || lock.try_lock(&key, "me", Duration::from_secs(5))).await.expect("lock.redis reconnects");

    // A stalled network: the multiplexed connection must not hang callers past the deadline.
    relay.blackhole();
    let start = Instant::now();
    unavailable(state.get(&key).await, &host, start, Duration::from_secs(3));
    let start = Instant::now();
    unavailable(state.set(set(&key, "during")).await, &host, start, Duration::from_secs(3));
    relay.restore();
    eventually(Duration::from_secs(10), || state.set(set(&key, "after"))).await.expect("reconnects after a stall");
    assert_eq!(state.get(&key).await.expect("get").map(|i| i.value), Some(Bytes::from("after")));
    let _ = state.delete(oxidecar_components::state::DeleteRequest { key, ..Default::default() }).await;
}

#[tokio::test]
async fn postgres_state_fails_fast_and_reconnects() {
    let relay = Relay::start("127.0.0.1:5432").await;
    let (table, meta_table) = (unique_ident("outage"), unique_ident("outagemeta"));
    let conn = format!("host=127.0.0.1 port={} user=postgres dbname=test", relay.port());
    let s = PostgresStateStore::from_config(meta(&[
        ("connectionString", &conn),
        ("tableName", &table),
        ("metadataTableName", &meta_table),
        ("timeoutInSeconds", "1"),
    ]))
    .expect("metadata");
    s.set(set("k", "before")).await.expect("set through the relay");
    let addr = format!("127.0.0.1:{}/test", relay.port());

    relay.cut();
    let start = Instant::now();
    unavailable(s.get("k").await, &addr, start, Duration::from_secs(3));
    relay.restore();
    let item = eventually(Duration::from_secs(10), || s.get("k")).await.expect("state.postgresql reconnects");
    assert_eq!(item.map(|i| i.value), Some(Bytes::from("before")));

    relay.blackhole();
    let start = Instant::now();
    unavailable(s.set(set("k", "during")).await, &addr, start, Duration::from_secs(3));
    relay.restore();
    eventually(Duration::from_secs(10), || s.set(set("k", "after"))).await.expect("reconnects after a stall");
    assert_eq!(s.get("k").await.expect("get").map(|i| i.value), Some(Bytes::from("after")));
    s.close().await;
    let db = direct_pg().await;
    let _ = db.batch_execute(&format!("DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {meta_table}")).await;
}

async fn direct_pg() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(support::POSTGRES, tokio_postgres::NoTls).await.expect("PostgreSQL on 5432");
    tokio::spawn(conn);
    client
}

async fn next_value(sub: &mut oxidecar_components::configuration::ConfigSubscription, key: &str, want: &str) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, sub.updates.recv()).await.unwrap_or_else(|_| panic!("{key}={want} not delivered")).expect("subscription open");
        if batch.get(key).is_some_and(|i| i.value == want) {
            return;
        }
    }
}

#[tokio::test]
async fn redis_configuration_subscription_resumes_and_catches_up() {
    let relay = Relay::start(REDIS).await;
    let host = relay.addr();
    let s = RedisConfigStore::from_config(meta(&[("redisHost", &host), ("timeout", "1s"), ("readTimeout", "500ms")])).expect("metadata");
    let key = unique("cfg-outage");
    s.set(HashMap::from([(key.clone(), "1".to_string())])).await.expect("set");
    let mut sub = s.subscribe(vec![key.clone()], &HashMap::new()).await.expect("subscribe");

    relay.cut();
    // Changed while the subscription cannot hear it: written straight to Redis, as an operator would.
    let client = redis::Client::open(format!("redis://{REDIS}")).expect("client");
    let mut direct = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("SET").arg(&key).arg("2||2").query_async(&mut direct).await.expect("set");
    let start = Instant::now();
    unavailable(s.get(std::slice::from_ref(&key)).await, &host, start, Duration::from_secs(2));

    relay.restore();
    next_value(&mut sub, &key, "2").await;
    let _: () = redis::cmd("SET").arg(&key).arg("3||3").query_async(&mut direct).await.expect("set");
    next_value(&mut sub, &key, "3").await;
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut direct).await.expect("del");
    s.close().await;
}

#[tokio::test]
async fn postgres_configuration_subscription_resumes_and_catches_up() {
    let relay = Relay::start("127.0.0.1:5432").await;
    let (table, channel) = (unique_ident("cfgout"), unique_ident("cfgchan"));
    let db = direct_pg().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (key varchar NOT NULL, value varchar NOT NULL, version varchar NOT NULL, metadata json);
         CREATE FUNCTION {table}_notify() RETURNS TRIGGER AS $$
         BEGIN PERFORM pg_notify('{channel}', json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', row_to_json(NEW))::text); RETURN NULL; END;
         $$ LANGUAGE plpgsql;
         CREATE TRIGGER {table}_t AFTER INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE PROCEDURE {table}_notify();
         INSERT INTO {table} VALUES ('color', 'blue', '1', NULL);"
    ))
    .await
    .expect("table and trigger");
    let conn = format!("host=127.0.0.1 port={} user=postgres dbname=test", relay.port());
    let s = PostgresConfigStore::from_config(meta(&[("connectionString", &conn), ("table", &table), ("timeoutInSeconds", "1")])).expect("metadata");
    let mut sub = s.subscribe(vec!["color".into()], &HashMap::from([("pgNotifyChannel".to_string(), channel)])).await.expect("subscribe");

    relay.cut();
    db.execute(&format!("UPDATE {table} SET value = 'green', version = '2' WHERE key = 'color'"), &[]).await.expect("update");
    relay.restore();
    next_value(&mut sub, "color", "green").await;
    db.execute(&format!("UPDATE {table} SET value = 'red', version = '3' WHERE key = 'color'"), &[]).await.expect("update");
    next_value(&mut sub, "color", "red").await;
    s.close().await;
    let _ = db.batch_execute(&format!("DROP TABLE IF EXISTS {table} CASCADE; DROP FUNCTION IF EXISTS {table}_notify()")).await;
}

/// The first call after Redis comes back succeeds: the connection that broke during the outage (or
/// the failed reconnect it left behind) is replaced within the call instead of failing it once.
#[tokio::test]
async fn first_redis_call_after_an_outage_succeeds() {
    let relay = Relay::start(REDIS).await;
    let host = relay.addr();
    let opts = [("redisHost", host.as_str()), ("timeout", "2s"), ("dialTimeout", "500ms"), ("readTimeout", "500ms")];
    let state = RedisStateStore::from_config(meta(&opts)).expect("metadata");
    let lock = RedisLockStore::from_config(meta(&opts)).expect("metadata");
    let key = unique("first-after");
    for round in 0..5u32 {
        state.set(set(&key, "v")).await.unwrap_or_else(|e| panic!("round {round}: set before the outage: {e}"));
        assert!(lock.try_lock(&format!("{key}-{round}-a"), "me", Duration::from_secs(5)).await.expect("lock before the outage"));
        relay.cut();
        let start = Instant::now();
        unavailable(lock.try_lock(&key, "me", Duration::from_secs(5)).await, &host, start, Duration::from_secs(3));
        unavailable(state.get(&key).await, &host, Instant::now(), Duration::from_secs(3));
        // Long enough for the connections' own reconnect attempts to fail against the cut relay.
        tokio::time::sleep(Duration::from_millis(300 * u64::from(round))).await;
        let _ = lock.try_lock(&key, "me", Duration::from_secs(5)).await;
        relay.restore();
        let took = Instant::now();
        let got = lock.try_lock(&format!("{key}-{round}-b"), "me", Duration::from_secs(5)).await;
        assert!(matches!(got, Ok(true)), "round {round}: first lock.redis call after the outage: {got:?} after {:?}", took.elapsed());
        let got = state.get(&key).await;
        assert!(got.is_ok(), "round {round}: first state.redis call after the outage: {got:?}");
    }
    let _ = state.delete(oxidecar_components::state::DeleteRequest { key, ..Default::default() }).await;
}
