//! `state.postgresql`: Dapr's v1 table, so rows written by daprd are readable and back.
//!
//! `key text primary key, value jsonb, isbinary boolean, insertdate, updatedate, expiredate`. A value
//! that is valid JSON is stored as it is; anything else is stored as a JSON string of its base64
//! with `isbinary` set. The ETag is the row's `xmin` (the id of the transaction that last wrote it),
//! so every write changes it without a column of its own. TTL is `expiredate`: expired rows are
//! invisible at once and deleted every `cleanupIntervalInSeconds` by one sidecar (the last cleanup
//! time is claimed in the metadata table, as daprd does).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use tokio::sync::OnceCell;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::query::{Query, QueryItem, QueryPage};
use super::{Concurrency, DeleteRequest, SetRequest, StateFeature, StateItem, StateStore, TTL_EXPIRE_TIME, TransactionOp, rfc3339, ttl_from_metadata};
use crate::metadata::{Metadata, MetadataError};
use crate::pg_conn::{PgPool, PgSettings, quote_ident};
use crate::{ComponentError, catalog};

mod query;

/// The SQL of one table, built once.
#[derive(Debug)]
struct Sql {
    /// The quoted table name.
    table: String,
    setup: String,
    get: String,
    bulk_get: String,
    upsert: String,
    insert_first: String,
    update_etag: String,
    delete: String,
    delete_etag: String,
    cleanup: String,
}

/// `expiredate` from an optional TTL in seconds (`$4`).
const EXPIRES: &str = "CASE WHEN $4::bigint IS NULL THEN NULL ELSE CURRENT_TIMESTAMP + $4::bigint * interval '1 second' END";
const LIVE: &str = "(expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)";

impl Sql {
    fn new(table: &str, meta: &str, lock_name: &str) -> Self {
        Self {
            table: table.to_string(),
            setup: format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtext('oxidecar-state-{lock_name}'));
                 CREATE TABLE IF NOT EXISTS {table} (
                   key text NOT NULL PRIMARY KEY,
                   value jsonb NOT NULL,
                   isbinary boolean NOT NULL,
                   insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
                   updatedate TIMESTAMP WITH TIME ZONE NULL,
                   expiredate TIMESTAMP WITH TIME ZONE NULL);
                 ALTER TABLE {table} ADD COLUMN IF NOT EXISTS expiredate TIMESTAMP WITH TIME ZONE NULL;
                 CREATE TABLE IF NOT EXISTS {meta} (key text NOT NULL PRIMARY KEY, value text NOT NULL);
                 COMMIT;"
            ),
            get: format!("SELECT key, value::text, isbinary, xmin::text, expiredate FROM {table} WHERE key = $1 AND {LIVE}"),
            bulk_get: format!("SELECT key, value::text, isbinary, xmin::text, expiredate FROM {table} WHERE key = ANY($1) AND {LIVE}"),
            upsert: format!(
                "INSERT INTO {table} (key, value, isbinary, expiredate) VALUES ($1, $2::text::jsonb, $3, {EXPIRES})
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, isbinary = EXCLUDED.isbinary,
                   updatedate = CURRENT_TIMESTAMP, expiredate = EXCLUDED.expiredate"
            ),
            // First write: only a missing (or expired) key may be written.
            insert_first: format!(
                "INSERT INTO {table} (key, value, isbinary, expiredate) VALUES ($1, $2::text::jsonb, $3, {EXPIRES})
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, isbinary = EXCLUDED.isbinary,
                   insertdate = CURRENT_TIMESTAMP, updatedate = NULL, expiredate = EXCLUDED.expiredate
                 WHERE {table}.expiredate IS NOT NULL AND {table}.expiredate <= CURRENT_TIMESTAMP"
            ),
            update_etag: format!(
                "UPDATE {table} SET value = $2::text::jsonb, isbinary = $3, updatedate = CURRENT_TIMESTAMP, expiredate = {EXPIRES}
                 WHERE key = $1 AND xmin::text = $5 AND {LIVE}"
            ),
            delete: format!("DELETE FROM {table} WHERE key = $1"),
            delete_etag: format!("DELETE FROM {table} WHERE key = $1 AND xmin::text = $2 AND {LIVE}"),
            cleanup: format!(
                "WITH claim AS (
                   INSERT INTO {meta} (key, value) VALUES ('last-cleanup', CURRENT_TIMESTAMP::text)
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
                   WHERE {meta}.value::timestamptz < CURRENT_TIMESTAMP - $1::bigint * interval '1 millisecond'
                   RETURNING 1)
                 DELETE FROM {table} WHERE expiredate IS NOT NULL AND expiredate < CURRENT_TIMESTAMP
                   AND EXISTS (SELECT 1 FROM claim)"
            ),
        }
    }
}

/// The PostgreSQL state store.
#[derive(Debug)]
pub struct PostgresStateStore {
    pg: PgPool,
    sql: std::sync::Arc<Sql>,
    ready: OnceCell<()>,
    table: String,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

fn bad(key: &str, value: &str, reason: String) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason }
}

