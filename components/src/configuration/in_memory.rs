//! `configuration.in-memory`: items kept in a map, versions count up, subscribers get each change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::{ConfigItem, ConfigStore, ConfigSubscription};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Change batches a subscriber may have pending before it is considered gone.
const SUBSCRIBER_DEPTH: usize = 256;

#[derive(Debug)]
struct Subscriber {
    keys: Vec<String>,
    tx: mpsc::Sender<HashMap<String, ConfigItem>>,
}

#[derive(Debug, Default)]
struct Inner {
    items: HashMap<String, ConfigItem>,
    subscribers: HashMap<String, Subscriber>,
}

/// The in-memory configuration store.
#[derive(Debug, Default)]
pub struct InMemoryConfigStore {
    inner: Mutex<Inner>,
    version: AtomicU64,
    next_id: AtomicU64,
}

impl InMemoryConfigStore {
    /// Builds the store; every metadata entry becomes an initial item (`name` = key, `value` = value),
    /// so this backend has no unknown keys.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let store = Self::default();
        store.seed(metadata.into_entries());
        Ok(store)
    }

    /// Sets initial items without notifying anyone.
    pub fn seed(&self, items: impl IntoIterator<Item = (String, String)>) {
        let mut inner = self.lock();
        for (k, v) in items {
            let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
            inner.items.insert(k, ConfigItem { value: v, version: version.to_string(), metadata: HashMap::new() });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wanted(keys: &[String], key: &str) -> bool {
    keys.is_empty() || keys.iter().any(|k| k == key)
}

#[async_trait::async_trait]
impl ConfigStore for InMemoryConfigStore {
    async fn get(&self, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ComponentError> {
        let inner = self.lock();
        Ok(inner.items.iter().filter(|(k, _)| wanted(keys, k)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn subscribe(&self, keys: Vec<String>, _metadata: &HashMap<String, String>) -> Result<ConfigSubscription, ComponentError> {
        let (tx, updates) = mpsc::channel(SUBSCRIBER_DEPTH);
        let id = format!("cfg-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        self.lock().subscribers.insert(id.clone(), Subscriber { keys, tx });
        Ok(ConfigSubscription { id, updates })
    }

    async fn unsubscribe(&self, id: &str) -> Result<bool, ComponentError> {
        Ok(self.lock().subscribers.remove(id).is_some())
    }

    async fn set(&self, items: HashMap<String, String>) -> Result<(), ComponentError> {
        if let Some(k) = items.keys().find(|k| k.is_empty()) {
            return Err(ComponentError::InvalidRequest(format!("configuration key {k:?} is empty")));
        }
        let mut inner = self.lock();
        let mut changed = HashMap::with_capacity(items.len());
        for (k, v) in items {
            let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
            let item = ConfigItem { value: v, version: version.to_string(), metadata: HashMap::new() };
            inner.items.insert(k.clone(), item.clone());
            changed.insert(k, item);
        }
        // Subscribers whose receiver is gone or full are dropped: a stuck reader must not block writers.
        inner.subscribers.retain(|_, sub| {
            let batch: HashMap<_, _> =
                changed.iter().filter(|(k, _)| wanted(&sub.keys, k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            batch.is_empty() || sub.tx.try_send(batch).is_ok()
        });
        Ok(())
    }

    async fn close(&self) {
        self.lock().subscribers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_changes_of_their_keys() {
        let s = InMemoryConfigStore::default();
        s.seed([("a".to_string(), "1".to_string())]);
        assert_eq!(s.get(&[]).await.unwrap()["a"].value, "1");
        let mut sub = s.subscribe(vec!["a".into()], &HashMap::new()).await.unwrap();
        s.set([("b".to_string(), "x".to_string())].into()).await.unwrap();
        s.set([("a".to_string(), "2".to_string())].into()).await.unwrap();
        let batch = sub.updates.recv().await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch["a"].value, "2");
        assert!(s.unsubscribe(&sub.id).await.unwrap());
        assert!(!s.unsubscribe(&sub.id).await.unwrap());
        assert!(sub.updates.recv().await.is_none());
    }

    #[tokio::test]
    async fn passes_the_configuration_conformance_suite() {
        let s = InMemoryConfigStore::default();
        if let Err(e) = crate::configuration::conformance::run(&s, "mem", &HashMap::new()).await {
            panic!("configuration.in-memory conformance: {e}");
        }
    }
}
