//! Bindings building block: output bindings the app invokes, input bindings that call the app.

pub mod conformance;
pub mod cron;
#[cfg(feature = "http-binding")]
pub mod http;
pub mod localstorage;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::{BoxFuture, ComponentError};

/// A call to an output binding.
#[derive(Debug, Clone, Default)]
pub struct BindingRequest {
    pub operation: String,
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// The answer of an output binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingResponse {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// An event from an input binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingEvent {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// Called for each input event; `Ok` means the app accepted it.
pub type BindingHandler = Arc<dyn Fn(BindingEvent) -> BoxFuture<Result<(), ComponentError>> + Send + Sync>;

/// A binding the app calls.
#[async_trait::async_trait]
pub trait OutputBinding: Send + Sync + 'static {
    /// Operations this binding accepts.
    fn operations(&self) -> &'static [&'static str];

    /// Performs one operation.
    async fn invoke(&self, req: BindingRequest) -> Result<BindingResponse, ComponentError>;

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}

/// A binding that produces events for the app.
#[async_trait::async_trait]
pub trait InputBinding: Send + Sync + 'static {
    /// Delivers events to `handler` until `cancel` fires; the caller runs it on its own task.
    async fn read(&self, handler: BindingHandler, cancel: CancellationToken) -> Result<(), ComponentError>;

    /// Dapr's `route` metadata: the HTTP path events are POSTed to; `None` means `/<binding-name>`.
    fn route(&self) -> Option<&str> {
        None
    }

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}
