//! `pubsub.rabbitmq`: AMQP 0-9-1 laid out as daprd does. A topic is an exchange (`exchangeKind`,
//! fanout by default); each subscription is a queue `<consumerID>-<topic>` bound to it, so replicas
//! with the same consumer id compete for its messages and other ids each get every message. A
//! delivery is acked only after the handler accepted it (unless `autoAck`); a failed one is
//! rejected, back to the queue when `requeueInFailure`. Publishes wait for the broker's confirm
//! (unless `publisherConfirm: false`) and fail as unavailable after [`PUBLISH_TIMEOUT`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{CONSUMER_ID, Message, MessageHandler, PubSub, PubSubFeature};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// How long a publish (connecting included) may take before it fails as unavailable; Dapr's
/// RabbitMQ component has no key for it.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries handled at once per subscription with `concurrency: parallel` and no prefetch limit.
const PARALLEL: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Settings {
    uri: String,
    /// Scheme, host and port only (the URI may hold a password).
    shown: String,
    consumer_id: String,
    durable: bool,
    deleted_when_unused: bool,
    auto_ack: bool,
    delivery_mode: u8,
    requeue_in_failure: bool,
    prefetch: u16,
    reconnect_wait: Duration,
    parallel: bool,
    confirm: bool,
    exchange_kind: ExchangeKind,
    queue_args: BTreeMap<String, i64>,
    client_name: Option<String>,
    heartbeat: Option<Duration>,
}

fn bad(key: &str, value: &str, reason: &str) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

fn flag(m: &mut Metadata, key: &'static str, default: bool) -> Result<bool, MetadataError> {
    match m.take(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => crate::catalog::parse_bool(&v).ok_or_else(|| bad(key, &v, "is not a bool")),
    }
}

impl Settings {
    fn from_metadata(m: Metadata) -> Result<Self, MetadataError> {
        let mut m = m.with_defaults(&crate::catalog::pubsub::RABBITMQ);
        let uri = match (m.take("connectionString").filter(|s| !s.is_empty()), m.take("host").filter(|s| !s.is_empty())) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => {
                let hostname = m.take("hostname").filter(|s| !s.is_empty()).ok_or_else(|| MetadataError::Missing { key: "connectionString".to_string() })?;
                let protocol = m.take("protocol").filter(|s| !s.is_empty()).unwrap_or_else(|| "amqp".to_string());
                let user = m.take("username").unwrap_or_default();
                let pass = m.take("password").unwrap_or_default();
                let auth = if user.is_empty() { String::new() } else { format!("{user}:{pass}@") };
                format!("{protocol}://{auth}{hostname}")
            }
        };
        for key in ["hostname", "protocol", "username", "password"] {
            m.ignore(key);
        }
        let shown = uri.split_once("://").map(|(s, rest)| format!("{s}://{}", rest.rsplit('@').next().unwrap_or_default())).unwrap_or_default();
        if !uri.starts_with("amqp://") {
            let reason = if uri.starts_with("amqps://") { "uses TLS, which this build does not speak to RabbitMQ" } else { "is not amqp://[user:password@]host[:port][/vhost]" };
            return Err(bad("connectionString", &shown, reason));
        }
        let consumer_id = m.require(CONSUMER_ID)?;
        let durable = flag(&mut m, "durable", false)?;
        let deleted_when_unused = flag(&mut m, "deletedWhenUnused", true)?;
        let auto_ack = flag(&mut m, "autoAck", false)?;
        let delivery_mode = m.parse::<u8>("deliveryMode")?.unwrap_or(0);
        let requeue_in_failure = flag(&mut m, "requeueInFailure", false)?;
        let prefetch = m.parse::<u16>("prefetchCount")?.unwrap_or(0);
        // The older names win when present, since the newer ones always have their declared default.
        let legacy_wait = m.duration("reconnectWaitSeconds")?;
        let reconnect_wait = legacy_wait.or(m.duration("reconnectWait")?).unwrap_or(Duration::from_secs(3)).max(Duration::from_millis(100));
        let legacy_mode = m.take("concurrencyMode").filter(|v| !v.trim().is_empty());
        let mode = legacy_mode.or(m.take("concurrency")).unwrap_or_default();
        let parallel = match mode.trim() {
            "" | "parallel" => true,
            "single" => false,
            other => return Err(bad("concurrency", other, "is not parallel or single")),
        };
        let confirm = flag(&mut m, "publisherConfirm", true)?;
        let exchange_kind = match m.take("exchangeKind").unwrap_or_default().trim() {
            "" | "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "direct" => ExchangeKind::Direct,
            other => return Err(bad("exchangeKind", other, "is not fanout, topic or direct")),
        };
        let mut queue_args = BTreeMap::new();
        if let Some(n) = m.parse::<i64>("maxLen")?.filter(|n| *n > 0) {
            queue_args.insert("x-max-length".to_string(), n);
        }
        if let Some(n) = m.parse::<i64>("maxLenBytes")?.filter(|n| *n > 0) {
            queue_args.insert("x-max-length-bytes".to_string(), n);
        }
        if let Some(ttl) = m.parse::<i64>("ttlInSeconds")?.filter(|n| *n > 0) {
            queue_args.insert("x-message-ttl".to_string(), ttl * 1000);
        }
        let client_name = m.take("clientName").filter(|s| !s.is_empty());
        let heartbeat = m.duration("heartBeat")?;
        m.refuse_true("enableDeadLetter", "the runtime's deadLetterTopic does dead-lettering")?;
        m.refuse_true("saslExternal", "TLS to RabbitMQ is not supported")?;
        for key in ["caCert", "clientCert", "clientKey"] {
            m.refuse_set(key, "TLS to RabbitMQ is not supported")?;
        }
        m.finish()?;
        Ok(Self {
            uri,
            shown,
            consumer_id,
            durable,
            deleted_when_unused,
            auto_ack,
            delivery_mode,
            requeue_in_failure,
            prefetch,
            reconnect_wait,
            parallel,
            confirm,
            exchange_kind,
            queue_args,
            client_name,
            heartbeat,
        })
    }
}

