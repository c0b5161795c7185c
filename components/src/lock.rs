//! Distributed lock building block: a lease on a resource held by an owner until expiry or unlock.

pub mod conformance;
pub mod in_memory;
pub mod prefix;
#[cfg(feature = "redis")]
pub mod redis;

use std::time::Duration;

use crate::ComponentError;

/// Outcome of an unlock, with Dapr's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockStatus {
    Success = 0,
    LockDoesNotExist = 1,
    LockBelongsToOthers = 2,
    InternalError = 3,
}

/// A lock store.
#[async_trait::async_trait]
pub trait LockStore: Send + Sync + 'static {
    /// Takes the lock if it is free (or expired); `false` when someone else holds it.
    async fn try_lock(&self, resource: &str, owner: &str, expiry: Duration) -> Result<bool, ComponentError>;

    /// Releases the lock if `owner` holds it.
    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, ComponentError>;

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}
