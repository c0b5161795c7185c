//! State store building block: key/value with ETags, TTL and transactions.

pub mod conformance;
pub mod in_memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod prefix;
pub mod query;
#[cfg(feature = "redis")]
pub mod redis;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::ComponentError;

/// Optional capabilities a state store may have (reported by GetMetadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFeature {
    Etag,
    Transactional,
    Ttl,
    QueryApi,
}

impl StateFeature {
    /// The capability name Dapr reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Etag => "ETAG",
            Self::Transactional => "TRANSACTIONAL",
            Self::Ttl => "TTL",
            Self::QueryApi => "QUERY_API",
        }
    }
}

/// Concurrency mode of a write (Dapr's `concurrency` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Without an ETag, the write succeeds only if the key does not exist yet.
    FirstWrite,
    /// Without an ETag, the write always succeeds.
    #[default]
    LastWrite,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateItem {
    pub value: Bytes,
    pub etag: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// A write.
#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    pub key: String,
    pub value: Bytes,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub metadata: HashMap<String, String>,
}

/// A delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub metadata: HashMap<String, String>,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum TransactionOp {
    Set(SetRequest),
    Delete(DeleteRequest),
}

impl TransactionOp {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            Self::Set(r) => &r.key,
            Self::Delete(r) => &r.key,
        }
    }
}

/// A key/value state store.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Capabilities of this store.
    fn features(&self) -> &'static [StateFeature];

    /// Reads a key; `None` when it does not exist (or expired).
    async fn get(&self, key: &str) -> Result<Option<StateItem>, ComponentError>;

    /// Reads several keys; one result per key, in order.
    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<StateItem>, ComponentError>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await);
        }
        out
    }

    /// Writes a key, honouring ETag, concurrency and `ttlInSeconds`.
    async fn set(&self, req: SetRequest) -> Result<(), ComponentError>;

    /// Deletes a key, honouring ETag and concurrency. Deleting a missing key without ETag succeeds.
    async fn delete(&self, req: DeleteRequest) -> Result<(), ComponentError>;

    /// Applies all operations or none.
    async fn transact(&self, ops: Vec<TransactionOp>) -> Result<(), ComponentError> {
        let _ = ops;
        Err(ComponentError::Unsupported { operation: "transaction".to_string() })
    }

    /// Runs a query (QueryStateAlpha1) over the keys that start with `prefix`; result keys come back
    /// without it. Only stores that report [`StateFeature::QueryApi`] implement it.
    async fn query(&self, prefix: &str, query: &query::Query) -> Result<query::QueryPage, ComponentError> {
        let _ = (prefix, query);
        Err(ComponentError::Unsupported { operation: "query".to_string() })
    }

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}

/// Response metadata key with the RFC 3339 time a key saved with `ttlInSeconds` expires (as Dapr).
pub const TTL_EXPIRE_TIME: &str = "ttlExpireTime";

/// Formats a time as RFC 3339 in UTC with second precision (`2024-05-01T12:00:00Z`), the form Dapr
/// answers in `ttlExpireTime`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Reads Dapr's `ttlInSeconds` request metadata: `None` for no TTL (absent or -1).
pub fn ttl_from_metadata(metadata: &HashMap<String, String>) -> Result<Option<Duration>, ComponentError> {
    let Some(raw) = metadata.get("ttlInSeconds") else {
        return Ok(None);
    };
    let secs: i64 = raw.trim().parse().map_err(|_| {
        ComponentError::InvalidRequest(format!("metadata ttlInSeconds: {raw:?} is not an integer"))
    })?;
    match secs {
        -1 => Ok(None),
        s if s < -1 => Err(ComponentError::InvalidRequest(format!(
            "metadata ttlInSeconds: {s} must be -1 or greater"
        ))),
        s => Ok(Some(Duration::from_secs(s as u64))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
