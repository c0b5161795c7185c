//! `pubsub.redis`: Redis Streams with consumer groups, laid out as daprd does so both can share a
//! stream. A topic is a stream; a message is an entry with a `data` field (plus `metadata` as JSON
//! when there is any). Each `consumerID` is a consumer group created at the stream's start; a
//! message is acknowledged (`XACK`) only after the handler accepted it. Entries left pending longer
//! than `processingTimeout` (a failed handler, a sidecar that died) are claimed again with
//! `XAUTOCLAIM` every `redeliverInterval`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{CONSUMER_ID, Message, MessageHandler, PubSub, PubSubFeature};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};
use crate::redis_conn::{RedisConn, RedisSettings};

/// Dapr keys accepted without effect (the loader drops them before a file's metadata gets here;
/// direct construction may still pass them).
const POOL_KEYS: &[&str] = &[
    "clientCert",
    "clientKey",
    "writeTimeout",
    "redisMaxRetries",
    "redisMinRetryInterval",
    "redisMaxRetryInterval",
    "poolSize",
    "poolTimeout",
    "maxConnAge",
    "minIdleConns",
    "idleCheckFrequency",
    "idleTimeout",
    "sentinelMasterName",
    "sentinelUsername",
    "sentinelPassword",
];

/// The longest a blocking read waits, so redelivery checks and cancellation stay prompt.
const MAX_BLOCK: Duration = Duration::from_secs(1);
/// Pause after a failed read or group creation, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Settings {
    redis: RedisSettings,
    consumer_id: String,
    processing_timeout: Duration,
    redeliver_interval: Duration,
    concurrency: usize,
    queue_depth: usize,
    max_len_approx: Option<u64>,
    ack_on_error: bool,
}

fn bad(key: &str, value: &str, reason: &str) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

impl Settings {
    fn from_metadata(m: Metadata) -> Result<Self, MetadataError> {
        let mut m = m.with_defaults(&crate::catalog::pubsub::REDIS);
        let redis = RedisSettings::take(&mut m)?;
        let consumer_id = m.require(CONSUMER_ID)?;
        let processing_timeout = m.duration("processingTimeout")?.unwrap_or(Duration::from_secs(15));
        let redeliver_interval = m.duration("redeliverInterval")?.unwrap_or(Duration::from_secs(60));
        let positive = |key: &'static str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(bad(key, "0", "must be at least 1")),
            v => Ok(v.unwrap_or(default)),
        };
        let concurrency = positive("concurrency", m.parse::<usize>("concurrency")?, 10)?;
        let queue_depth = positive("queueDepth", m.parse::<usize>("queueDepth")?, 100)?;
        let max_len_approx = m.parse::<u64>("maxLenApprox")?.filter(|n| *n > 0);
        let ack_on_error = m.take("ackOnError").as_deref().map(|v| crate::catalog::parse_bool(v).ok_or_else(|| bad("ackOnError", v, "is not a bool"))).transpose()?.unwrap_or(false);
        m.refuse_true("useEntraID", "Entra ID needs TLS, which this build does not speak to Redis")?;
        m.refuse_set("streamTTL", "use maxLenApprox to bound streams")?;
        for key in POOL_KEYS {
            m.ignore(key);
        }
        m.finish()?;
        Ok(Self { redis, consumer_id, processing_timeout, redeliver_interval, concurrency, queue_depth, max_len_approx, ack_on_error })
    }

    fn redelivery(&self) -> bool {
        !self.processing_timeout.is_zero() && !self.redeliver_interval.is_zero()
    }

    fn block(&self) -> Duration {
        if self.redelivery() { self.redeliver_interval.min(MAX_BLOCK) } else { MAX_BLOCK }
    }
}

/// What subscriptions share with the component.
struct Inner {
    settings: Settings,
    /// Publishes, acks and claims (multiplexed; never blocks).
    conn: RedisConn,
    closed: CancellationToken,
    tasks: TaskTracker,
}

