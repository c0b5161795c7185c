//! `configuration.postgresql`: items are rows `(key, value, version, metadata)` of a table the
//! operator creates (Dapr's layout). A subscription LISTENs on the channel named by the subscribe
//! request's `pgNotifyChannel`, fed by a trigger that sends `pg_notify(channel, json)` with
//! `{"action": TG_OP, "data": row}` as Dapr documents. A subscription that loses its connection
//! reconnects, LISTENs again, re-reads its keys and delivers what changed meanwhile.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use tokio_util::sync::CancellationToken;

use super::watch::{self, Subscriptions};
use super::{ConfigItem, ConfigStore, ConfigSubscription};
use crate::metadata::{Metadata, MetadataError};
use crate::pg_conn::{PgPool, PgSettings, quote_ident};
use crate::{ComponentError, catalog};

/// The subscribe metadata key naming the notification channel (Dapr's).
pub const NOTIFY_CHANNEL: &str = "pgNotifyChannel";

/// How often an idle subscription checks that its connection is alive.
const PING_EVERY: Duration = Duration::from_secs(5);

/// The PostgreSQL configuration store.
#[derive(Debug)]
pub struct PostgresConfigStore {
    pg: PgPool,
    settings: PgSettings,
    get_some: String,
    get_all: String,
    update: String,
    insert: String,
    lock: String,
    subs: Subscriptions,
}

impl PostgresConfigStore {
    /// Builds the store from `connectionString`, `timeoutInSeconds` and `table`; connects lazily.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::configuration::POSTGRESQL);
        let settings = PgSettings::take(&mut m)?;
        let name = m.require("table")?;
        m.finish()?;
        let table = quote_ident(&name).map_err(|reason| MetadataError::BadValue { key: "table".to_string(), value: name.clone(), reason })?;
        let columns = "key, value, version, metadata::text";
        Ok(Self {
            pg: PgPool::new(&settings)?,
            settings,
            get_some: format!("SELECT {columns} FROM {table} WHERE key = ANY($1)"),
            get_all: format!("SELECT {columns} FROM {table}"),
            update: format!(
                "UPDATE {table} SET value = $2, version = CASE WHEN version ~ '^[0-9]{{1,18}}$' THEN (version::bigint + 1)::text ELSE version || '.1' END WHERE key = $1"
            ),
            insert: format!("INSERT INTO {table} (key, value, version, metadata) VALUES ($1, $2, '1', '{{}}')"),
            lock: format!("SELECT pg_advisory_xact_lock(hashtext('oxidecar-config-{name}-' || $1))"),
            subs: Subscriptions::default(),
        })
    }
}

fn item(row: &Row) -> Result<(String, ConfigItem), ComponentError> {
    let broken = |e: tokio_postgres::Error| ComponentError::Unavailable(format!("postgresql configuration row: {e}"));
    let key: String = row.try_get(0).map_err(broken)?;
    let value: String = row.try_get(1).map_err(broken)?;
    let version: String = row.try_get(2).map_err(broken)?;
    let metadata: Option<String> = row.try_get(3).map_err(broken)?;
    let metadata = metadata.and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok()).map(flatten).unwrap_or_default();
    Ok((key, ConfigItem { value, version, metadata }))
}

/// A JSON object's entries as strings (non-string values as their JSON text).
fn flatten(v: serde_json::Value) -> HashMap<String, String> {
    match v {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }))
            .collect(),
        _ => HashMap::new(),
    }
}

async fn read(pg: &PgPool, get_some: &str, get_all: &str, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ComponentError> {
    let rows = if keys.is_empty() { pg.query("get", get_all, &[]).await? } else { pg.query("get", get_some, &[&keys]).await? };
    rows.iter().map(item).collect()
}

/// A notification as the documented trigger sends it.
fn parse_notification(payload: &str) -> Option<(String, ConfigItem)> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let data = v.get("data")?;
    let key = data.get("key")?.as_str()?.to_string();
    if v.get("action").and_then(|a| a.as_str()).is_some_and(|a| a.eq_ignore_ascii_case("DELETE")) {
        return Some((key, ConfigItem::default()));
    }
    let text = |f: &str| data.get(f).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    let metadata = data.get("metadata").cloned().map(flatten).unwrap_or_default();
    Some((key, ConfigItem { value: text("value"), version: text("version"), metadata }))
}

