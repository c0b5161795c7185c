//! `configuration.redis`: each item is a Redis string `value||version` (Dapr's layout, so items
//! written for daprd are read unchanged). Subscriptions follow keyspace notifications on their own
//! pub/sub connection; on start the store adds the flags it needs to `notify-keyspace-events`
//! (unless `enableKeyspaceNotifications` is `false`). A subscription that loses its connection
//! reconnects, re-reads its keys and delivers what changed meanwhile.

use std::collections::HashMap;
use std::time::Duration;

use redis::Script;
use tokio::sync::{OnceCell, mpsc};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::watch::{self, Subscriptions};
use super::{ConfigItem, ConfigStore, ConfigSubscription};
use crate::metadata::{Metadata, MetadataError};
use crate::redis_conn::{RedisConn, RedisSettings};
use crate::{ComponentError, catalog};

/// Dapr's separator between value and version.
pub const SEPARATOR: &str = "||";

/// Keyspace events the subscriptions need: keyspace channel (K), string commands ($), generic
/// commands such as DEL and RENAME (g), and expiry (x).
const NOTIFY_FLAGS: &str = "K$gx";

/// How often an idle subscription checks that its connection is alive.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Writes `value||version`, the version counting up from the stored one.
const SET_ITEM: &str = r#"
local cur = redis.call("GET", KEYS[1])
local ver = 0
if cur then
  local s = string.find(cur, "||", 1, true)
  if s then ver = tonumber(string.sub(cur, s + 2)) or 0 end
end
ver = ver + 1
redis.call("SET", KEYS[1], ARGV[1] .. "||" .. ver)
return ver
"#;

/// Splits a stored string into value and version as Dapr does.
pub fn parse_item(raw: &str) -> ConfigItem {
    let mut parts = raw.split(SEPARATOR);
    let value = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or_default().to_string();
    ConfigItem { value, version, metadata: HashMap::new() }
}

/// The Redis configuration store.
#[derive(Debug)]
pub struct RedisConfigStore {
    redis: RedisConn,
    db: i64,
    configure_notifications: bool,
    notifications: OnceCell<()>,
    set_item: Script,
    subs: Subscriptions,
}

impl RedisConfigStore {
    /// Builds the store from Dapr's Redis keys; connects lazily.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::configuration::REDIS);
        let settings = RedisSettings::take(&mut m)?;
        let configure_notifications = m.parse::<bool>("enableKeyspaceNotifications")?.unwrap_or(true);
        m.finish()?;
        Ok(Self {
            redis: RedisConn::new(&settings)?,
            db: settings.db,
            configure_notifications,
            notifications: OnceCell::new(),
            set_item: Script::new(SET_ITEM),
            subs: Subscriptions::default(),
        })
    }

    /// Adds our flags to `notify-keyspace-events` once; a server that refuses CONFIG is left alone
    /// (a warning says subscriptions need the flags set by the operator).
    async fn ensure_notifications(&self) {
        if !self.configure_notifications {
            return;
        }
        let _ = self
            .notifications
            .get_or_try_init(|| async {
                let current: Vec<String> =
                    self.redis.cmd("config get", redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events")).await?;
                let mut flags = current.get(1).cloned().unwrap_or_default();
                for f in NOTIFY_FLAGS.chars() {
                    // `A` stands for every event class, not for the K/E channel flags.
                    let covered = flags.contains(f) || (f != 'K' && f != 'E' && flags.contains('A'));
                    if !covered {
                        flags.push(f);
                    }
                }
                match self.redis.cmd::<()>("config set", redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg(&flags)).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        tracing::warn!(redis = %self.redis.addr, error = %e, "cannot enable keyspace notifications; configuration subscriptions need notify-keyspace-events to include {NOTIFY_FLAGS}");
                        Err(e)
                    }
                }
            })
            .await;
    }
}

