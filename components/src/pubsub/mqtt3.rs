//! `pubsub.mqtt3`: MQTT 3.1.1 (Mosquitto and other brokers) through one client connection whose
//! client id is the consumer id. With the defaults (QoS 1, `cleanSession: false`) the broker keeps
//! the session while the sidecar is away and delivers what was published meanwhile when it comes
//! back. An incoming message is acknowledged (PUBACK) only after the handler accepted it; a failed
//! one is handed to the handler again with a growing pause. A publish succeeds when the broker
//! acknowledged it (PUBACK / PUBCOMP), or fails as unavailable after [`PUBLISH_TIMEOUT`].
//! MQTT 3 has no message headers: metadata does not travel, and there are no consumer groups.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{CONSUMER_ID, Message, MessageHandler, PubSub, PubSubFeature};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// How long a publish (or the first subscription request) may wait for the broker's answer.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests queued for the connection before a publish is refused at once.
const REQUEST_QUEUE: usize = 1024;
/// Messages that arrived for a topic nobody subscribed to yet (a resumed session delivers before
/// the app's subscriptions are back); beyond this they wait in the broker for the next connection.
const MAX_PARKED: usize = 10_000;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Settings {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    client_id: String,
    qos: QoS,
    retain: bool,
    clean_session: bool,
}

fn bad(key: &str, value: &str, reason: &str) -> MetadataError {
    MetadataError::BadValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

impl Settings {
    fn from_metadata(m: Metadata) -> Result<Self, MetadataError> {
        let mut m = m.with_defaults(&crate::catalog::pubsub::MQTT3);
        let url = m.require("url")?;
        // The password may be in the URL: error messages show the scheme and host only.
        let shown = |reason: &str| bad("url", url.split('@').next_back().unwrap_or_default(), reason);
        let rest = match url.split_once("://") {
            Some(("tcp" | "mqtt", rest)) => rest,
            Some(("ssl" | "tls" | "mqtts" | "tcps", _)) => return Err(shown("uses TLS, which this build does not speak to MQTT brokers")),
            _ => return Err(shown("is not tcp://[user[:password]@]host[:port]")),
        };
        let (auth, host_port) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let host_port = host_port.trim_end_matches('/');
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| shown("has a bad port"))?),
            None => (host_port.to_string(), 1883),
        };
        if host.is_empty() {
            return Err(shown("has no host"));
        }
        let (username, password) = match auth.map(|a| a.split_once(':').unwrap_or((a, ""))) {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (None, None),
        };
        let client_id = m.require(CONSUMER_ID)?;
        let qos = match m.take("qos").unwrap_or_default().trim() {
            "0" => QoS::AtMostOnce,
            "" | "1" => QoS::AtLeastOnce,
            "2" => QoS::ExactlyOnce,
            other => return Err(bad("qos", other, "is not 0, 1 or 2")),
        };
        let flag = |m: &mut Metadata, key: &'static str| -> Result<bool, MetadataError> {
            match m.take(key) {
                None => Ok(false),
                Some(v) => crate::catalog::parse_bool(&v).ok_or_else(|| bad(key, &v, "is not a bool")),
            }
        };
        let retain = flag(&mut m, "retain")?;
        let clean_session = flag(&mut m, "cleanSession")?;
        for key in ["caCert", "clientCert", "clientKey"] {
            m.refuse_set(key, "TLS to MQTT brokers is not supported")?;
        }
        m.finish()?;
        Ok(Self { host, port, username, password, client_id, qos, retain, clean_session })
    }
}

/// One topic subscription.
struct Sub {
    filter: String,
    handler: MessageHandler,
    cancel: CancellationToken,
}

/// Requests waiting for the broker: senders in the order their packets go out, then by packet id.
#[derive(Default)]
struct Waiting {
    publishes: VecDeque<oneshot::Sender<()>>,
    subscribes: VecDeque<oneshot::Sender<()>>,
    by_pkid: HashMap<u16, oneshot::Sender<()>>,
    sub_by_pkid: HashMap<u16, oneshot::Sender<()>>,
}

struct Inner {
    settings: Settings,
    client: AsyncClient,
    subs: Mutex<Vec<Arc<Sub>>>,
    parked: Mutex<Vec<Publish>>,
    waiting: Mutex<Waiting>,
    closed: CancellationToken,
    tasks: TaskTracker,
}

/// The MQTT 3 broker connection.
pub struct Mqtt3PubSub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mqtt3PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.inner.settings;
        f.debug_struct("Mqtt3PubSub").field("broker", &format!("{}:{}", s.host, s.port)).field("client_id", &s.client_id).finish()
    }
}

