//! Pub/sub helpers: messages with text bodies, a collecting handler, and the outage case every
//! broker test runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Relay, eventually};

/// A message with a text body.
pub fn msg(topic: &str, body: &str) -> oxidecar_components::pubsub::Message {
    oxidecar_components::pubsub::Message {
        topic: topic.into(),
        data: bytes::Bytes::from(body.to_string()),
        content_type: String::new(),
        metadata: std::collections::HashMap::new(),
    }
}

/// A handler collecting message bodies, and what it collected.
pub fn collector() -> (oxidecar_components::pubsub::MessageHandler, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let h: oxidecar_components::pubsub::MessageHandler = Arc::new(move |m: oxidecar_components::pubsub::Message| {
        let g = g.clone();
        Box::pin(async move {
            g.lock().expect("lock").push(String::from_utf8_lossy(&m.data).into_owned());
            Ok(())
        })
    });
    (h, got)
}

/// Whether every body in `want` shows up in `got` within 20 s.
pub async fn received(got: &Arc<Mutex<Vec<String>>>, want: &[&str]) -> bool {
    let all = || async {
        let got = got.lock().expect("lock");
        if want.iter().all(|w| got.iter().any(|g| g == w)) { Ok(()) } else { Err(()) }
    };
    eventually(Duration::from_secs(20), all).await.is_ok()
}

/// The outage case every broker test runs: `ps` reaches the broker through `relay`, `direct`
/// reaches it straight. Cutting the relay makes `ps`'s publish fail as unavailable, naming the
/// relay's address, within `limit`; what `direct` publishes meanwhile and what `ps` publishes once
/// the relay is back both reach `ps`'s subscription.
pub async fn outage(relay: &Relay, ps: &dyn oxidecar_components::pubsub::PubSub, direct: &dyn oxidecar_components::pubsub::PubSub, topic: &str, limit: Duration) {
    use oxidecar_components::ComponentError;
    let (h, got) = collector();
    ps.subscribe(topic, h, CancellationToken::new()).await.expect("subscribe");
    ps.publish(msg(topic, "before")).await.expect("publish through the relay");
    assert!(received(&got, &["before"]).await, "delivered through the relay");

    relay.cut();
    let start = Instant::now();
    let err = ps.publish(msg(topic, "during")).await.expect_err("the broker is unreachable");
    assert!(start.elapsed() < limit, "publish took {:?}", start.elapsed());
    assert!(matches!(&err, ComponentError::Unavailable(m) if m.contains(&relay.addr())), "{err}");

    direct.publish(msg(topic, "while-away")).await.expect("direct publish");
    relay.restore();
    let back = eventually(Duration::from_secs(20), || async { ps.publish(msg(topic, "after")).await }).await;
    assert!(back.is_ok(), "publish works again once the broker is reachable: {back:?}");
    assert!(received(&got, &["before", "while-away", "after"]).await, "{:?}", got.lock().expect("lock"));
}
