//! Errors: start-up failures (`Error`) and per-request failures (`ApiError`), with the one table
//! from component errors to the gRPC codes and HTTP statuses Dapr SDKs expect.

use http::StatusCode;
use oxidecar_components::{ComponentError, ConfigError};
use tonic::{Code, Status};

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("runtime components: {0}")]
    Components(#[from] ConfigError),
    #[error("runtime {api} API: cannot bind {addr}: {source}")]
    Bind { api: &'static str, addr: std::net::SocketAddr, source: std::io::Error },
    #[error("runtime metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("runtime config: {0}")]
    Config(String),
}

/// A failed API call: a gRPC code, Dapr's `errorCode` for HTTP bodies, and a message naming what.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: Code,
    pub error_code: &'static str,
    pub message: String,
}

impl ApiError {
    /// Any error.
    pub fn new(code: Code, error_code: &'static str, message: impl Into<String>) -> Self {
        Self { code, error_code, message: message.into() }
    }

    /// A malformed request.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, "ERR_MALFORMED_REQUEST", message)
    }

    /// A component failed: the table from component errors to codes lives here.
    pub fn component(err: ComponentError, error_code: &'static str, context: impl std::fmt::Display) -> Self {
        let code = match &err {
            ComponentError::EtagMismatch { .. } => Code::Aborted,
            ComponentError::EtagInvalid { .. } | ComponentError::InvalidRequest(_) => Code::InvalidArgument,
            ComponentError::NotFound(_) => Code::NotFound,
            ComponentError::Unsupported { .. } => Code::Unimplemented,
            ComponentError::Unavailable(_) | ComponentError::Closed => Code::Unavailable,
            ComponentError::Failed(_) => Code::Internal,
        };
        Self::new(code, error_code, format!("{context}: {err}"))
    }

    /// The HTTP status for the same failure (Dapr's HTTP API conventions).
    pub fn http_status(&self) -> StatusCode {
        match self.code {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Aborted => StatusCode::CONFLICT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        Status::new(e.code, e.message)
    }
}

impl From<crate::invoke::InvokeError> for ApiError {
    fn from(e: crate::invoke::InvokeError) -> Self {
        use crate::invoke::InvokeError;
        let code = match &e {
            InvokeError::Unreachable { .. } => Code::Unavailable,
            InvokeError::NoAppPort { .. } => Code::FailedPrecondition,
            InvokeError::Failed { .. } => Code::Internal,
        };
        Self::new(code, "ERR_DIRECT_INVOKE", e.to_string())
    }
}
