//! `pubsub.jetstream`: NATS JetStream with durable pull consumers. A topic is a subject; it must be
//! captured by a stream — `streamName` when set (created, or extended with the subject, when it
//! lacks it), else whichever stream already captures the subject, else a new stream named after the
//! topic. Each subscription is a durable consumer named `<durableName|queueGroupName|consumerID>-
//! <topic>`, so replicas with the same name share its messages and it survives sidecar restarts. A
//! message is acked only after the handler accepted it; a failed one is NAKed for redelivery, and
//! one never answered comes back after `ackWait`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{CONSUMER_ID, Message, MessageHandler, PubSub, PubSubFeature};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// How long a publish (including finding or creating its stream) may take before it fails as
/// unavailable. Dapr's JetStream component has no key for it.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages handled at once per subscription with `concurrency: parallel`.
const PARALLEL: usize = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Accepted for daprd file compatibility; push-consumer tuning that a pull consumer does not use.
const PUSH_KEYS: &[&str] = &["flowControl", "heartbeat", "rateLimit"];

#[derive(Debug, Clone)]
struct Settings {
    url: String,
    name: String,
    token: Option<String>,
    stream_name: Option<String>,
    consumer_prefix: String,
    deliver_policy: consumer::DeliverPolicy,
    ack_wait: Duration,
    max_deliver: i64,
    backoff: Vec<Duration>,
    max_ack_pending: i64,
    replicas: usize,
    memory_storage: bool,
    parallel: bool,
}

fn bad(key: &str, value: &str, reason: &str) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

impl Settings {
    fn from_metadata(m: Metadata) -> Result<Self, MetadataError> {
        let mut m = m.with_defaults(&crate::catalog::pubsub::JETSTREAM);
        let url = m.require("natsURL")?;
        if url.contains(char::is_whitespace) {
            return Err(bad("natsURL", &url, "is not a URL (use nats://host:port)"));
        }
        let name = m.take("name").filter(|n| !n.is_empty()).unwrap_or_else(|| "dapr.io - pubsub.jetstream".to_string());
        let token = m.take("token").filter(|t| !t.is_empty());
        let stream_name = m.take("streamName").filter(|s| !s.is_empty());
        if let Some(s) = &stream_name
            && s.contains(['.', '*', '>', ' ', '\t'])
        {
            return Err(bad("streamName", s, "may not contain '.', '*', '>' or spaces"));
        }
        let durable = m.take("durableName").filter(|s| !s.is_empty());
        let queue = m.take("queueGroupName").filter(|s| !s.is_empty());
        let consumer_id = m.require(CONSUMER_ID)?;
        let consumer_prefix = durable.or(queue).unwrap_or(consumer_id);
        let start_sequence = m.parse::<u64>("startSequence")?;
        let deliver_policy = match m.take("deliverPolicy").unwrap_or_default().as_str() {
            "" | "all" => consumer::DeliverPolicy::All,
            "last" => consumer::DeliverPolicy::Last,
            "new" => consumer::DeliverPolicy::New,
            "sequence" => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start_sequence.ok_or_else(|| MetadataError::Missing { key: "startSequence".to_string() })?,
            },
            other => return Err(bad("deliverPolicy", other, "is not one of all, last, new, sequence")),
        };
        if let Some(p) = m.take("ackPolicy").filter(|p| !p.is_empty() && p != "explicit") {
            return Err(bad("ackPolicy", &p, "is not supported: messages are acked explicitly, after the handler accepted them"));
        }
        let ack_wait = m.duration("ackWait")?.unwrap_or(Duration::from_secs(30));
        if ack_wait.is_zero() {
            return Err(bad("ackWait", "0", "must be greater than zero"));
        }
        let max_deliver = m.parse::<i64>("maxDeliver")?.filter(|n| *n != 0).unwrap_or(-1);
        let backoff = match m.take("backOff") {
            None => Vec::new(),
            Some(v) => v
                .trim_matches(['[', ']'])
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| crate::metadata::parse_duration(s).ok_or_else(|| bad("backOff", &v, "is not a list of durations (50ms, 1s, 10s)")))
                .collect::<Result<_, _>>()?,
        };
        let max_ack_pending = m.parse::<i64>("maxAckPending")?.filter(|n| *n > 0).unwrap_or(1000);
        let replicas = m.parse::<usize>("replicas")?.filter(|n| *n > 0).unwrap_or(1);
        let memory_storage = m.parse::<bool>("memoryStorage")?.unwrap_or(false);
        let parallel = match m.take("concurrency").unwrap_or_default().as_str() {
            "" | "single" => false,
            "parallel" => true,
            other => return Err(bad("concurrency", other, "is not single or parallel")),
        };
        m.refuse_set("startTime", "use deliverPolicy all, last, new or sequence")?;
        m.refuse_set("jwt", "JWT authentication is not supported; use token")?;
        m.refuse_set("seedKey", "JWT authentication is not supported; use token")?;
        m.refuse_set("tls_client_cert", "TLS client certificates are not supported")?;
        m.refuse_set("tls_client_key", "TLS client certificates are not supported")?;
        m.refuse_set("domain", "JetStream domains are not supported")?;
        m.refuse_set("apiPrefix", "a custom JetStream API prefix is not supported")?;
        for key in PUSH_KEYS {
            m.ignore(key);
        }
        m.finish()?;
        Ok(Self {
            url,
            name,
            token,
            stream_name,
            consumer_prefix,
            deliver_policy,
            ack_wait,
            max_deliver,
            backoff,
            max_ack_pending,
            replicas,
            memory_storage,
            parallel,
        })
    }
}

