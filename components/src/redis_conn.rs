//! The Redis connection every Redis-backed component shares the shape of: Dapr's connection keys
//! (`redisHost`, `redisPassword`, `redisUsername`, `redisDB`, `dialTimeout`, `readTimeout`, and
//! oxidecar's `timeout`), a lazily connected `ConnectionManager` that reconnects on its own after
//! the server went away, and calls that fail with `Unavailable` naming the server within `timeout`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Fallbacks when metadata is built without declared defaults (direct construction in tests).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Connection settings decoded from Dapr's Redis keys.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub dial_timeout: Duration,
    pub read_timeout: Duration,
    /// Deadline of one whole operation, reconnecting included.
    pub timeout: Duration,
}

fn bad(key: &str, value: &str, reason: &str) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

fn positive(m: &mut Metadata, key: &'static str, fallback: Duration) -> Result<Duration, MetadataError> {
    let d = m.duration(key)?.unwrap_or(fallback);
    if d.is_zero() {
        return Err(bad(key, "0", "must be greater than zero"));
    }
    Ok(d)
}

impl RedisSettings {
    /// Takes the connection keys from `m`; the caller takes its own keys and calls `finish`.
    pub fn take(m: &mut Metadata) -> Result<Self, MetadataError> {
        let host_port = m.require("redisHost")?;
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad("redisHost", &host_port, "has a bad port (use host:port)"))?),
            None => (host_port.clone(), 6379),
        };
        if host.is_empty() {
            return Err(bad("redisHost", &host_port, "has no host (use host:port)"));
        }
        let password = m.take("redisPassword").filter(|p| !p.is_empty());
        let username = m.take("redisUsername").filter(|u| !u.is_empty());
        let db = m.parse::<i64>("redisDB")?.unwrap_or(0);
        // Files that reach a backend through the loader had these checked against the declaration;
        // direct construction checks them here.
        if m.take("enableTLS").as_deref().and_then(crate::catalog::parse_bool).unwrap_or(false) {
            return Err(bad("enableTLS", "true", "is not supported: this build speaks plain TCP to Redis"));
        }
        let dial_timeout = positive(m, "dialTimeout", DIAL_TIMEOUT)?;
        let read_timeout = positive(m, "readTimeout", READ_TIMEOUT)?;
        let timeout = positive(m, "timeout", TIMEOUT)?;
        for ignored in ["redisType", "failover"] {
            m.ignore(ignored);
        }
        Ok(Self { host, port, username, password, db, dial_timeout, read_timeout, timeout })
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A client for these settings (no connection yet).
    pub fn client(&self) -> Result<redis::Client, MetadataError> {
        let mut redis_info = RedisConnectionInfo::default().set_db(self.db);
        if let Some(u) = &self.username {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = &self.password {
            redis_info = redis_info.set_password(p);
        }
        let addr = self.addr();
        let info = ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()
            .map_err(|e| bad("redisHost", &addr, &format!("cannot be used: {e}")))?
            .set_redis_settings(redis_info);
        redis::Client::open(info).map_err(|e| bad("redisHost", &addr, &format!("cannot be used: {e}")))
    }
}

/// A lazily connected, self-reconnecting multiplexed connection with per-call deadlines.
#[derive(Clone)]
pub struct RedisConn {
    pub conn: ConnectionManager,
    pub client: redis::Client,
    pub addr: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").field("addr", &self.addr).field("timeout", &self.timeout).finish()
    }
}

impl RedisConn {
    /// Builds the connection; nothing is dialled until the first call, so a Redis that is down does
    /// not stop the sidecar. Needs a tokio runtime.
    pub fn new(s: &RedisSettings) -> Result<Self, MetadataError> {
        let client = s.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(s.dial_timeout))
            .set_response_timeout(Some(s.read_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let addr = s.addr();
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| bad("redisHost", &addr, &format!("cannot be used: {e}")))?;
        Ok(Self { conn, client, addr, timeout: s.timeout })
    }

    /// Maps a Redis error to `Unavailable` naming the server and the operation.
    pub fn error(&self, what: &str, e: &redis::RedisError) -> ComponentError {
        ComponentError::Unavailable(format!("redis {}: {what}: {e}", self.addr))
    }

    /// Runs one call with the operation deadline (no retry: for calls that are not a command on
    /// the shared connection, such as opening a subscription).
    pub async fn call<T>(&self, what: &str, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, ComponentError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, &e)),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    /// Runs `attempt` on the shared connection within the operation deadline, and once more when
    /// the first try found the connection already broken. After an outage the manager still holds
    /// the connection that broke (or the failed reconnect of it); the first command written to it
    /// fails while the manager reconnects, and would fail the first call after Redis came back.
    /// Such a command never reached Redis, so sending it again cannot apply it twice.
    /// `None` when the deadline passed.
    pub async fn run_raw<T, F, Fut>(&self, mut attempt: F) -> Option<redis::RedisResult<T>>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, attempt(self.conn.clone())).await {
            Ok(Err(e)) if not_sent(&e) => {
                tracing::debug!(addr = %self.addr, error = %e, "redis connection was broken; sending again on a new one");
                tokio::time::timeout_at(deadline, attempt(self.conn.clone())).await.ok()
            }
            other => other.ok(),
        }
    }

    /// [`RedisConn::run_raw`] with errors mapped to `Unavailable` naming the server and `what`.
    pub async fn run<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, ComponentError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match self.run_raw(attempt).await {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(self.error(what, &e)),
            None => Err(self.timed_out(what)),
        }
    }

    /// The error of a call that did not finish within the deadline.
    pub fn timed_out(&self, what: &str) -> ComponentError {
        ComponentError::Unavailable(format!("redis {}: {what}: no answer within {:?}", self.addr, self.timeout))
    }

    /// Runs one command.
    pub async fn cmd<T: redis::FromRedisValue>(&self, what: &str, cmd: &redis::Cmd) -> Result<T, ComponentError> {
        self.run(what, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }
}

/// Whether `e` shows the command was never written to Redis: the connection was refused, or
/// writing to it failed because it had already broken (broken pipe, not connected).
fn not_sent(e: &redis::RedisError) -> bool {
    use std::io::ErrorKind;
    // The client keeps the I/O error behind an `Arc<dyn Error>`.
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let io = std::error::Error::source(e).and_then(|s| {
        s.downcast_ref::<std::io::Error>().or_else(|| s.downcast_ref::<Shared>().and_then(|a| a.downcast_ref::<std::io::Error>()))
    });
    e.is_connection_refusal() || io.is_some_and(|io| matches!(io.kind(), ErrorKind::BrokenPipe | ErrorKind::NotConnected))
}
