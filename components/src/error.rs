//! The one error type every building block returns; `runtime-apis` maps it to gRPC and HTTP statuses.

/// An error from a component operation. Messages name the key or resource involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    /// The request's ETag does not match the stored one (or the key is gone).
    #[error("possible etag mismatch for key {key:?}: the stored item has a different etag or does not exist")]
    EtagMismatch { key: String },
    /// The request's ETag cannot be an ETag of this store.
    #[error("invalid etag {etag:?} for key {key:?}")]
    EtagInvalid { key: String, etag: String },
    /// The request is malformed (bad metadata value, empty name, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// The item asked for does not exist where the API treats absence as an error (secrets).
    #[error("{0} not found")]
    NotFound(String),
    /// The component does not support this operation.
    #[error("operation {operation} is not supported by this component")]
    Unsupported { operation: String },
    /// The backend answered, but with a failure (e.g. an HTTP binding's non-2xx response).
    #[error("{0}")]
    Failed(String),
    /// The backend failed or is unreachable.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The component was closed.
    #[error("component is closed")]
    Closed,
}