/// A name JetStream accepts for a stream or consumer.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

struct Inner {
    settings: Settings,
    js: OnceCell<jetstream::Context>,
    /// topic → the stream that captures it, once checked.
    streams: Mutex<HashMap<String, String>>,
    closed: CancellationToken,
    tasks: TaskTracker,
}

/// The JetStream broker.
pub struct JetStreamPubSub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamPubSub").field("url", &self.inner.settings.url).finish()
    }
}

fn unavailable(url: &str, what: &str, e: impl std::fmt::Display) -> ComponentError {
    ComponentError::Unavailable(format!("nats {url}: {what}: {e}"))
}

impl JetStreamPubSub {
    /// Builds the component from Dapr's metadata keys (declared in `catalog::pubsub::JETSTREAM`). Connects on first use and
    /// keeps reconnecting, so a NATS server that is down does not stop the sidecar.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let settings = Settings::from_metadata(metadata)?;
        let inner = Inner { settings, js: OnceCell::new(), streams: Mutex::default(), closed: CancellationToken::new(), tasks: TaskTracker::new() };
        Ok(Self { inner: Arc::new(inner) })
    }
}

impl Inner {
    async fn js(&self) -> Result<&jetstream::Context, ComponentError> {
        let s = &self.settings;
        self.js
            .get_or_try_init(|| async {
                let mut opts = async_nats::ConnectOptions::new()
                    .name(&s.name)
                    .connection_timeout(PUBLISH_TIMEOUT)
                    .retry_on_initial_connect()
                    .reconnect_delay_callback(|attempt| (MIN_BACKOFF * attempt.min(20) as u32).min(MAX_BACKOFF));
                if let Some(t) = &s.token {
                    opts = opts.token(t.clone());
                }
                let client = opts.connect(s.url.as_str()).await.map_err(|e| unavailable(&s.url, "connect", e))?;
                let mut js = jetstream::new(client);
                js.set_timeout(PUBLISH_TIMEOUT);
                Ok(js)
            })
            .await
    }

