//! Delivery to the app: topic events (routing, RETRY with backoff, DROP, dead-letter topic, ack only
//! after the app accepted) and input binding events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oxidecar_components::ComponentError;
use oxidecar_components::bindings::{BindingEvent, BindingHandler};
use oxidecar_components::pubsub::{Message, MessageHandler, PubSub};
use oxidecar_components::subscription::Subscription;
use serde_json::Value;
use tracing::Instrument;

use crate::api::Api;
use crate::app::{AppChannel, RawPayload, Verdict};
use crate::cloudevent::{self, Target};

/// Delivery attempts before an event counts as failed (the first try plus retries).
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
    let handler = handler(api.app_id.clone(), app.clone(), ps.clone(), sub.clone());
    if let Err(e) = ps.subscribe(&sub.topic, handler, api.cancel.child_token()).await {
        tracing::warn!(pubsub = %sub.pubsub_name, topic = %sub.topic, error = %e, "subscribe failed");
    }
}

fn handler(app_id: String, app: Arc<AppChannel>, ps: Arc<dyn PubSub>, sub: Subscription) -> MessageHandler {
    let shared = Arc::new((app_id, app, ps, sub));
    Arc::new(move |msg: Message| {
        let shared = shared.clone();
        Box::pin(async move {
            let (app_id, app, ps, sub) = &*shared;
            deliver(app_id, app, ps, sub, msg).await
        })
    })
}

/// The event as the app will see it: the stored CloudEvent, or raw bytes wrapped in one.
fn event_of(app_id: &str, sub: &Subscription, msg: &Message) -> Value {
    let target = Target { app_id, pubsub: &sub.pubsub_name, topic: &sub.topic };
    match serde_json::from_slice::<Value>(&msg.data) {
        Ok(Value::Object(m)) if m.contains_key("specversion") && !crate::api::is_raw(&msg.metadata) => Value::Object(m),
        _ => cloudevent::wrap_raw(&target, &msg.data),
    }
}

async fn deliver(app_id: &str, app: &AppChannel, ps: &Arc<dyn PubSub>, sub: &Subscription, msg: Message) -> Result<(), ComponentError> {
    let mut event = event_of(app_id, sub, &msg);
    if let Value::Object(m) = &mut event {
        m.insert("topic".into(), Value::String(sub.topic.clone()));
    }
    // A subscription without any route (gRPC apps usually) is delivered with an empty path.
    let path = match sub.routes.path_for(&event) {
        Some(p) => p.to_string(),
        None if sub.routes.rules.is_empty() => String::new(),
        None => {
            tracing::debug!(topic = %sub.topic, "no route matches the event; dropped");
            return Ok(());
        }
    };
    let raw = crate::api::is_raw(&msg.metadata).then_some(RawPayload {
        data: &msg.data,
        content_type: if msg.content_type.is_empty() { "application/octet-stream" } else { msg.content_type.as_str() },
    });
    let mut backoff = INITIAL_BACKOFF;
    let mut verdict = Verdict::Retry;
    for attempt in 1..=DELIVERY_ATTEMPTS {
        verdict = app.deliver_event(&event, raw, &path).await;
        if verdict != Verdict::Retry || attempt == DELIVERY_ATTEMPTS {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    if verdict == Verdict::Success {
        return Ok(());
    }
    tracing::debug!(topic = %sub.topic, ?verdict, "event not accepted by the app");
    let Some(dlq) = &sub.dead_letter_topic else {
        return Ok(());
    };
    let data = if msg.metadata.is_empty() { Bytes::from(event.to_string()) } else { msg.data.clone() };
    ps.publish(Message { topic: dlq.clone(), data, content_type: msg.content_type, metadata: msg.metadata }).await
}

fn start_input_bindings(api: &Arc<Api>, app: &Arc<AppChannel>) {
    for (name, binding) in &api.stores.input_bindings {
        // gRPC apps get the binding name; HTTP apps get a POST to `route` (default `/<name>`).
        let target: Arc<(String, String)> = Arc::new((name.clone(), binding.route().unwrap_or(name).to_string()));
        let app2 = app.clone();
        let handler: BindingHandler = Arc::new(move |ev: BindingEvent| {
            let (target, app) = (target.clone(), app2.clone());
            Box::pin(async move {
                let (name, route) = &*target;
                app.deliver_binding(name, route, ev.data, ev.metadata).await.map_err(ComponentError::Unavailable)
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