impl Mqtt3PubSub {
    /// Builds the component from Dapr's metadata keys (declared in `catalog::pubsub::MQTT3`) and
    /// starts its connection task, which keeps reconnecting while the broker is down. Needs a tokio
    /// runtime.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let settings = Settings::from_metadata(metadata)?;
        let mut opts = MqttOptions::new(settings.client_id.clone(), settings.host.clone(), settings.port);
        opts.set_clean_session(settings.clean_session).set_manual_acks(true).set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some(u) = &settings.username {
            opts.set_credentials(u.clone(), settings.password.clone().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_QUEUE);
        let inner = Arc::new(Inner {
            settings,
            client,
            subs: Mutex::default(),
            parked: Mutex::default(),
            waiting: Mutex::default(),
            closed: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let span = tracing::info_span!("mqtt3_connection", client_id = %inner.settings.client_id);
        inner.tasks.spawn(drive(inner.clone(), eventloop).instrument(span));
        Ok(Self { inner })
    }
}

fn broker(s: &Settings) -> String {
    format!("{}:{}", s.host, s.port)
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
fn matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

impl Inner {
    /// Queues a subscribe request; the receiver resolves on the broker's SUBACK.
    fn request_subscribe(&self, filter: &str) -> Result<oneshot::Receiver<()>, ComponentError> {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        self.client.try_subscribe(filter, self.settings.qos).map_err(|e| ComponentError::Unavailable(format!("mqtt {}: subscribe {filter:?}: {e}", broker(&self.settings))))?;
        w.subscribes.push_back(tx);
        Ok(rx)
    }

    fn route(self: &Arc<Self>, p: Publish) {
        let sub = self.subs.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|s| !s.cancel.is_cancelled() && matches(&s.filter, &p.topic)).cloned();
        match sub {
            Some(sub) => self.deliver(sub, p),
            None => {
                let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                if parked.len() < MAX_PARKED {
                    parked.push(p);
                }
            }
        }
    }

    /// Hands a message to its handler until it is accepted, then acknowledges it to the broker.
    fn deliver(self: &Arc<Self>, sub: Arc<Sub>, p: Publish) {
        let inner = self.clone();
        self.tasks.spawn(async move {
            let msg = Message { topic: p.topic.clone(), data: p.payload.clone(), content_type: String::new(), metadata: HashMap::new() };
            let mut pause = MIN_BACKOFF;
            loop {
                match (sub.handler)(msg.clone()).await {
                    Ok(()) => break,
                    Err(e) => tracing::debug!(topic = %p.topic, error = %e, "handler failed; delivering again"),
                }
                tokio::select! {
                    // Unacknowledged, the broker sends it again on the next connection.
                    _ = inner.closed.cancelled() => return,
                    _ = sub.cancel.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_BACKOFF);
            }
            if let Err(e) = inner.client.ack(&p).await {
                tracing::debug!(error = %e, "mqtt ack not sent; the broker will deliver again");
            }
        });
    }

    fn on_event(self: &Arc<Self>, event: Event) {
        let resolve = |tx: Option<oneshot::Sender<()>>| {
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                // The broker may have kept the subscriptions (persistent session) or not: ask again.
                let filters: Vec<String> = self.subs.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| !s.cancel.is_cancelled()).map(|s| s.filter.clone()).collect();
                for f in filters {
                    let _ = self.request_subscribe(&f);
                }
            }
            Event::Incoming(Packet::Publish(p)) => self.route(p),
            Event::Incoming(Packet::PubAck(a)) => resolve(self.waiting.lock().unwrap_or_else(|e| e.into_inner()).by_pkid.remove(&a.pkid)),
            Event::Incoming(Packet::PubComp(c)) => resolve(self.waiting.lock().unwrap_or_else(|e| e.into_inner()).by_pkid.remove(&c.pkid)),
            Event::Incoming(Packet::SubAck(a)) => resolve(self.waiting.lock().unwrap_or_else(|e| e.into_inner()).sub_by_pkid.remove(&a.pkid)),
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                // A retransmission keeps its packet id and already has its waiter.
                if pkid == 0 {
                    resolve(w.publishes.pop_front());
                } else if !w.by_pkid.contains_key(&pkid)
                    && let Some(tx) = w.publishes.pop_front()
                {
                    w.by_pkid.insert(pkid, tx);
                }
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(tx) = w.subscribes.pop_front() {
                    w.sub_by_pkid.insert(pkid, tx);
                }
            }
            _ => {}
        }
    }
}