    /// The stream capturing `topic`, created or extended when needed (once per topic).
    async fn stream_for(&self, topic: &str) -> Result<String, ComponentError> {
        if let Some(name) = self.streams.lock().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Ok(name.clone());
        }
        let js = self.js().await?;
        let url = &self.settings.url;
        let name = match &self.settings.stream_name {
            Some(name) => {
                match js.get_stream(name).await {
                    Ok(mut st) => {
                        let info = st.info().await.map_err(|e| unavailable(url, "stream info", e))?;
                        if !info.config.subjects.iter().any(|s| s == topic) {
                            let mut config = info.config.clone();
                            config.subjects.push(topic.to_string());
                            js.update_stream(config).await.map_err(|e| unavailable(url, &format!("add subject {topic:?} to stream {name:?}"), e))?;
                        }
                    }
                    // JetStream's own "not found" answer (404), as opposed to no answer at all.
                    Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j) if j.code() == 404) => {
                        self.create_stream(js, name, topic).await?;
                    }
                    Err(e) => return Err(unavailable(url, &format!("stream {name:?}"), e)),
                }
                name.clone()
            }
            None => match js.stream_by_subject(topic).await {
                Ok(name) => name,
                Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
                    let name = sanitize(topic);
                    self.create_stream(js, &name, topic).await?;
                    name
                }
                Err(e) => return Err(unavailable(url, &format!("find the stream of subject {topic:?}"), e)),
            },
        };
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(topic.to_string(), name.clone());
        Ok(name)
    }

    async fn create_stream(&self, js: &jetstream::Context, name: &str, topic: &str) -> Result<(), ComponentError> {
        let s = &self.settings;
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![topic.to_string()],
            num_replicas: s.replicas,
            storage: if s.memory_storage { stream::StorageType::Memory } else { stream::StorageType::File },
            ..Default::default()
        };
        js.get_or_create_stream(config).await.map_err(|e| unavailable(&s.url, &format!("create stream {name:?} for subject {topic:?}"), e))?;
        Ok(())
    }

    async fn consumer(&self, topic: &str) -> Result<consumer::Consumer<consumer::pull::Config>, ComponentError> {
        let s = &self.settings;
        let stream_name = self.stream_for(topic).await?;
        let js = self.js().await?;
        let durable = sanitize(&format!("{}-{topic}", s.consumer_prefix));
        let stream = js.get_stream(&stream_name).await.map_err(|e| unavailable(&s.url, &format!("stream {stream_name:?}"), e))?;
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: topic.to_string(),
            deliver_policy: s.deliver_policy,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: s.ack_wait,
            max_deliver: s.max_deliver,
            max_ack_pending: s.max_ack_pending,
            backoff: s.backoff.clone(),
            ..Default::default()
        };
        stream.get_or_create_consumer(&durable, config).await.map_err(|e| unavailable(&s.url, &format!("consumer {durable:?}"), e))
    }
}

fn headers_of(msg: &Message) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in &msg.metadata {
        h.insert(k.as_str(), v.as_str());
    }
    if !msg.content_type.is_empty() {
        h.insert("Content-Type", msg.content_type.as_str());
    }
    h
}

fn message_of(topic: &str, m: &async_nats::Message) -> Message {
    let mut msg = Message { topic: topic.to_string(), data: m.payload.clone(), content_type: String::new(), metadata: HashMap::new() };
    if let Some(h) = &m.headers {
        for (name, values) in h.iter() {
            let Some(v) = values.first() else { continue };
            let name: &str = name.as_ref();
            if name.eq_ignore_ascii_case("content-type") {
                msg.content_type = v.to_string();
            } else if !name.starts_with("Nats-") {
                msg.metadata.insert(name.to_string(), v.to_string());
            }
        }
    }
    msg
}

#[async_trait::async_trait]
impl PubSub for JetStreamPubSub {
    fn features(&self) -> &'static [PubSubFeature] {
        &[]
    }

    async fn publish(&self, msg: Message) -> Result<(), ComponentError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        let url = &inner.settings.url;
        let topic = msg.topic.clone();
        let attempt = async {
            inner.stream_for(&topic).await?;
            let js = inner.js().await?;
            let ack = js.publish_with_headers(topic.clone(), headers_of(&msg), msg.data.clone()).await.map_err(|e| unavailable(url, &format!("publish to {topic:?}"), e))?;
            ack.await.map_err(|e| unavailable(url, &format!("publish to {topic:?}"), e)).map(|_| ())
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(url, &format!("publish to {topic:?}"), format_args!("no acknowledgement within {PUBLISH_TIMEOUT:?}"))),
        }
    }

    async fn subscribe(&self, topic: &str, handler: MessageHandler, cancel: CancellationToken) -> Result<(), ComponentError> {
        let inner = self.inner.clone();
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        if topic.is_empty() || topic.contains([' ', '\t']) {
            return Err(ComponentError::InvalidRequest(format!("topic {topic:?} is not a NATS subject")));
        }
        // Best effort now, so messages published right after subscribing reach the consumer; when
        // NATS is down the subscription keeps trying in the background.
        let first = match tokio::time::timeout(PUBLISH_TIMEOUT, inner.consumer(topic)).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                tracing::warn!(topic, error = %e, "jetstream: consumer not ready yet; retrying in the background");
                None
            }
            Err(_) => None,
        };
        let (closed, topic) = (inner.closed.clone(), topic.to_string());
        let span = tracing::info_span!("jetstream_subscription", topic = %topic, consumer = %inner.settings.consumer_prefix);
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
        self.inner.closed.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// The subscription loop: (re)opens the durable consumer and pulls until cancelled.
