//! Delivery to the app: topic events (routing, RETRY with backoff, DROP, dead-letter topic, ack only
//! after the app accepted) and input binding events, each under the component's `inbound`
//! Resiliency policies when it has any (see `inbound`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oxidecar_components::ComponentError;
use oxidecar_components::bindings::{BindingEvent, BindingHandler};
use oxidecar_components::pubsub::{Message, MessageHandler, PubSub};
use oxidecar_components::resiliency::TargetPolicy;
use oxidecar_components::subscription::Subscription;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;
use tracing::Instrument;

use crate::api::Api;
use crate::app::{AppChannel, RawPayload, Verdict};
use crate::cloudevent::{self, Target};
use crate::inbound::{self, Disposition, Settled};
use crate::lanes::{LANE_ATTRIBUTE, LaneResolver, delivers_here};
use crate::metrics::Metrics;

/// Delivery attempts before an event counts as failed (the first try plus retries), when the
/// pub/sub component has no inbound Resiliency policy.
pub const DELIVERY_ATTEMPTS: u32 = 5;
/// Backoff before the first retry; doubles per retry up to `MAX_BACKOFF`.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often to check whether the app port is open yet.
const APP_POLL: Duration = Duration::from_millis(50);

/// Starts the task that waits for the app, reads its subscriptions and starts deliveries.
pub fn start(api: Arc<Api>, declarative: Vec<Subscription>) {
    let Some(app) = api.app.clone() else {
        if !declarative.is_empty() {
            tracing::warn!("subscriptions are defined but there is no --app-port to deliver to");
        }
        return;
    };
    let tasks = api.tasks.clone();
    tasks.spawn(
        async move {
            while !app.is_listening().await {
                tokio::select! {
                    _ = api.cancel.cancelled() => return,
                    _ = tokio::time::sleep(APP_POLL) => {}
                }
            }
            let mut subs = declarative;
            match app.subscriptions().await {
                Ok(programmatic) => {
                    // The app's own subscription wins over a declarative one for the same topic.
                    subs.retain(|d| !programmatic.iter().any(|p| p.pubsub_name == d.pubsub_name && p.topic == d.topic));
                    subs.extend(programmatic);
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the app's subscriptions"),
            }
            for sub in &subs {
                subscribe(&api, &app, sub).await;
            }
            if let Ok(mut s) = api.subscriptions.lock() {
                *s = subs;
            }
            start_input_bindings(&api, &app);
        }
        .instrument(tracing::info_span!("app_subscriptions")),
    );
}

async fn subscribe(api: &Arc<Api>, app: &Arc<AppChannel>, sub: &Subscription) {
    let Ok(ps) = api.pubsub(&sub.pubsub_name) else {
        tracing::warn!(pubsub = %sub.pubsub_name, topic = %sub.topic, "subscription names an unknown pubsub; ignored");
        return;
    };
    let lanes = api.config.lanes.clone();
    let own_lane = lanes.as_ref().and_then(|l| l.own_lane());
    let handler = handler(Subscriber {
        app_id: api.app_id.clone(),
        app: app.clone(),
        ps: ps.clone(),
        sub: sub.clone(),
        lanes,
        own_lane,
        metrics: api.metrics.clone(),
        inbound: api.resiliency.component_inbound(&sub.pubsub_name).cloned(),
    });
    if let Err(e) = ps.subscribe(&sub.topic, handler, api.cancel.child_token()).await {
        tracing::warn!(pubsub = %sub.pubsub_name, topic = %sub.topic, error = %e, "subscribe failed");
    }
}

/// What one subscription's deliveries need.
struct Subscriber {
    app_id: String,
    app: Arc<AppChannel>,
    ps: Arc<dyn PubSub>,
    sub: Subscription,
    lanes: Option<Arc<dyn LaneResolver>>,
    /// This workload's lane, fixed at start like the consumer group it chose.
    own_lane: Option<String>,
    metrics: Metrics,
    /// The pub/sub component's inbound Resiliency policies, replacing the built-in retries.
    inbound: Option<Arc<TargetPolicy>>,
}

fn handler(subscriber: Subscriber) -> MessageHandler {
    let shared = Arc::new(subscriber);
    Arc::new(move |msg: Message| {
        let shared = shared.clone();
        Box::pin(async move { deliver(&shared, msg).await })
    })
}

/// A message's lane: the CloudEvent's `lane` extension, else the broker metadata's (raw payloads).
fn message_lane(event: &Value, msg: &Message) -> Option<String> {
    let lane = event.get(LANE_ATTRIBUTE).and_then(Value::as_str).or_else(|| msg.metadata.get(LANE_ATTRIBUTE).map(String::as_str));
    lane.map(str::trim).filter(|l| !l.is_empty()).map(str::to_string)
}

/// Headers given to the app with an event: its trace context and, in a lane, the lane (which the
/// mesh also remembers for the trace, so the app's onward calls stay in the lane).
fn delivery_headers(s: &Subscriber, event: &Value, lane: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let traceparent = event.get("traceparent").and_then(Value::as_str);
    if let Some(tp) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert("traceparent", tp);
    }
    if let (Some(lane), Some(lanes)) = (lane, &s.lanes) {
        lanes.entering(lane, traceparent);
        if let Ok(v) = HeaderValue::from_str(lane) {
            headers.insert(lanes.header(), v);
        }
    }
    headers
}

/// The event as the app will see it: the stored CloudEvent, or raw bytes wrapped in one.
fn event_of(app_id: &str, sub: &Subscription, msg: &Message) -> Value {
    let target = Target { app_id, pubsub: &sub.pubsub_name, topic: &sub.topic };
    match serde_json::from_slice::<Value>(&msg.data) {
        Ok(Value::Object(m)) if m.contains_key("specversion") && !crate::api::is_raw(&msg.metadata) => Value::Object(m),
        _ => cloudevent::wrap_raw(&target, &msg.data),
    }
}