/// Reads the given keys (every string key when empty) with the connection of `redis`.
async fn read(redis: &RedisConn, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ComponentError> {
    let keys: Vec<String> = if keys.is_empty() {
        let mut all = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis.cmd("scan", redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000)).await?;
            all.extend(batch);
            if next == 0 {
                break all;
            }
            cursor = next;
        }
    } else {
        keys.to_vec()
    };
    let mut out = HashMap::new();
    for chunk in keys.chunks(500) {
        // MGET answers nil for missing keys and for keys of other types (state hashes, streams).
        let values: Vec<Option<String>> = redis.cmd("get", redis::cmd("MGET").arg(chunk)).await?;
        for (k, v) in chunk.iter().zip(values) {
            if let Some(raw) = v {
                out.insert(k.clone(), parse_item(&raw));
            }
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl ConfigStore for RedisConfigStore {
    async fn get(&self, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ComponentError> {
        read(&self.redis, keys).await
    }

    async fn subscribe(&self, keys: Vec<String>, _metadata: &HashMap<String, String>) -> Result<ConfigSubscription, ComponentError> {
        self.ensure_notifications().await;
        // Connect and read the starting point now, so a Redis that is down fails the call.
        let listener = Listener { redis: self.redis.clone(), db: self.db, keys };
        let pubsub = listener.connect().await?;
        let seen = read(&self.redis, &listener.keys).await?;
        let (tx, updates) = mpsc::channel(watch::SUBSCRIBER_DEPTH);
        let id = self.subs.start("redis-cfg", move |cancel| listener.run(pubsub, seen, tx, cancel));
        Ok(ConfigSubscription { id, updates })
    }

    async fn unsubscribe(&self, id: &str) -> Result<bool, ComponentError> {
        Ok(self.subs.stop(id))
    }

    async fn set(&self, items: HashMap<String, String>) -> Result<(), ComponentError> {
        for (k, v) in items {
            if k.is_empty() {
                return Err(ComponentError::InvalidRequest("configuration key is empty".to_string()));
            }
            let mut inv = self.set_item.prepare_invoke();
            inv.key(&k).arg(v);
            let inv = &inv;
            let _: i64 = self.redis.run("set", |mut conn| async move { inv.invoke_async(&mut conn).await }).await?;
        }
        Ok(())
    }

    async fn close(&self) {
        self.subs.close().await;
    }
}

/// One subscription's connection to the keyspace channels.
struct Listener {
    redis: RedisConn,
    db: i64,
    keys: Vec<String>,
}

impl Listener {
    fn channel_prefix(&self) -> String {
        format!("__keyspace@{}__:", self.db)
    }

    async fn connect(&self) -> Result<redis::aio::PubSub, ComponentError> {
        let fut = async {
            let mut ps = self.redis.client.get_async_pubsub().await?;
            if self.keys.is_empty() {
                ps.psubscribe(format!("{}*", self.channel_prefix())).await?;
            } else {
                let channels: Vec<String> = self.keys.iter().map(|k| format!("{}{k}", self.channel_prefix())).collect();
                ps.subscribe(channels).await?;
            }
            Ok(ps)
        };
        self.redis.call("subscribe", fut).await
    }

    async fn run(self, first: redis::aio::PubSub, mut seen: HashMap<String, ConfigItem>, tx: mpsc::Sender<HashMap<String, ConfigItem>>, cancel: CancellationToken) {
        let prefix = self.channel_prefix();
        let mut pubsub = Some(first);
        loop {
            let ps = match pubsub.take() {
                Some(ps) => ps,
                None => {
                    let again = watch::reconnect(&cancel, || self.connect(), || read(&self.redis, &self.keys), &mut seen, &self.keys, &tx);
                    let Some(ps) = again.await else { return };
                    tracing::info!(redis = %self.redis.addr, "configuration subscription reconnected");
                    ps
                }
            };
            let (mut sink, mut stream) = ps.split();
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let Some(key) = msg.get_channel_name().strip_prefix(&prefix) else { continue };
                        let fresh = match read(&self.redis, &[key.to_string()]).await {
                            Ok(f) => f,
                            Err(e) => {
                                tracing::warn!(error = %e, key, "configuration change seen but not readable; retrying after reconnect");
                                break;
                            }
                        };
                        let mut one = HashMap::from_iter(seen.remove(key).map(|i| (key.to_string(), i)));
                        let changed = watch::catch_up(&mut one, fresh, &[key.to_string()]);
                        seen.extend(one);
                        if !watch::deliver(&tx, changed).await {
                            return;
                        }
                    }
                    _ = ping.tick() => {
                        let alive = tokio::time::timeout(self.redis.timeout, sink.ping::<String>()).await;
                        if !matches!(alive, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            tracing::warn!(redis = %self.redis.addr, "configuration subscription lost its connection; reconnecting");
        }
    }
}