async fn run(inner: Arc<Inner>, topic: String, handler: MessageHandler, mut first: Option<consumer::Consumer<consumer::pull::Config>>) {
    let permits = Arc::new(Semaphore::new(if inner.settings.parallel { PARALLEL } else { 1 }));
    let mut backoff = MIN_BACKOFF;
    let mut degraded = false;
    loop {
        let consumer = match first.take() {
            Some(c) => Ok(c),
            None => inner.consumer(&topic).await,
        };
        let messages = match consumer {
            Ok(c) => c.stream().max_messages_per_batch(if inner.settings.parallel { PARALLEL } else { 16 }).messages().await.map_err(|e| unavailable(&inner.settings.url, "pull", e)),
            Err(e) => Err(e),
        };
        match messages {
            Ok(mut messages) => {
                if degraded {
                    tracing::info!("jetstream: subscription resumed");
                    degraded = false;
                }
                backoff = MIN_BACKOFF;
                while let Some(next) = messages.next().await {
                    match next {
                        Ok(m) => dispatch(&inner, &topic, &handler, &permits, m).await,
                        Err(e) => {
                            tracing::debug!(error = %e, "jetstream: pull interrupted; reopening the consumer");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                if !degraded {
                    tracing::warn!(error = %e, "jetstream: subscription interrupted; retrying");
                    degraded = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn dispatch(inner: &Arc<Inner>, topic: &str, handler: &MessageHandler, permits: &Arc<Semaphore>, m: jetstream::Message) {
    let Ok(permit) = permits.clone().acquire_owned().await else { return };
    let msg = message_of(topic, &m);
    let handler = handler.clone();
    inner.tasks.spawn(async move {
        let kind = match handler(msg).await {
            Ok(()) => AckKind::Ack,
            Err(e) => {
                tracing::debug!(error = %e, "handler failed; NAK for redelivery");
                AckKind::Nak(None)
            }
        };
        if let Err(e) = m.ack_with(kind).await {
            // Unanswered, the message comes back after ackWait: at least once.
            tracing::debug!(error = %e, "jetstream: ack failed");
        }
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn metadata_is_checked_by_name() {
        let err = |pairs: &[(&str, &str)]| JetStreamPubSub::from_config(meta(pairs)).expect_err("invalid metadata").to_string();
        let with = |extra: (&'static str, &'static str)| err(&[("natsURL", "nats://127.0.0.1:4222"), (CONSUMER_ID, "app"), extra]);
        assert!(err(&[(CONSUMER_ID, "app")]).contains("natsURL"));
        assert!(with(("ackWait", "soon")).contains("ackWait"));
        assert!(with(("ackPolicy", "none")).contains("ackPolicy"));
        assert!(with(("deliverPolicy", "sometimes")).contains("deliverPolicy"));
        assert!(with(("deliverPolicy", "sequence")).contains("startSequence"));
        assert!(with(("streamName", "a.b")).contains("streamName"));
        assert!(with(("backOff", "1s, later")).contains("backOff"));
        assert!(with(("concurrency", "many")).contains("concurrency"));
        assert!(with(("seedKey", "SUAC-secret")).contains("seedKey") && !with(("seedKey", "SUAC-secret")).contains("SUAC-secret"));
        assert!(with(("natsUrl", "x")).contains("natsUrl"));
        let ok = JetStreamPubSub::from_config(meta(&[
            ("natsURL", "nats://127.0.0.1:4222"),
            (CONSUMER_ID, "app"),
            ("queueGroupName", "workers"),
            ("backOff", "50ms, 1s"),
            ("flowControl", "false"),
            ("concurrency", "parallel"),
        ]))
        .expect("valid");
        assert_eq!(ok.inner.settings.consumer_prefix, "workers");
        assert_eq!(ok.inner.settings.backoff, vec![Duration::from_millis(50), Duration::from_secs(1)]);
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(sanitize("orders.eu/*>"), "orders_eu___");
    }
}
