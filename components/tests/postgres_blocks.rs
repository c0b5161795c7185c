//! The PostgreSQL backends against the server on 127.0.0.1:5432 (database `test`): each passes its
//! block's conformance suite on tables of its own, and the table layouts match daprd's.
#![cfg(feature = "postgres")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;

use oxidecar_components::ComponentError;
use oxidecar_components::bindings::postgres::PostgresBinding;
use oxidecar_components::bindings::{self, BindingRequest, OutputBinding};
use oxidecar_components::configuration::postgres::PostgresConfigStore;
use oxidecar_components::configuration::{self, ConfigStore};
use oxidecar_components::metadata::Metadata;
use oxidecar_components::sequencer::postgres::PostgresSequencer;
use oxidecar_components::sequencer::{self, Sequencer};
use oxidecar_components::state::postgres::PostgresStateStore;
use oxidecar_components::state::{self, SetRequest, StateStore};
use oxidecar_components::{Component, Registry, load_resources};
use support::{POSTGRES, ResourcesDir, eventually, unique, unique_ident};

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

/// A direct connection, as an operator (or daprd) would have.
async fn direct() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(POSTGRES, tokio_postgres::NoTls).await.expect("PostgreSQL must run on 127.0.0.1:5432 with database test");
    tokio::spawn(conn);
    client
}

/// SQL that removes what a test created, run on drop (also when the test fails).
struct Cleanup(String);

impl Cleanup {
    fn tables(names: &[&str]) -> Self {
        Self(names.iter().map(|t| format!("DROP TABLE IF EXISTS {t} CASCADE;")).collect())
    }

    /// A configuration table with its trigger function.
    fn config(table: &str) -> Self {
        Self(format!("DROP TABLE IF EXISTS {table} CASCADE; DROP FUNCTION IF EXISTS {table}_notify();"))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sql = std::mem::take(&mut self.0);
        // A fresh runtime on another thread: the test's runtime may be the one unwinding.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let _ = direct().await.batch_execute(&sql).await;
            });
        })
        .join();
    }
}

#[tokio::test]
async fn state_postgresql_passes_the_state_conformance_suite() {
    let (table, meta_table) = (unique_ident("state"), unique_ident("meta"));
    let _drop = Cleanup::tables(&[&table, &meta_table]);
    let s = PostgresStateStore::from_config(meta(&[
        ("connectionString", POSTGRES),
        ("tableName", &table),
        ("metadataTableName", &meta_table),
        ("timeoutInSeconds", "5"),
    ]))
    .expect("metadata");
    if let Err(e) = state::conformance::run(&s, &unique("conf")).await {
        panic!("state.postgresql conformance: {e}");
    }
    s.close().await;
}

