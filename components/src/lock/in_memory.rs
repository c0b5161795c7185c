//! `lock.in-memory`: leases in a map, expired leases are free.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{LockStore, UnlockStatus};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// The in-memory lock store.
#[derive(Debug, Default)]
pub struct InMemoryLockStore {
    leases: Mutex<HashMap<String, (String, Instant)>>,
}

impl InMemoryLockStore {
    /// Builds the store from component metadata (it takes no keys).
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        metadata.finish()?;
        Ok(Self::default())
    }
}

#[async_trait::async_trait]
impl LockStore for InMemoryLockStore {
    async fn try_lock(&self, resource: &str, owner: &str, expiry: Duration) -> Result<bool, ComponentError> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get(resource) {
            Some((_, until)) if *until > now => Ok(false),
            _ => {
                leases.insert(resource.to_string(), (owner.to_string(), now + expiry));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, ComponentError> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get(resource) {
            Some((_, until)) if *until <= now => {
                leases.remove(resource);
                Ok(UnlockStatus::LockDoesNotExist)
            }
            None => Ok(UnlockStatus::LockDoesNotExist),
            Some((holder, _)) if holder != owner => Ok(UnlockStatus::LockBelongsToOthers),
            Some(_) => {
                leases.remove(resource);
                Ok(UnlockStatus::Success)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn passes_the_lock_conformance_suite() {
        if let Err(e) = crate::lock::conformance::run(Arc::new(InMemoryLockStore::default()), "mem").await {
            panic!("lock.in-memory conformance: {e}");
        }
    }
}