impl PostgresStateStore {
    /// Builds the store from Dapr's keys (see `docs/components.md`). Connects lazily; the tables
    /// are created on first use. With a cleanup interval, expired rows are deleted in the background.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::state::POSTGRESQL);
        let settings = PgSettings::take(&mut m)?;
        let table_name = m.take("tableName").unwrap_or_else(|| "state".to_string());
        let meta_name = m.take("metadataTableName").unwrap_or_else(|| "dapr_metadata".to_string());
        let cleanup = m.parse::<i64>("cleanupIntervalInSeconds")?.unwrap_or(3600);
        m.ignore("actorStateStore");
        m.finish()?;
        let table = quote_ident(&table_name).map_err(|r| bad("tableName", &table_name, r))?;
        let meta = quote_ident(&meta_name).map_err(|r| bad("metadataTableName", &meta_name, r))?;
        let store = Self {
            pg: PgPool::new(&settings)?,
            sql: std::sync::Arc::new(Sql::new(&table, &meta, &table_name)),
            ready: OnceCell::new(),
            table: table_name,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        };
        if cleanup > 0 && tokio::runtime::Handle::try_current().is_ok() {
            store.start_cleanup(Duration::from_secs(cleanup as u64));
        }
        Ok(store)
    }

    fn start_cleanup(&self, every: Duration) {
        let (pg, sql, cancel, table) = (self.pg.clone(), self.sql.clone(), self.cancel.clone(), self.table.clone());
        let span = tracing::debug_span!("state_postgresql_cleanup", table = %table);
        self.tasks.spawn(tracing::Instrument::instrument(
            async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                let ms = (every.as_millis() as i64) * 9 / 10;
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    // Before the first write the tables may not exist yet: that is not worth a warning.
                    match pg.execute("ttl cleanup", &sql.cleanup, &[&ms]).await {
                        Ok(n) if n > 0 => tracing::debug!(rows = n, "expired state deleted"),
                        Ok(_) => {}
                        Err(ComponentError::InvalidRequest(_)) => {}
                        Err(e) => tracing::warn!(error = %e, "expired state cleanup failed"),
                    }
                }
            },
            span,
        ));
    }

    /// Creates the tables once (under an advisory lock, so sidecars starting together agree).
    async fn ready(&self) -> Result<(), ComponentError> {
        self.ready.get_or_try_init(|| self.pg.batch("create tables", &self.sql.setup)).await.map(|_| ())
    }
}

/// How a value is stored: JSON as it is, anything else as a JSON string of its base64.
fn encode(value: &[u8]) -> (String, bool) {
    match std::str::from_utf8(value) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => (text.to_string(), false),
        _ => (serde_json::Value::String(BASE64.encode(value)).to_string(), true),
    }
}

fn decode(row: &Row) -> Result<(String, StateItem), ComponentError> {
    let broken = |what: String| ComponentError::Unavailable(format!("postgresql state row: {what}"));
    let key: String = row.try_get(0).map_err(|e| broken(e.to_string()))?;
    let text: String = row.try_get(1).map_err(|e| broken(e.to_string()))?;
    let binary: bool = row.try_get(2).map_err(|e| broken(e.to_string()))?;
    let etag: String = row.try_get(3).map_err(|e| broken(e.to_string()))?;
    let expires: Option<SystemTime> = row.try_get(4).map_err(|e| broken(e.to_string()))?;
    let value = if binary {
        let s: String = serde_json::from_str(&text).map_err(|e| broken(format!("key {key:?}: isbinary value is not a JSON string: {e}")))?;
        Bytes::from(BASE64.decode(s).map_err(|e| broken(format!("key {key:?}: isbinary value is not base64: {e}")))?)
    } else {
        Bytes::from(text)
    };
    let metadata = expires.map(|t| HashMap::from([(TTL_EXPIRE_TIME.to_string(), rfc3339(t))])).unwrap_or_default();
    Ok((key, StateItem { value, etag: Some(etag), metadata }))
}