#[tokio::test]
async fn state_postgresql_uses_daprs_v1_table_both_ways() {
    let (table, meta_table) = (unique_ident("dstate"), unique_ident("dmeta"));
    let _drop = Cleanup::tables(&[&table, &meta_table]);
    let app = unique("pgapp");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: pgstore}}\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - {{name: connectionString, value: '{POSTGRES}'}}\n  - {{name: tableName, value: {table}}}\n  - {{name: metadataTableName, value: {meta_table}}}\n  - {{name: actorStateStore, value: 'true'}}\n  - {{name: maxConns, value: '4'}}\n"
    );
    let res = ResourcesDir::new(&yaml);
    let loaded = load_resources(std::slice::from_ref(&res.0), &app, &Registry::builtin()).await.expect("load");
    let Component::State(s) = &loaded.components[0].component else { panic!("not a state store") };
    let db = direct().await;

    // Written by us, read as daprd would: JSON as jsonb, other bytes as base64 with isbinary.
    s.set(SetRequest { key: "order".into(), value: Bytes::from(r#"{"n":1}"#), ..Default::default() }).await.expect("set");
    s.set(SetRequest { key: "note".into(), value: Bytes::from("paid"), ..Default::default() }).await.expect("set");
    let rows = db
        .query(&format!("SELECT key, value::text, isbinary, xmin::text FROM {table} ORDER BY key"), &[])
        .await
        .expect("select");
    let seen: Vec<(String, String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        seen,
        vec![(format!("{app}||note"), "\"cGFpZA==\"".to_string(), true), (format!("{app}||order"), r#"{"n": 1}"#.to_string(), false)]
    );
    let item = s.get("order").await.expect("get").expect("present");
    assert_eq!(item.etag.as_deref(), Some(rows[1].get::<_, String>(3).as_str()), "the etag is the row's xmin");
    assert_eq!(s.get("note").await.expect("get").expect("present").value, Bytes::from("paid"));

    // Written as daprd writes it, read by us.
    db.execute(
        &format!("INSERT INTO {table} (key, value, isbinary) VALUES ($1, '\"aGVsbG8=\"'::jsonb, true), ($2, '{{\"a\": [1, 2]}}'::jsonb, false)"),
        &[&format!("{app}||bin"), &format!("{app}||json")],
    )
    .await
    .expect("insert");
    assert_eq!(s.get("bin").await.expect("get").expect("present").value, Bytes::from("hello"));
    assert_eq!(s.get("json").await.expect("get").expect("present").value, Bytes::from(r#"{"a": [1, 2]}"#));
    s.close().await;
}

#[tokio::test]
async fn state_postgresql_deletes_expired_rows_in_the_background() {
    let (table, meta_table) = (unique_ident("ttl"), unique_ident("ttlmeta"));
    let _drop = Cleanup::tables(&[&table, &meta_table]);
    let s = PostgresStateStore::from_config(meta(&[
        ("connectionString", POSTGRES),
        ("tableName", &table),
        ("metadataTableName", &meta_table),
        ("cleanupIntervalInSeconds", "1"),
    ]))
    .expect("metadata");
    let ttl = HashMap::from([("ttlInSeconds".to_string(), "1".to_string())]);
    s.set(SetRequest { key: "short".into(), value: Bytes::from("1"), metadata: ttl, ..Default::default() }).await.expect("set");
    s.set(SetRequest { key: "kept".into(), value: Bytes::from("2"), ..Default::default() }).await.expect("set");
    let db = direct().await;
    let count = format!("SELECT count(*) FROM {table}");
    let gone = eventually(Duration::from_secs(10), || async {
        let n: i64 = db.query_one(&count, &[]).await.map_err(|e| e.to_string())?.get(0);
        if n == 1 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;
    assert_eq!(gone, Ok(()), "the expired row is deleted from the table");
    let last: String = db.query_one(&format!("SELECT value FROM {meta_table} WHERE key = 'last-cleanup'"), &[]).await.expect("claimed").get(0);
    assert!(!last.is_empty());
    s.close().await;
}

/// The table and trigger Dapr's docs tell operators to create for `configuration.postgresql`.
async fn config_table(db: &tokio_postgres::Client, table: &str, channel: &str) {
    db.batch_execute(&format!(
        "CREATE TABLE {table} (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, METADATA JSON);
         CREATE FUNCTION {table}_notify() RETURNS TRIGGER AS $$
         DECLARE data json; notification json;
         BEGIN
           IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
           notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
           PERFORM pg_notify('{channel}', notification::text);
           RETURN NULL;
         END;
         $$ LANGUAGE plpgsql;
         CREATE TRIGGER {table}_trigger AFTER INSERT OR UPDATE OR DELETE ON {table}
           FOR EACH ROW EXECUTE PROCEDURE {table}_notify();"
    ))
    .await
    .expect("create the configuration table and trigger");
}

#[tokio::test]
async fn configuration_postgresql_passes_the_configuration_conformance_suite() {
    let (table, channel) = (unique_ident("cfg"), unique_ident("chan"));
    let _drop = Cleanup::config(&table);
    config_table(&direct().await, &table, &channel).await;
    let s = PostgresConfigStore::from_config(meta(&[("connectionString", POSTGRES), ("table", &table)])).expect("metadata");
    let sub_meta = HashMap::from([("pgNotifyChannel".to_string(), channel)]);
    if let Err(e) = configuration::conformance::run(&s, &unique("conf"), &sub_meta).await {
        panic!("configuration.postgresql conformance: {e}");
    }
    s.close().await;
}

#[tokio::test]
async fn configuration_postgresql_follows_rows_written_by_operators() {
    let (table, channel) = (unique_ident("ocfg"), unique_ident("ochan"));
    let _drop = Cleanup::config(&table);
    let db = direct().await;
    config_table(&db, &table, &channel).await;
    db.execute(&format!("INSERT INTO {table} VALUES ('color', 'blue', 'v1', '{{\"team\": \"web\"}}')"), &[]).await.expect("insert");
    let s = PostgresConfigStore::from_config(meta(&[("connectionString", POSTGRES), ("table", &table)])).expect("metadata");
    let got = s.get(&["color".to_string()]).await.expect("get");
    assert_eq!((got["color"].value.as_str(), got["color"].version.as_str()), ("blue", "v1"));
    assert_eq!(got["color"].metadata.get("team").map(String::as_str), Some("web"));

    let missing = s.subscribe(vec!["color".into()], &HashMap::new()).await.expect_err("no channel");
    assert!(missing.to_string().contains("pgNotifyChannel"), "{missing}");
    let mut sub = s.subscribe(vec!["color".into()], &HashMap::from([("pgNotifyChannel".to_string(), channel)])).await.expect("subscribe");
    db.execute(&format!("UPDATE {table} SET value = 'green', version = 'v2' WHERE key = 'color'"), &[]).await.expect("update");
    let batch = tokio::time::timeout(Duration::from_secs(5), sub.updates.recv()).await.expect("delivered").expect("open");
    assert_eq!((batch["color"].value.as_str(), batch["color"].version.as_str()), ("green", "v2"));
    db.execute(&format!("DELETE FROM {table} WHERE key = 'color'"), &[]).await.expect("delete");
    let batch = tokio::time::timeout(Duration::from_secs(5), sub.updates.recv()).await.expect("delivered").expect("open");
    assert_eq!(batch["color"].value, "", "a deleted item arrives empty");
    s.close().await;
}

#[tokio::test]
async fn sequencer_postgresql_passes_the_sequencer_conformance_suite() {
    let table = unique_ident("seq");
    let _drop = Cleanup::tables(&[&table]);
    let seq: Arc<dyn Sequencer> =
        Arc::new(PostgresSequencer::from_config(meta(&[("connectionString", POSTGRES), ("tableName", &table)])).expect("metadata"));
    if let Err(e) = sequencer::conformance::run(seq.clone(), &unique("seq")).await {
        panic!("sequencer.postgresql conformance: {e}");
    }
    let rows = direct().await.query(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("select");
    assert_eq!(rows[0].get::<_, i64>(0), 3, "one row per sequence key");
    seq.close().await;
}

#[tokio::test]
async fn bindings_postgresql_passes_the_bindings_conformance_suite() {
    let table = unique_ident("bind");
    let _drop = Cleanup::tables(&[&table]);
    direct().await.batch_execute(&format!("CREATE TABLE {table} (id int PRIMARY KEY, name text, doc jsonb, at timestamptz)")).await.expect("create");
    let b: Arc<dyn OutputBinding> = Arc::new(PostgresBinding::from_config(meta(&[("connectionString", POSTGRES)])).expect("metadata"));
    let sql = |op: &str, sql: String, params: &str| BindingRequest {
        operation: op.into(),
        data: Bytes::new(),
        metadata: HashMap::from([("sql".to_string(), sql), ("params".to_string(), params.to_string())]),
    };
    let fixture = bindings::conformance::Fixture {
        write: sql("exec", format!("INSERT INTO {table} (id, name, doc) VALUES ($1, $2, $3)"), r#"[1, "alice", {"k": [1, 2]}]"#),
        read: sql("query", format!("SELECT id, name, doc FROM {table} WHERE id = $1"), "[1]"),
        expected: Bytes::from(r#"[[1,"alice",{"k":[1,2]}]]"#),
        missing: Some((BindingRequest { operation: "exec".into(), ..Default::default() }, "sql")),
    };
    if let Err(e) = bindings::conformance::run(b.clone(), fixture).await {
        panic!("bindings.postgresql conformance: {e}");
    }

    // Dapr's response metadata, numbers given as strings, NULLs, timestamps.
    let exec = b.invoke(sql("exec", format!("INSERT INTO {table} (id, name, at) VALUES ($1, $2, '2024-05-01T12:00:00Z'), (3, NULL, NULL)"), r#"["2", "bob"]"#)).await.expect("exec");
    assert_eq!(exec.metadata.get("rows-affected").map(String::as_str), Some("2"));
    assert_eq!(exec.metadata.get("operation").map(String::as_str), Some("exec"));
    assert!(exec.metadata.contains_key("start-time") && exec.metadata.contains_key("duration"));
    let rows = b.invoke(sql("query", format!("SELECT id, name, at FROM {table} WHERE id > 1 ORDER BY id"), "")).await.expect("query");
    assert_eq!(rows.data, Bytes::from(r#"[[2,"bob","2024-05-01T12:00:00Z"],[3,null,null]]"#));

    // Bad requests name what is wrong; the binding keeps serving.
    let e = b.invoke(sql("exec", format!("INSERT INTO {table} (id) VALUES ($1)"), r#"["one"]"#)).await.expect_err("bad param");
    assert!(matches!(&e, ComponentError::InvalidRequest(m) if m.contains("params[0]")), "{e}");
    let e = b.invoke(sql("query", "SELEC 1".into(), "")).await.expect_err("syntax");
    assert!(matches!(&e, ComponentError::InvalidRequest(m) if m.contains("syntax")), "{e}");
    let e = b.invoke(sql("query", "SELECT 1".into(), "{}")).await.expect_err("params not an array");
    assert!(matches!(&e, ComponentError::InvalidRequest(m) if m.contains("params")), "{e}");
    let e = b.invoke(sql("query", format!("SELECT * FROM {table} WHERE id = $1"), "[1, 2]")).await.expect_err("count");
    assert!(matches!(&e, ComponentError::InvalidRequest(m) if m.contains("parameters")), "{e}");
    let e = b.invoke(sql("query", "SELECT 1.5::numeric AS n".into(), "")).await.expect_err("numeric");
    assert!(matches!(&e, ComponentError::InvalidRequest(m) if m.contains("n::text")), "{e}");
    let one = b.invoke(sql("query", "SELECT 1.5::numeric::text AS n".into(), "")).await.expect("cast works");
    assert_eq!(one.data, Bytes::from(r#"[["1.5"]]"#));

    b.invoke(BindingRequest { operation: "close".into(), ..Default::default() }).await.expect("close");
    let e = b.invoke(sql("query", "SELECT 1".into(), "")).await.expect_err("closed");
    assert_eq!(e, ComponentError::Closed);
}
