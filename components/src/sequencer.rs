//! Sequencer building block (Layotto's): hands out ids per key that only ever grow, across every
//! sidecar sharing the backend. Dapr has no RPC for it; the component and its suite stand alone.

pub mod conformance;
pub mod in_memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

use crate::ComponentError;

/// A range of reserved ids, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub from: i64,
    pub to: i64,
}

/// A generator of strictly increasing ids per key.
#[async_trait::async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// The next id of `key`: greater than every id handed out for `key` before (the first is 1).
    async fn next_id(&self, key: &str) -> Result<i64, ComponentError> {
        Ok(self.segment(key, 1).await?.to)
    }

    /// Reserves `size` consecutive ids of `key` in one call (Layotto's `GetSegment`).
    async fn segment(&self, key: &str, size: u32) -> Result<Segment, ComponentError>;

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}

/// Rejects what no backend can store.
pub(crate) fn check(key: &str, size: u32) -> Result<(), ComponentError> {
    if key.is_empty() {
        return Err(ComponentError::InvalidRequest("sequencer key is empty".to_string()));
    }
    if size == 0 {
        return Err(ComponentError::InvalidRequest(format!("sequencer key {key:?}: segment size must be at least 1")));
    }
    Ok(())
}

/// The segment that ends at `last` after adding `size`.
pub(crate) fn ending_at(last: i64, size: u32) -> Segment {
    Segment { from: last - i64::from(size) + 1, to: last }
}