/// One write or delete, as SQL and parameters; `None` SQL for an invalid request.
enum Stmt {
    Write { sql: &'static str, key: String, value: String, binary: bool, ttl: Option<i64>, etag: Option<String> },
    Delete { key: String, etag: Option<String> },
}

fn checked_etag(key: &str, etag: Option<&String>) -> Result<Option<String>, ComponentError> {
    match etag.filter(|e| !e.is_empty()) {
        None => Ok(None),
        Some(e) if e.parse::<u32>().is_ok() => Ok(Some(e.clone())),
        Some(e) => Err(ComponentError::EtagInvalid { key: key.to_string(), etag: e.clone() }),
    }
}

fn plan(op: &TransactionOp) -> Result<Stmt, ComponentError> {
    if op.key().is_empty() {
        return Err(ComponentError::InvalidRequest("key is empty".to_string()));
    }
    Ok(match op {
        TransactionOp::Set(r) => {
            let etag = checked_etag(&r.key, r.etag.as_ref())?;
            let ttl = ttl_from_metadata(&r.metadata)?.map(|d| d.as_secs() as i64);
            let (value, binary) = encode(&r.value);
            let sql = match (&etag, r.concurrency) {
                (Some(_), _) => "update_etag",
                (None, Concurrency::FirstWrite) => "insert_first",
                (None, Concurrency::LastWrite) => "upsert",
            };
            Stmt::Write { sql, key: r.key.clone(), value, binary, ttl, etag }
        }
        TransactionOp::Delete(r) => Stmt::Delete { key: r.key.clone(), etag: checked_etag(&r.key, r.etag.as_ref())? },
    })
}

impl Sql {
    fn pick(&self, name: &str) -> &str {
        match name {
            "update_etag" => &self.update_etag,
            "insert_first" => &self.insert_first,
            _ => &self.upsert,
        }
    }
}

/// Runs one planned statement on `c`; `Ok(false)` when its precondition did not hold.
async fn run<C: tokio_postgres::GenericClient + Sync>(c: &C, sql: &Sql, stmt: &Stmt) -> Result<bool, tokio_postgres::Error> {
    match stmt {
        Stmt::Write { sql: which, key, value, binary, ttl, etag } => {
            let q = sql.pick(which);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![key, value, binary, ttl];
            if let Some(e) = etag {
                params.push(e);
            }
            let n = c.execute(q, &params).await?;
            Ok(n == 1)
        }
        Stmt::Delete { key, etag: Some(e) } => Ok(c.execute(&sql.delete_etag, &[key, e]).await? == 1),
        Stmt::Delete { key, etag: None } => {
            c.execute(&sql.delete, &[key]).await?;
            Ok(true)
        }
    }
}

#[async_trait::async_trait]
impl StateStore for PostgresStateStore {
    fn features(&self) -> &'static [StateFeature] {
        &[StateFeature::Etag, StateFeature::Transactional, StateFeature::Ttl, StateFeature::QueryApi]
    }

    async fn query(&self, prefix: &str, q: &Query) -> Result<QueryPage, ComponentError> {
        self.ready().await?;
        let select = query::select(&self.sql.table, LIVE, prefix, q);
        let params: Vec<&(dyn ToSql + Sync)> = select.params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let rows = self.pg.query("query", &select.sql, &params).await?;
        let more = q.limit > 0 && rows.len() > q.limit;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows.iter().take(if q.limit > 0 { q.limit } else { usize::MAX }) {
            let (key, item) = decode(row)?;
            let key = key.strip_prefix(prefix).map(str::to_string).unwrap_or(key);
            results.push(QueryItem { key, value: item.value, etag: item.etag });
        }
        Ok(QueryPage { token: more.then(|| (q.offset + results.len()).to_string()), results })
    }

    async fn get(&self, key: &str) -> Result<Option<StateItem>, ComponentError> {
        self.ready().await?;
        let rows = self.pg.query("get", &self.sql.get, &[&key]).await?;
        rows.first().map(decode).transpose().map(|r| r.map(|(_, item)| item))
    }

    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<StateItem>, ComponentError>> {
        let found = async {
            self.ready().await?;
            let rows = self.pg.query("bulk get", &self.sql.bulk_get, &[&keys]).await?;
            rows.iter().map(decode).collect::<Result<HashMap<String, StateItem>, _>>()
        }
        .await;
        match found {
            Ok(mut found) => keys.iter().map(|k| Ok(found.remove(k))).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn set(&self, req: SetRequest) -> Result<(), ComponentError> {
        self.transact(vec![TransactionOp::Set(req)]).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), ComponentError> {
        self.transact(vec![TransactionOp::Delete(req)]).await
    }

    async fn transact(&self, ops: Vec<TransactionOp>) -> Result<(), ComponentError> {
        if ops.is_empty() {
            return Ok(());
        }
        let stmts = ops.iter().map(plan).collect::<Result<Vec<_>, _>>()?;
        self.ready().await?;
        let mut client = self.pg.get("write").await?;
        let sql = &self.sql;
        let c: &mut deadpool_postgres::ClientWrapper = &mut client;
        // The index of the operation whose precondition failed, if any.
        let work = async move {
            if stmts.len() == 1 {
                return Ok(if run(&**c, sql, &stmts[0]).await? { None } else { Some(0) });
            }
            let tx = c.transaction().await?;
            for (i, stmt) in stmts.iter().enumerate() {
                if !run(&*tx, sql, stmt).await? {
                    tx.rollback().await?;
                    return Ok(Some(i));
                }
            }
            tx.commit().await?;
            Ok(None)
        };
        let r = tokio::time::timeout(self.pg.timeout, work).await;
        match self.pg.judge("write", client, r)? {
            None => Ok(()),
            Some(i) => Err(ComponentError::EtagMismatch { key: ops[i].key().to_string() }),
        }
    }

    async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.pg.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stored_as_daprd_stores_them() {
        assert_eq!(encode(br#"{"a":1}"#), (r#"{"a":1}"#.to_string(), false));
        assert_eq!(encode(b"paid"), ("\"cGFpZA==\"".to_string(), true));
        assert_eq!(encode(&[0xff, 0x00]), ("\"/wA=\"".to_string(), true));
    }
}
