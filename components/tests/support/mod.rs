//! Shared helpers of the component integration tests: unique names, ports in the test range, a
//! resources directory, and a TCP relay in front of a shared server that a test can cut and
//! restore to simulate an outage without touching the server itself.
#![allow(dead_code)]

mod relay;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use relay::{Relay, free_port, listen_in_range};

pub const REDIS: &str = "127.0.0.1:6379";
pub const POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A name no other test run uses (process id, time and a counter).
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A name usable as a SQL identifier (lowercase letters, digits, underscores).
pub fn unique_ident(tag: &str) -> String {
    unique(tag).replace('-', "_").to_lowercase()
}

/// A resources dir with one file; removed on drop.
pub struct ResourcesDir(pub PathBuf);

impl ResourcesDir {
    pub fn new(yaml: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("oxidecar-res"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("components.yaml"), yaml).expect("yaml");
        Self(dir)
    }
}

impl Drop for ResourcesDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it is `Ok` or `within` passes; answers the last result.
pub async fn eventually<T, E, F, Fut>(within: Duration, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let end = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

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