/// The publishing connection, opened on first use and again after it broke.
#[derive(Default)]
struct Publisher {
    link: Option<(Connection, Channel)>,
    exchanges: HashSet<String>,
}

struct Inner {
    settings: Settings,
    publisher: tokio::sync::Mutex<Publisher>,
    closed: CancellationToken,
    tasks: TaskTracker,
}

/// The RabbitMQ broker.
pub struct RabbitMqPubSub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RabbitMqPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqPubSub").field("broker", &self.inner.settings.shown).finish()
    }
}

impl RabbitMqPubSub {
    /// Builds the component from Dapr's metadata keys (declared in `catalog::pubsub::RABBITMQ`).
    /// Connects on first use, so a broker that is down does not stop the sidecar.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let settings = Settings::from_metadata(metadata)?;
        Ok(Self { inner: Arc::new(Inner { settings, publisher: Default::default(), closed: CancellationToken::new(), tasks: TaskTracker::new() }) })
    }
}

impl Inner {
    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> ComponentError {
        ComponentError::Unavailable(format!("rabbitmq {}: {what}: {e}", self.settings.shown))
    }

    async fn connect(&self) -> Result<(Connection, Channel), ComponentError> {
        let s = &self.settings;
        let mut props = ConnectionProperties::default();
        if let Some(n) = &s.client_name {
            props = props.with_connection_name(n.as_str().into());
        }
        let mut uri: lapin::uri::AMQPUri = s.uri.parse().map_err(|e: String| self.unavailable("connection string", e))?;
        if let Some(h) = s.heartbeat {
            uri.query.heartbeat = Some(h.as_secs().clamp(1, u64::from(u16::MAX)) as u16);
        }
        let attempt = async {
            let conn = Connection::connect_uri(uri, props).await.map_err(|e| self.unavailable("connect", e))?;
            let channel = conn.create_channel().await.map_err(|e| self.unavailable("open channel", e))?;
            Ok::<_, ComponentError>((conn, channel))
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, attempt).await.map_err(|_| self.unavailable("connect", format_args!("no answer within {PUBLISH_TIMEOUT:?}")))?
    }

    async fn declare_exchange(&self, ch: &Channel, topic: &str) -> Result<(), ComponentError> {
        let opts = ExchangeDeclareOptions { durable: self.settings.durable, ..Default::default() };
        ch.exchange_declare(topic.into(), self.settings.exchange_kind.clone(), opts, FieldTable::default())
            .await
            .map_err(|e| self.unavailable(&format!("declare exchange {topic:?}"), e))
    }