/// The connection task: polls the event loop, reconnecting with a growing pause while the broker
/// is unreachable.
async fn drive(inner: Arc<Inner>, mut eventloop: EventLoop) {
    let mut backoff = MIN_BACKOFF;
    let mut degraded = false;
    loop {
        let event = tokio::select! {
            _ = inner.closed.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    if degraded {
                        tracing::info!("mqtt3: connection restored");
                    }
                    degraded = false;
                    backoff = MIN_BACKOFF;
                }
                inner.on_event(event);
            }
            Err(e) => {
                if !degraded {
                    tracing::warn!(broker = %broker(&inner.settings), error = %e, "mqtt3: connection lost; reconnecting");
                    degraded = true;
                }
                tokio::select! {
                    _ = inner.closed.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[async_trait::async_trait]
impl PubSub for Mqtt3PubSub {
    fn features(&self) -> &'static [PubSubFeature] {
        &[]
    }

    async fn publish(&self, msg: Message) -> Result<(), ComponentError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        let s = &inner.settings;
        let fail = |why: String| ComponentError::Unavailable(format!("mqtt {}: publish to {:?}: {why}", broker(s), msg.topic));
        let rx = {
            let (tx, rx) = oneshot::channel();
            let mut w = inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
            inner.client.try_publish(msg.topic.as_str(), s.qos, s.retain, msg.data.to_vec()).map_err(|e| fail(e.to_string()))?;
            w.publishes.push_back(tx);
            rx
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(fail("the connection was closed".to_string())),
            Err(_) => Err(fail(format!("no acknowledgement within {PUBLISH_TIMEOUT:?}"))),
        }
    }

    async fn subscribe(&self, topic: &str, handler: MessageHandler, cancel: CancellationToken) -> Result<(), ComponentError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(ComponentError::Closed);
        }
        if topic.is_empty() {
            return Err(ComponentError::InvalidRequest("topic is empty".to_string()));
        }
        let sub = Arc::new(Sub { filter: topic.to_string(), handler, cancel });
        inner.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub.clone());
        // Messages the resumed session delivered before this subscription existed.
        let parked: Vec<Publish> = {
            let mut p = inner.parked.lock().unwrap_or_else(|e| e.into_inner());
            let (mine, rest) = p.drain(..).partition(|m| matches(topic, &m.topic));
            *p = rest;
            mine
        };
        for p in parked {
            inner.deliver(sub.clone(), p);
        }
        // Wait for the SUBACK so messages published from now on are routed here; when the broker
        // is down, the subscription is sent again on every (re)connection.
        match inner.request_subscribe(topic) {
            Ok(rx) => {
                if tokio::time::timeout(PUBLISH_TIMEOUT, rx).await.is_err() {
                    tracing::warn!(topic, "mqtt3: subscription not confirmed yet; it is sent again on reconnect");
                }
            }
            Err(e) => tracing::warn!(topic, error = %e, "mqtt3: subscription not sent yet; it is sent again on reconnect"),
        }
        Ok(())
    }

    async fn close(&self) {
        let inner = &self.inner;
        if !inner.closed.is_cancelled() {
            // The session stays with the broker (unless cleanSession): what arrives meanwhile waits there.
            let _ = tokio::time::timeout(Duration::from_millis(500), inner.client.disconnect()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        inner.closed.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn topic_filters() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
    }

    #[tokio::test]
    async fn metadata_is_checked_by_name() {
        let err = |pairs: &[(&str, &str)]| Mqtt3PubSub::from_config(meta(pairs)).expect_err("invalid metadata").to_string();
        let with = |url: &'static str, extra: (&'static str, &'static str)| err(&[("url", url), (CONSUMER_ID, "app"), extra]);
        assert!(err(&[(CONSUMER_ID, "app")]).contains("url"));
        assert!(with("tcp://h:1883", ("qos", "3")).contains("qos"));
        assert!(with("tcp://h:1883", ("retain", "maybe")).contains("retain"));
        let tls = with("ssl://user:hunter2@h:8883", ("qos", "1"));
        assert!(tls.contains("url") && tls.contains("TLS") && !tls.contains("hunter2"), "{tls}");
        assert!(with("tcp://h:x", ("qos", "1")).contains("port"));
        assert!(with("tcp://h:1883", ("caCert", "pem")).contains("caCert"));
        assert!(with("tcp://h:1883", ("Qos", "1")).contains("Qos"));
        let ok = Mqtt3PubSub::from_config(meta(&[("url", "tcp://u:p@127.0.0.1:1883"), (CONSUMER_ID, "app"), ("qos", "2"), ("cleanSession", "true")])).expect("valid");
        let s = &ok.inner.settings;
        assert_eq!((s.username.as_deref(), s.password.as_deref(), s.port, s.qos, s.clean_session), (Some("u"), Some("p"), 1883, QoS::ExactlyOnce, true));
        ok.close().await;
    }
}
