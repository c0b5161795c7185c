//! Configuration building block: read items and get notified when they change.

pub mod conformance;
pub mod in_memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod watch;

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::ComponentError;

/// One configuration item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigItem {
    pub value: String,
    pub version: String,
    pub metadata: HashMap<String, String>,
}

/// A live subscription: the first batch of changes arrives on `updates` after the subscribe call.
#[derive(Debug)]
pub struct ConfigSubscription {
    pub id: String,
    pub updates: mpsc::Receiver<HashMap<String, ConfigItem>>,
}

/// A configuration store.
#[async_trait::async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// Reads the given keys (all keys when empty); missing keys are left out.
    async fn get(&self, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ComponentError>;

    /// Subscribes to changes of the given keys (all keys when empty). `metadata` is the request's
    /// (e.g. `pgNotifyChannel` for PostgreSQL).
    async fn subscribe(&self, keys: Vec<String>, metadata: &HashMap<String, String>) -> Result<ConfigSubscription, ComponentError>;

    /// Ends a subscription; `false` when the id is unknown.
    async fn unsubscribe(&self, id: &str) -> Result<bool, ComponentError>;

    /// Writes items (an oxidecar extension so the in-memory store can be fed; read-only stores refuse).
    async fn set(&self, items: HashMap<String, String>) -> Result<(), ComponentError> {
        let _ = items;
        Err(ComponentError::Unsupported { operation: "set configuration".to_string() })
    }

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}