    /// Declares the exchange and this consumer's queue, binds them, and starts consuming.
    async fn consume(&self, topic: &str) -> Result<(Connection, Channel, lapin::Consumer), ComponentError> {
        let s = &self.settings;
        let (conn, ch) = self.connect().await?;
        let queue = format!("{}-{topic}", s.consumer_id);
        let setup = async {
            self.declare_exchange(&ch, topic).await?;
            let mut args = FieldTable::default();
            for (k, v) in &s.queue_args {
                args.insert(k.as_str().into(), AMQPValue::LongLongInt(*v));
            }
            let opts = QueueDeclareOptions { durable: s.durable, auto_delete: s.deleted_when_unused, ..Default::default() };
            ch.queue_declare(queue.as_str().into(), opts, args).await.map_err(|e| self.unavailable(&format!("declare queue {queue:?}"), e))?;
            ch.queue_bind(queue.as_str().into(), topic.into(), "".into(), QueueBindOptions::default(), FieldTable::default())
                .await
                .map_err(|e| self.unavailable(&format!("bind queue {queue:?}"), e))?;
            if s.prefetch > 0 {
                ch.basic_qos(s.prefetch, BasicQosOptions::default()).await.map_err(|e| self.unavailable("prefetch", e))?;
            }
            let opts = BasicConsumeOptions { no_ack: s.auto_ack, ..Default::default() };
            ch.basic_consume(queue.as_str().into(), "".into(), opts, FieldTable::default()).await.map_err(|e| self.unavailable(&format!("consume {queue:?}"), e))
        };
        let consumer = tokio::time::timeout(PUBLISH_TIMEOUT, setup).await.map_err(|_| self.unavailable(&format!("consume {queue:?}"), "no answer in time"))??;
        Ok((conn, ch, consumer))
    }

    async fn publish(&self, msg: &Message) -> Result<(), ComponentError> {
        let s = &self.settings;
        let channel = {
            let mut p = self.publisher.lock().await;
            if p.link.as_ref().is_none_or(|(c, _)| !c.status().connected()) {
                let (conn, ch) = self.connect().await?;
                if s.confirm {
                    ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| self.unavailable("enable confirms", e))?;
                }
                p.link = Some((conn, ch));
                p.exchanges.clear();
            }
            let ch = p.link.as_ref().map(|(_, ch)| ch.clone()).ok_or_else(|| self.unavailable("publish", "not connected"))?;
            if !p.exchanges.contains(&msg.topic) {
                self.declare_exchange(&ch, &msg.topic).await?;
                p.exchanges.insert(msg.topic.clone());
            }
            ch
        };
        let mut headers = FieldTable::default();
        for (k, v) in &msg.metadata {
            headers.insert(k.as_str().into(), AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())));
        }
        let mut props = BasicProperties::default().with_headers(headers);
        if !msg.content_type.is_empty() {
            props = props.with_content_type(msg.content_type.as_str().into());
        }
        if s.delivery_mode > 0 {
            props = props.with_delivery_mode(s.delivery_mode);
        }
        let routing_key: ShortString = msg.metadata.get("routingKey").map(String::as_str).unwrap_or("").into();
        let what = format!("publish to exchange {:?}", msg.topic);
        let confirm = channel.basic_publish(msg.topic.as_str().into(), routing_key, BasicPublishOptions::default(), &msg.data, props).await;
        let result = match confirm {
            Ok(c) => match c.await {
                Ok(lapin::Confirmation::Nack(_)) => Err(self.unavailable(&what, "the broker refused the message")),
                Ok(_) => Ok(()),
                Err(e) => Err(self.unavailable(&what, e)),
            },
            Err(e) => Err(self.unavailable(&what, e)),
        };
        if result.is_err() {
            // Open a fresh connection next time.
            self.publisher.lock().await.link = None;
        }
        result
    }
}

fn message_of(topic: &str, d: &lapin::message::Delivery) -> Message {
    let mut metadata = HashMap::new();
    if let Some(h) = d.properties.headers() {
        for (k, v) in h.inner() {
            if let AMQPValue::LongString(s) = v {
                metadata.insert(k.as_str().to_string(), String::from_utf8_lossy(s.as_bytes()).into_owned());
            }
        }
    }
    let content_type = d.properties.content_type().as_ref().map(|c| c.as_str().to_string()).unwrap_or_default();
    Message { topic: topic.to_string(), data: Bytes::from(d.data.clone()), content_type, metadata }
}