/// The Redis Streams broker.
pub struct RedisPubSub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPubSub").field("addr", &self.inner.conn.addr).field("consumer_id", &self.inner.settings.consumer_id).finish()
    }
}

impl RedisPubSub {
    /// Builds the component from Dapr's metadata keys (declared in `catalog::pubsub::REDIS`).
    /// Connects lazily, so a Redis that is down does not stop the sidecar: publishes fail as
    /// unavailable within `timeout` and subscriptions start once Redis answers. Needs a tokio runtime.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let settings = Settings::from_metadata(metadata)?;
        let conn = RedisConn::new(&settings.redis)?;
        Ok(Self { inner: Arc::new(Inner { settings, conn, closed: CancellationToken::new(), tasks: TaskTracker::new() }) })
    }
}

impl Inner {
    /// Runs one command on the shared connection within `timeout`; errors name the server.
    async fn call<T: redis::FromRedisValue>(&self, what: &str, cmd: &redis::Cmd) -> Result<T, ComponentError> {
        self.conn.cmd(what, cmd).await
    }

    /// Creates the consumer group at the stream's start (and the stream); an existing group is fine.
    async fn create_group(&self, topic: &str) -> Result<(), ComponentError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(topic).arg(&self.settings.consumer_id).arg("0").arg("MKSTREAM");
        match self.call::<Value>("create consumer group", &cmd).await {
            Ok(_) => Ok(()),
            Err(ComponentError::Unavailable(m)) if m.contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn ack(&self, topic: &str, id: &str) {
        let mut cmd = redis::cmd("XACK");
        cmd.arg(topic).arg(&self.settings.consumer_id).arg(id);
        if let Err(e) = self.call::<i64>("ack", &cmd).await {
            // The entry stays pending and comes back after processingTimeout: at least once.
            tracing::debug!(topic, id, error = %e, "ack failed; the entry will be redelivered");
        }
    }
}

/// One stream entry: its id and decoded message.
struct Entry {
    id: String,
    msg: Message,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Decodes `[id, [field, value, ...]]`; deleted entries (nil fields) are skipped.
fn entry(topic: &str, v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let id = text(parts.first()?)?;
    let Value::Array(fields) = parts.get(1)? else { return None };
    let mut msg = Message { topic: topic.to_string(), data: Bytes::new(), content_type: String::new(), metadata: HashMap::new() };
    for pair in fields.chunks(2) {
        let (Some(name), Some(Value::BulkString(value))) = (pair.first().and_then(text), pair.get(1)) else { continue };
        match name.as_str() {
            "data" => msg.data = Bytes::from(value.clone()),
            "metadata" => msg.metadata = serde_json::from_slice(value).unwrap_or_default(),
            "contentType" => msg.content_type = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
    }
    Some(Entry { id, msg })
}

/// Entries of an `XREADGROUP` reply (`[[stream, [entry, ...]]]`, or nil after the block time).
fn read_reply(topic: &str, v: &Value) -> Vec<Entry> {
    let streams = match v {
        Value::Array(s) => s.iter().filter_map(|s| match s {
            Value::Array(pair) => pair.get(1),
            _ => None,
        }),
        Value::Map(m) => return m.iter().flat_map(|(_, e)| entries(topic, e)).collect(),
        _ => return Vec::new(),
    };
    streams.flat_map(|e| entries(topic, e)).collect()
}

fn entries(topic: &str, v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(items) => items.iter().filter_map(|e| entry(topic, e)).collect(),
        _ => Vec::new(),
    }
}

#[async_trait::async_trait]
impl PubSub for RedisPubSub {
    fn features(&self) -> &'static [PubSubFeature] {
        &[]
    }

