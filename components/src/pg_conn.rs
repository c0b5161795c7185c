//! The PostgreSQL connection every PostgreSQL-backed component shares the shape of: Dapr's
//! `connectionString` and `timeoutInSeconds`, a small pool that connects lazily and replaces broken
//! connections, and calls that fail with `Unavailable` naming the server within the timeout. A
//! connection whose call timed out is discarded, so a stalled socket is never reused.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Fallback when metadata is built without declared defaults (direct construction in tests).
const TIMEOUT_SECS: i64 = 20;
/// Connections per component.
const POOL_SIZE: usize = 8;

/// Connection settings decoded from Dapr's PostgreSQL keys.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub config: tokio_postgres::Config,
    pub timeout: Duration,
    /// `host:port/dbname`, for error messages (never the password).
    pub addr: String,
}

/// pgx accepts `database=` and `pool_*` settings in key/value connection strings; libpq (and
/// tokio-postgres) call it `dbname=` and know no pool settings.
fn libpq_form(s: &str) -> String {
    if s.contains("://") {
        return s.to_string();
    }
    s.split_whitespace()
        .filter(|t| !t.starts_with("pool_"))
        .map(|t| match t.strip_prefix("database=") {
            Some(db) => format!("dbname={db}"),
            None => t.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl PgSettings {
    /// Takes `connectionString` and `timeoutInSeconds` from `m`.
    pub fn take(m: &mut Metadata) -> Result<Self, MetadataError> {
        let raw = m.require("connectionString")?;
        let bad = |reason: String| MetadataError::BadValue { key: "connectionString".to_string(), value: "<redacted>".to_string(), reason };
        let mut config = tokio_postgres::Config::from_str(&libpq_form(&raw)).map_err(|e| bad(format!("is not a PostgreSQL connection string: {e}")))?;
        let secs = m.parse::<i64>("timeoutInSeconds")?.unwrap_or(TIMEOUT_SECS);
        if secs <= 0 {
            return Err(MetadataError::BadValue { key: "timeoutInSeconds".to_string(), value: secs.to_string(), reason: "must be at least 1".to_string() });
        }
        let timeout = Duration::from_secs(secs as u64);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let addr = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        Ok(Self { config, timeout, addr })
    }
}

/// A lazily connected pool with per-call deadlines.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    pub addr: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("addr", &self.addr).field("timeout", &self.timeout).finish()
    }
}

impl PgPool {
    /// Builds the pool; nothing is dialled until the first call. Needs a tokio runtime for calls.
    pub fn new(s: &PgSettings) -> Result<Self, MetadataError> {
        let manager = Manager::from_config(s.config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(s.timeout))
            .create_timeout(Some(s.timeout))
            .recycle_timeout(Some(s.timeout))
            .build()
            .map_err(|e| MetadataError::BadValue { key: "connectionString".to_string(), value: "<redacted>".to_string(), reason: format!("cannot be used: {e}") })?;
        Ok(Self { pool, addr: s.addr.clone(), timeout: s.timeout })
    }

    /// A connection of the pool, within the deadline.
    pub async fn get(&self, what: &str) -> Result<Object, ComponentError> {
        match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(PoolError::Backend(e))) => Err(self.error(what, &e)),
            Ok(Err(PoolError::Timeout(_))) | Err(_) => Err(self.timed_out(what)),
            Ok(Err(PoolError::Closed)) => Err(ComponentError::Closed),
            Ok(Err(e)) => Err(ComponentError::Unavailable(format!("postgresql {}: {what}: {e}", self.addr))),
        }
    }

    /// Maps a driver error: SQL the server refused is the caller's; anything else is the backend's.
    pub fn error(&self, what: &str, e: &tokio_postgres::Error) -> ComponentError {
        match e.as_db_error() {
            Some(db) if matches!(&db.code().code()[..2], "22" | "23" | "42") => {
                ComponentError::InvalidRequest(format!("postgresql {}: {what}: {} ({})", self.addr, db.message(), db.code().code()))
            }
            Some(db) => ComponentError::Unavailable(format!("postgresql {}: {what}: {} ({})", self.addr, db.message(), db.code().code())),
            None => ComponentError::Unavailable(format!("postgresql {}: {what}: {e}", self.addr)),
        }
    }

    /// The error of a call that did not finish within the deadline.
    pub fn timed_out(&self, what: &str) -> ComponentError {
        ComponentError::Unavailable(format!("postgresql {}: {what}: no answer within {:?}", self.addr, self.timeout))
    }

    /// Runs one statement and answers its rows.
    pub async fn query(&self, what: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, ComponentError> {
        let client = self.get(what).await?;
        let c: &tokio_postgres::Client = &client;
        let fut = async move {
            let stmt = c.prepare(sql).await?;
            c.query(&stmt, params).await
        };
        // `fut` borrows the connection, so it is awaited before the connection is judged.
        let r = tokio::time::timeout(self.timeout, fut).await;
        self.judge(what, client, r)
    }

    /// Runs one statement and answers how many rows it changed.
    pub async fn execute(&self, what: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, ComponentError> {
        let client = self.get(what).await?;
        let c: &tokio_postgres::Client = &client;
        let r = tokio::time::timeout(self.timeout, async move { c.execute(sql, params).await }).await;
        self.judge(what, client, r)
    }

    /// Runs statements separated by `;` (no parameters, no results).
    pub async fn batch(&self, what: &str, sql: &str) -> Result<(), ComponentError> {
        let client = self.get(what).await?;
        let c: &tokio_postgres::Client = &client;
        let r = tokio::time::timeout(self.timeout, async move { c.batch_execute(sql).await }).await;
        self.judge(what, client, r)
    }

    /// The result of a call made with `client` under a deadline; broken or stalled connections are
    /// taken out of the pool.
    pub fn judge<T>(&self, what: &str, client: Object, r: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>) -> Result<T, ComponentError> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_closed() || e.as_db_error().is_none() {
                    let _ = Object::take(client);
                }
                Err(self.error(what, &e))
            }
            Err(_) => {
                let _ = Object::take(client);
                Err(self.timed_out(what))
            }
        }
    }

    /// Closes the pool; later calls fail as closed.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Quotes an identifier (`tableName` and friends) for SQL; schema-qualified names keep their dot.
pub fn quote_ident(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("is empty".to_string());
    }
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Err(format!("{name:?} is not a table name (letters, digits and _, optionally schema.table)"))
            } else {
                Ok(format!("\"{p}\""))
            }
        })
        .collect::<Result<_, _>>()?;
    if parts.len() > 2 {
        return Err(format!("{name:?} has more than one dot"));
    }
    Ok(parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgx_connection_strings_become_libpq() {
        assert_eq!(libpq_form("host=h user=u database=d pool_max_conns=5 port=5432"), "host=h user=u dbname=d port=5432");
        assert_eq!(libpq_form("postgres://u@h:5432/d"), "postgres://u@h:5432/d");
    }

    #[test]
    fn identifiers_are_checked_and_quoted() {
        assert_eq!(quote_ident("state").as_deref(), Ok("\"state\""));
        assert_eq!(quote_ident("app.state_1").as_deref(), Ok("\"app\".\"state_1\""));
        assert!(quote_ident("x; drop table y").is_err());
        assert!(quote_ident("a.b.c").is_err());
    }
}