#[async_trait::async_trait]
impl ConfigStore for PostgresConfigStore {
    async fn get(&self, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ComponentError> {
        read(&self.pg, &self.get_some, &self.get_all, keys).await
    }

    async fn subscribe(&self, keys: Vec<String>, metadata: &HashMap<String, String>) -> Result<ConfigSubscription, ComponentError> {
        let channel = metadata.get(NOTIFY_CHANNEL).filter(|c| !c.is_empty()).ok_or_else(|| {
            ComponentError::InvalidRequest(format!("subscribe metadata {NOTIFY_CHANNEL} is required: the channel your trigger calls pg_notify on"))
        })?;
        let channel = quote_ident(channel).map_err(|r| ComponentError::InvalidRequest(format!("subscribe metadata {NOTIFY_CHANNEL}: {r}")))?;
        let listener = Listener {
            pg: self.pg.clone(),
            settings: self.settings.clone(),
            channel,
            keys,
            get_some: self.get_some.clone(),
            get_all: self.get_all.clone(),
        };
        // Connect, LISTEN and read the starting point now, so a server that is down fails the call.
        let session = listener.connect().await?;
        let seen = read(&self.pg, &self.get_some, &self.get_all, &listener.keys).await?;
        let (tx, updates) = mpsc::channel(watch::SUBSCRIBER_DEPTH);
        let id = self.subs.start("pg-cfg", move |cancel| listener.run(session, seen, tx, cancel));
        Ok(ConfigSubscription { id, updates })
    }

    async fn unsubscribe(&self, id: &str) -> Result<bool, ComponentError> {
        Ok(self.subs.stop(id))
    }

    /// Writes items (oxidecar extension): an existing row gets the value and its version counted
    /// on; a new key is inserted with version `1`.
    async fn set(&self, items: HashMap<String, String>) -> Result<(), ComponentError> {
        if items.keys().any(String::is_empty) {
            return Err(ComponentError::InvalidRequest("configuration key is empty".to_string()));
        }
        let mut client = self.pg.get("set").await?;
        let c: &mut deadpool_postgres::ClientWrapper = &mut client;
        let (update, insert, lock) = (&self.update, &self.insert, &self.lock);
        let work = async move {
            let tx = c.transaction().await?;
            for (k, v) in &items {
                tx.execute(lock.as_str(), &[k]).await?;
                if tx.execute(update.as_str(), &[k, v]).await? == 0 {
                    tx.execute(insert.as_str(), &[k, v]).await?;
                }
            }
            tx.commit().await
        };
        let r = tokio::time::timeout(self.pg.timeout, work).await;
        self.pg.judge("set", client, r)
    }

    async fn close(&self) {
        self.subs.close().await;
        self.pg.close();
    }
}

/// A LISTENing connection: notifications arrive on `notes` until the connection ends.
struct Session {
    client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<String>,
    driver: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One subscription's settings.
struct Listener {
    pg: PgPool,
    settings: PgSettings,
    channel: String,
    keys: Vec<String>,
    get_some: String,
    get_all: String,
}

impl Listener {
    async fn connect(&self) -> Result<Session, ComponentError> {
        let addr = &self.pg.addr;
        let fail = |e: tokio_postgres::Error| ComponentError::Unavailable(format!("postgresql {addr}: subscribe: {e}"));
        let work = async {
            let (client, mut conn) = self.settings.config.connect(NoTls).await.map_err(fail)?;
            let (tx, notes) = mpsc::unbounded_channel();
            // The connection delivers notifications only while polled; it ends when the server goes.
            let driver = tokio::spawn(async move {
                while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    match msg {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx.send(n.payload().to_string()).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            let session = Session { client, notes, driver };
            session.client.batch_execute(&format!("LISTEN {}", self.channel)).await.map_err(fail)?;
            Ok(session)
        };
        tokio::time::timeout(self.pg.timeout, work).await.unwrap_or_else(|_| Err(self.pg.timed_out("subscribe")))
    }

    async fn run(self, first: Session, mut seen: HashMap<String, ConfigItem>, tx: mpsc::Sender<HashMap<String, ConfigItem>>, cancel: CancellationToken) {
        let mut session = Some(first);
        loop {
            let mut s = match session.take() {
                Some(s) => s,
                None => {
                    let reread = || read(&self.pg, &self.get_some, &self.get_all, &self.keys);
                    let Some(s) = watch::reconnect(&cancel, || self.connect(), reread, &mut seen, &self.keys, &tx).await else { return };
                    tracing::info!(postgresql = %self.pg.addr, "configuration subscription reconnected");
                    s
                }
            };
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    note = s.notes.recv() => {
                        let Some(payload) = note else { break };
                        let Some((key, item)) = parse_notification(&payload) else {
                            tracing::debug!(payload, "notification is not a configuration row; ignored");
                            continue;
                        };
                        if !watch::wanted(&self.keys, &key) || seen.get(&key) == Some(&item) {
                            continue;
                        }
                        if item == ConfigItem::default() {
                            seen.remove(&key);
                        } else {
                            seen.insert(key.clone(), item.clone());
                        }
                        if !watch::deliver(&tx, HashMap::from([(key, item)])).await {
                            return;
                        }
                    }
                    _ = ping.tick() => {
                        let alive = tokio::time::timeout(self.pg.timeout, s.client.simple_query("SELECT 1")).await;
                        if !matches!(alive, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            tracing::warn!(postgresql = %self.pg.addr, "configuration subscription lost its connection; reconnecting");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_follow_daprs_trigger_payload() {
        let upd = r#"{"table":"cfg","action":"UPDATE","data":{"key":"k","value":"v","version":"2","metadata":{"team":"a","n":1}}}"#;
        let (k, i) = parse_notification(upd).expect("parsed");
        assert_eq!((k.as_str(), i.value.as_str(), i.version.as_str()), ("k", "v", "2"));
        assert_eq!(i.metadata.get("n").map(String::as_str), Some("1"));
        let del = r#"{"table":"cfg","action":"DELETE","data":{"key":"k","value":"v","version":"2","metadata":null}}"#;
        assert_eq!(parse_notification(del), Some(("k".to_string(), ConfigItem::default())));
        assert_eq!(parse_notification("not json"), None);
    }
}