#[async_trait::async_trait]
impl PubSub for RabbitMqPubSub {
    fn features(&self) -> &'static [PubSubFeature] {
        &[]
    }

    async fn publish(&self, msg: Message) -> Result<(), ComponentError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        match tokio::time::timeout(PUBLISH_TIMEOUT, inner.publish(&msg)).await {
            Ok(r) => r,
            Err(_) => {
                if let Ok(mut p) = inner.publisher.try_lock() {
                    p.link = None;
                }
                Err(inner.unavailable(&format!("publish to exchange {:?}", msg.topic), format_args!("no answer within {PUBLISH_TIMEOUT:?}")))
            }
        }
    }

    async fn subscribe(&self, topic: &str, handler: MessageHandler, cancel: CancellationToken) -> Result<(), ComponentError> {
        let inner = self.inner.clone();
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        if topic.is_empty() {
            return Err(ComponentError::InvalidRequest("topic is empty".to_string()));
        }
        // Best effort now, so messages published right after subscribing reach the queue; when the
        // broker is down the subscription keeps trying in the background.
        let first = match inner.consume(topic).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(topic, error = %e, "rabbitmq: queue not ready yet; retrying in the background");
                None
            }
        };
        let (closed, topic) = (inner.closed.clone(), topic.to_string());
        let span = tracing::info_span!("rabbitmq_subscription", topic = %topic, consumer = %inner.settings.consumer_id);
        inner.tasks.clone().spawn(
            async move {
                tokio::select! {
                    _ = closed.cancelled() => {}
                    _ = cancel.cancelled() => {}
                    _ = run(inner, topic, handler, first) => {}
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    async fn close(&self) {
        let inner = &self.inner;
        inner.closed.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        if let Some((conn, _)) = inner.publisher.lock().await.link.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "closing".into())).await;
        }
    }
}

/// The subscription loop: consumes until the connection breaks, then reconnects.
async fn run(inner: Arc<Inner>, topic: String, handler: MessageHandler, mut first: Option<(Connection, Channel, lapin::Consumer)>) {
    let s = inner.settings.clone();
    let limit = if !s.parallel { 1 } else if s.prefetch > 0 { usize::from(s.prefetch) } else { PARALLEL };
    let permits = Arc::new(Semaphore::new(limit));
    let mut wait = s.reconnect_wait.min(Duration::from_millis(500));
    let mut degraded = false;
    loop {
        let link = match first.take() {
            Some(l) => Ok(l),
            None => inner.consume(&topic).await,
        };
        match link {
            Ok((conn, _channel, mut consumer)) => {
                if degraded {
                    tracing::info!("rabbitmq: subscription resumed");
                    degraded = false;
                }
                wait = s.reconnect_wait.min(Duration::from_millis(500));
                while let Some(next) = consumer.next().await {
                    let Ok(delivery) = next else { break };
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let (handler, topic, s) = (handler.clone(), topic.clone(), s.clone());
                    inner.tasks.spawn(async move {
                        let result = handler(message_of(&topic, &delivery)).await;
                        if !s.auto_ack {
                            let done = match result {
                                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                                Err(_) => delivery.acker.nack(BasicNackOptions { requeue: s.requeue_in_failure, ..Default::default() }).await,
                            };
                            if let Err(e) = done {
                                // Unanswered, the broker delivers it again once the channel closes.
                                tracing::debug!(error = %e, "rabbitmq: ack not sent");
                            }
                        }
                        drop(permit);
                    });
                }
                drop(conn);
                if !degraded {
                    tracing::warn!("rabbitmq: subscription interrupted; reconnecting");
                    degraded = true;
                }
            }
            Err(e) => {
                if !degraded {
                    tracing::warn!(error = %e, "rabbitmq: subscription interrupted; reconnecting");
                    degraded = true;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(s.reconnect_wait.max(MAX_BACKOFF));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn metadata_is_checked_by_name() {
        let err = |pairs: &[(&str, &str)]| RabbitMqPubSub::from_config(meta(pairs)).expect_err("invalid metadata").to_string();
        let with = |extra: (&'static str, &'static str)| err(&[("connectionString", "amqp://guest:guest@127.0.0.1:5672"), (CONSUMER_ID, "app"), extra]);
        assert!(err(&[(CONSUMER_ID, "app")]).contains("connectionString"));
        let tls = err(&[("connectionString", "amqps://u:hunter2@h:5671"), (CONSUMER_ID, "app")]);
        assert!(tls.contains("TLS") && !tls.contains("hunter2"), "{tls}");
        assert!(with(("exchangeKind", "headers")).contains("exchangeKind"));
        assert!(with(("prefetchCount", "-1")).contains("prefetchCount"));
        assert!(with(("durable", "yes")).contains("durable"));
        assert!(with(("enableDeadLetter", "true")).contains("enableDeadLetter"));
        assert!(with(("requeueOnFailure", "true")).contains("requeueOnFailure"));
        let ok = RabbitMqPubSub::from_config(meta(&[("hostname", "127.0.0.1"), ("username", "guest"), ("password", "guest"), (CONSUMER_ID, "app"), ("maxLen", "10"), ("exchangeKind", "topic")])).expect("valid");
        let s = &ok.inner.settings;
        assert_eq!(s.uri, "amqp://guest:guest@127.0.0.1");
        assert!(s.deleted_when_unused && !s.durable && s.confirm && s.parallel);
        assert_eq!(s.queue_args.get("x-max-length"), Some(&10));
    }
}