async fn deliver(s: &Subscriber, msg: Message) -> Result<(), ComponentError> {
    let (app, ps, sub) = (&s.app, &s.ps, &s.sub);
    let mut event = event_of(&s.app_id, sub, &msg);
    let lane = message_lane(&event, &msg);
    let count = |outcome: &'static str| s.metrics.delivery(&sub.pubsub_name, &sub.topic, lane.as_deref(), outcome);
    if let Some(lanes) = &s.lanes
        && !delivers_here(s.own_lane.as_deref(), lane.as_deref(), |l| lanes.app_has_lane(&s.app_id, l))
    {
        tracing::debug!(topic = %sub.topic, lane = lane.as_deref().unwrap_or("base"), own_lane = s.own_lane.as_deref().unwrap_or("base"), "another lane's subscriber takes this message; acknowledged here without delivery");
        count("skipped");
        return Ok(());
    }
    if let Value::Object(m) = &mut event {
        m.insert("topic".into(), Value::String(sub.topic.clone()));
    }
    // A subscription without any route (gRPC apps usually) is delivered with an empty path.
    let path = match sub.routes.path_for(&event) {
        Some(p) => p.to_string(),
        None if sub.routes.rules.is_empty() => String::new(),
        None => {
            tracing::debug!(topic = %sub.topic, "no route matches the event; dropped");
            count("dropped");
            return Ok(());
        }
    };
    let extra = delivery_headers(s, &event, lane.as_deref());
    let raw = crate::api::is_raw(&msg.metadata).then_some(RawPayload {
        data: &msg.data,
        content_type: if msg.content_type.is_empty() { "application/octet-stream" } else { msg.content_type.as_str() },
    });
    let attempt = || app.deliver_event(&event, raw, &path, &extra);
    let (settled, disposition) = match &s.inbound {
        Some(policy) => {
            let settled = inbound::deliver_event(policy, attempt).await;
            let disposition = settled.disposition(sub.dead_letter_topic.is_some());
            (settled, disposition)
        }
        None => builtin_retries(attempt, sub.dead_letter_topic.is_some()).await,
    };
    tracing::debug!(topic = %sub.topic, lane = lane.as_deref().unwrap_or("base"), ?settled, ?disposition, "event handed to the app");
    count(settled.outcome());
    match (disposition, &sub.dead_letter_topic) {
        (Disposition::DeadLetter, Some(dlq)) => {
            let data = if msg.metadata.is_empty() { Bytes::from(event.to_string()) } else { msg.data.clone() };
            ps.publish(Message { topic: dlq.clone(), data, content_type: msg.content_type, metadata: msg.metadata }).await
        }
        (Disposition::Nack, _) => {
            let why = match settled {
                Settled::Failed(why) | Settled::Refused(why) => why,
                Settled::Delivered | Settled::Dropped => String::new(),
            };
            tracing::warn!(pubsub = %sub.pubsub_name, topic = %sub.topic, reason = %why, "message not delivered to the app; left with the broker for redelivery");
            Err(ComponentError::Unavailable(format!("delivery to the app: {why}")))
        }
        _ => Ok(()),
    }
}

/// Oxidecar's own retries when the component has no inbound policy: `DELIVERY_ATTEMPTS` attempts
/// with doubling backoff; a message still failing then goes to the dead-letter topic, or is
/// acknowledged and dropped without one.
async fn builtin_retries<F, Fut>(mut attempt: F, has_dead_letter_topic: bool) -> (Settled, Disposition)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Verdict>,
{
    let (mut backoff, mut attempts) = (INITIAL_BACKOFF, 1);
    loop {
        match attempt().await {
            Verdict::Success => return (Settled::Delivered, Disposition::Ack),
            Verdict::Drop => return (Settled::Dropped, Settled::Dropped.disposition(has_dead_letter_topic)),
            Verdict::Retry(failure) if attempts >= DELIVERY_ATTEMPTS => {
                let dispose = if has_dead_letter_topic { Disposition::DeadLetter } else { Disposition::Ack };
                return (Settled::Failed(failure.to_string()), dispose);
            }
            Verdict::Retry(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempts += 1;
    }
}

fn start_input_bindings(api: &Arc<Api>, app: &Arc<AppChannel>) {
    for (name, binding) in &api.stores.input_bindings {
        // gRPC apps get the binding name; HTTP apps get a POST to `route` (default `/<name>`).
        let target: Arc<(String, String)> = Arc::new((name.clone(), binding.route().unwrap_or(name).to_string()));
        let app2 = app.clone();
        let policy = api.resiliency.component_inbound(name).cloned();
        let handler: BindingHandler = Arc::new(move |ev: BindingEvent| {
            let (target, app, policy) = (target.clone(), app2.clone(), policy.clone());
            Box::pin(async move {
                let (name, route) = &*target;
                let delivered = match &policy {
                    Some(policy) => inbound::deliver_binding(policy, || app.deliver_binding(name, route, ev.data.clone(), ev.metadata.clone())).await,
                    None => app.deliver_binding(name, route, ev.data, ev.metadata).await.map_err(|e| e.message),
                };
                delivered.map_err(ComponentError::Unavailable)
            })
        });
        let (binding, cancel) = (binding.clone(), api.cancel.child_token());
        api.tasks.spawn(
            async move {
                if let Err(e) = binding.read(handler, cancel).await {
                    tracing::warn!(error = %e, "input binding stopped");
                }
            }
            .instrument(tracing::info_span!("input_binding", binding = %name)),
        );
    }
}
