//! What the backend-driven configuration stores share: subscription ids with an owner that stops
//! them, and the catch-up after a reconnect (compare a fresh read with what subscribers last saw, so
//! changes made while the backend was unreachable are still delivered).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ConfigItem;

/// Change batches a subscriber may have pending.
pub const SUBSCRIBER_DEPTH: usize = 256;

/// First and longest wait between reconnect attempts of a subscription.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Live subscriptions of one store: each a task with its own cancel token.
#[derive(Debug, Default)]
pub struct Subscriptions {
    tasks: TaskTracker,
    cancel: CancellationToken,
    by_id: Mutex<HashMap<String, CancellationToken>>,
    next: AtomicU64,
}

impl Subscriptions {
    /// Registers a subscription and runs `task` until it ends or is cancelled.
    pub fn start<F>(&self, prefix: &str, task: impl FnOnce(CancellationToken) -> F) -> String
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = format!("{prefix}-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let token = self.cancel.child_token();
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), token.clone());
        let span = tracing::debug_span!("config_subscription", id = %id);
        let fut = task(token);
        self.tasks.spawn(tracing::Instrument::instrument(fut, span));
        id
    }

    /// Stops one subscription; `false` when the id is unknown.
    pub fn stop(&self, id: &str) -> bool {
        match self.by_id.lock().unwrap_or_else(|e| e.into_inner()).remove(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every subscription and waits for their tasks.
    pub async fn close(&self) {
        self.cancel.cancel();
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Whether `key` is one of `keys` (all keys when empty).
pub fn wanted(keys: &[String], key: &str) -> bool {
    keys.is_empty() || keys.iter().any(|k| k == key)
}

/// The changes between what subscribers saw (`seen`, updated in place) and a fresh read of the
/// subscribed keys. A key that disappeared is reported with an empty value and version.
pub fn catch_up(seen: &mut HashMap<String, ConfigItem>, fresh: HashMap<String, ConfigItem>, keys: &[String]) -> HashMap<String, ConfigItem> {
    let mut changed = HashMap::new();
    for (k, item) in &fresh {
        if seen.get(k) != Some(item) {
            changed.insert(k.clone(), item.clone());
        }
    }
    for k in seen.keys() {
        if !fresh.contains_key(k) && wanted(keys, k) {
            changed.insert(k.clone(), ConfigItem::default());
        }
    }
    *seen = fresh;
    changed
}

/// Sends a batch unless it is empty; `false` when the subscriber is gone.
pub async fn deliver(tx: &mpsc::Sender<HashMap<String, ConfigItem>>, batch: HashMap<String, ConfigItem>) -> bool {
    batch.is_empty() || tx.send(batch).await.is_ok()
}

/// The next reconnect delay (doubling up to [`RECONNECT_MAX`]).
pub fn backoff(current: Duration) -> Duration {
    (current * 2).min(RECONNECT_MAX)
}

/// Reconnects a subscription that lost its connection: waits with backoff, `connect`s, re-reads the
/// subscribed keys and delivers what changed meanwhile. `None` when the subscription was cancelled
/// or its subscriber is gone.
pub async fn reconnect<S, E, C, CF, R, RF>(
    cancel: &CancellationToken,
    connect: C,
    read: R,
    seen: &mut HashMap<String, ConfigItem>,
    keys: &[String],
    tx: &mpsc::Sender<HashMap<String, ConfigItem>>,
) -> Option<S>
where
    C: Fn() -> CF,
    CF: Future<Output = Result<S, E>>,
    R: Fn() -> RF,
    RF: Future<Output = Result<HashMap<String, ConfigItem>, E>>,
{
    let mut delay = RECONNECT_MIN;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = backoff(delay);
        let Ok(session) = connect().await else { continue };
        let Ok(fresh) = read().await else { continue };
        if !deliver(tx, catch_up(seen, fresh, keys)).await {
            return None;
        }
        return Some(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: &str) -> ConfigItem {
        ConfigItem { value: v.to_string(), version: "1".to_string(), metadata: HashMap::new() }
    }

    #[test]
    fn catch_up_reports_changed_new_and_removed_keys() {
        let mut seen = HashMap::from([("a".to_string(), item("1")), ("b".to_string(), item("2"))]);
        let fresh = HashMap::from([("a".to_string(), item("1")), ("c".to_string(), item("3"))]);
        let changed = catch_up(&mut seen, fresh, &[]);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(changed["c"].value, "3");
        assert_eq!(changed["b"], ConfigItem::default());
        assert_eq!(seen.len(), 2);
    }
}