    async fn publish(&self, msg: Message) -> Result<(), ComponentError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&msg.topic);
        if let Some(n) = inner.settings.max_len_approx {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*").arg("data").arg(msg.data.as_ref());
        if !msg.metadata.is_empty() {
            let json = serde_json::to_vec(&msg.metadata).map_err(|e| ComponentError::InvalidRequest(format!("metadata: {e}")))?;
            cmd.arg("metadata").arg(json);
        }
        if !msg.content_type.is_empty() {
            cmd.arg("contentType").arg(&msg.content_type);
        }
        inner.call::<String>(&format!("publish to stream {:?}", msg.topic), &cmd).await.map(|_| ())
    }

    async fn subscribe(&self, topic: &str, handler: MessageHandler, cancel: CancellationToken) -> Result<(), ComponentError> {
        let inner = self.inner.clone();
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        if topic.is_empty() {
            return Err(ComponentError::InvalidRequest("topic is empty".to_string()));
        }
        let r = &inner.settings.redis;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(r.dial_timeout))
            .set_response_timeout(Some(r.read_timeout + inner.settings.block()))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let reader = ConnectionManager::new_lazy_with_config(inner.conn.client.clone(), config).map_err(|e| inner.conn.error("connect", &e))?;
        // Best effort now, so messages published right after subscribing are in the group; when
        // Redis is down the subscription keeps trying in the background.
        let ready = match inner.create_group(topic).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(topic, error = %e, "redis pubsub: consumer group not created yet; retrying in the background");
                false
            }
        };
        let sub = Subscription { inner: inner.clone(), topic: topic.to_string(), handler, reader, in_flight: Arc::default() };
        let span = tracing::info_span!("redis_subscription", topic, group = %inner.settings.consumer_id);
        let cancel = cancel.child_token();
        let closed = inner.closed.clone();
        inner.tasks.spawn(
            async move {
                tokio::select! {
                    _ = closed.cancelled() => {}
                    _ = cancel.cancelled() => {}
                    _ = sub.run(ready) => {}
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    async fn close(&self) {
        self.inner.closed.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// One topic's read loop.
struct Subscription {
    inner: Arc<Inner>,
    topic: String,
    handler: MessageHandler,
    reader: ConnectionManager,
    /// Entry ids being handled here, so a claim does not hand them out a second time.
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Subscription {
    async fn run(mut self, mut ready: bool) {
        let s = self.inner.settings.clone();
        let permits = Arc::new(Semaphore::new(s.concurrency));
        let mut backoff = MIN_BACKOFF;
        let mut next_claim = tokio::time::Instant::now() + s.redeliver_interval;
        let mut degraded = false;
        loop {
            let step = async {
                if !ready {
                    self.inner.create_group(&self.topic).await?;
                    ready = true;
                }
                if s.redelivery() && tokio::time::Instant::now() >= next_claim {
                    next_claim = tokio::time::Instant::now() + s.redeliver_interval;
                    for e in self.claim().await? {
                        self.dispatch(e, &permits).await;
                    }
                }
                for e in self.read().await? {
                    self.dispatch(e, &permits).await;
                }
                Ok::<(), ComponentError>(())
            };
            match step.await {
                Ok(()) => {
                    if degraded {
                        tracing::info!("redis pubsub: subscription resumed");
                        degraded = false;
                    }
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    if e.to_string().contains("NOGROUP") {
                        // The stream or group was deleted: create it again.
                        ready = false;
                    } else if !degraded {
                        tracing::warn!(error = %e, "redis pubsub: subscription interrupted; retrying");
                        degraded = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn read(&mut self) -> Result<Vec<Entry>, ComponentError> {
        let s = &self.inner.settings;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&s.consumer_id).arg(&s.consumer_id).arg("COUNT").arg(s.queue_depth);
        cmd.arg("BLOCK").arg(s.block().as_millis() as u64).arg("STREAMS").arg(&self.topic).arg(">");
        let limit = s.redis.read_timeout + s.block();
        match tokio::time::timeout(limit, cmd.query_async::<Value>(&mut self.reader)).await {
            Ok(Ok(v)) => Ok(read_reply(&self.topic, &v)),
            Ok(Err(e)) => Err(ComponentError::Unavailable(format!("redis {}: read stream {:?}: {e}", self.inner.conn.addr, self.topic))),
            Err(_) => Err(ComponentError::Unavailable(format!("redis {}: read stream {:?}: no answer within {limit:?}", self.inner.conn.addr, self.topic))),
        }
    }

    /// Claims entries pending longer than `processingTimeout` (any consumer's), skipping our own
    /// in-flight ones.
    async fn claim(&self) -> Result<Vec<Entry>, ComponentError> {
        let s = &self.inner.settings;
        let mut found = Vec::new();
        let mut cursor = "0-0".to_string();
        // Bounded: a few pages per round; the rest waits for the next interval.
        for _ in 0..10 {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.topic).arg(&s.consumer_id).arg(&s.consumer_id).arg(s.processing_timeout.as_millis() as u64);
            cmd.arg(&cursor).arg("COUNT").arg(s.queue_depth);
            let reply: Value = self.inner.call("claim pending entries", &cmd).await?;
            let Value::Array(parts) = reply else { break };
            let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).clone();
            found.extend(parts.get(1).map(|e| entries(&self.topic, e)).unwrap_or_default().into_iter().filter(|e| !in_flight.contains(&e.id)));
            match parts.first().and_then(text) {
                Some(next) if next != "0-0" => cursor = next,
                _ => break,
            }
        }
        if !found.is_empty() {
            tracing::debug!(topic = %self.topic, count = found.len(), "redelivering pending entries");
        }
        Ok(found)
    }

    /// Hands one entry to the handler on its own task (at most `concurrency` at once); acks on success.
    async fn dispatch(&self, e: Entry, permits: &Arc<Semaphore>) {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(e.id.clone());
        let (inner, handler, in_flight, topic) = (self.inner.clone(), self.handler.clone(), self.in_flight.clone(), self.topic.clone());
        self.inner.tasks.spawn(async move {
            let result = handler(e.msg).await;
            if result.is_ok() || inner.settings.ack_on_error {
                inner.ack(&topic, &e.id).await;
            } else if let Err(err) = result {
                tracing::debug!(topic, id = %e.id, error = %err, "handler failed; left pending for redelivery");
            }
            in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&e.id);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[tokio::test]
    async fn metadata_is_checked_by_name() {
        let err = |pairs: &[(&str, &str)]| RedisPubSub::from_config(meta(pairs)).expect_err("invalid metadata").to_string();
        let base = [("redisHost", "127.0.0.1:6379"), (CONSUMER_ID, "app")];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            err(&v)
        };
        assert!(err(&[(CONSUMER_ID, "app")]).contains("redisHost"));
        assert!(err(&[("redisHost", "h:1")]).contains(CONSUMER_ID));
        assert!(with(("processingTimeout", "soon")).contains("processingTimeout"));
        assert!(with(("concurrency", "0")).contains("concurrency"));
        assert!(with(("maxLenApprox", "lots")).contains("maxLenApprox"));
        assert!(with(("enableTLS", "true")).contains("enableTLS"));
        // Unsupported values are refused by the declaration, before a file reaches the backend.
        let declared = |k: &str, v: &str| crate::catalog::pubsub::REDIS.validate(&[(k.to_string(), v.to_string()), ("redisHost".into(), "h:1".into())].into()).expect_err("unsupported").to_string();
        assert!(declared("redisType", "cluster").contains("redisType"));
        assert!(declared("streamTTL", "1h").contains("streamTTL"));
        assert!(with(("consumerId", "x")).contains("consumerId"));
        let ok = RedisPubSub::from_config(meta(&[
            ("redisHost", "127.0.0.1:6379"),
            (CONSUMER_ID, "app"),
            ("redeliverInterval", "0"),
            ("processingTimeout", "30s"),
            ("maxLenApprox", "1000"),
            ("poolSize", "20"),
            ("enableTLS", "false"),
        ]))
        .expect("valid");
        assert!(!ok.inner.settings.redelivery());
        assert_eq!(ok.inner.settings.max_len_approx, Some(1000));
    }
}
