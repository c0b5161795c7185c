//! oxidecar's application runtime APIs: Dapr-compatible gRPC (`dapr.proto.runtime.v1.Dapr`) and HTTP
//! (`/v1.0/...`) servers on localhost, over the building blocks of `oxidecar-components`.
#![forbid(unsafe_code)]

mod api;
mod app;
mod cloudevent;
mod config;
mod delivery;
mod error;
mod grpc;
mod http;
mod inbound;
mod invoke;
mod lanes;
mod metrics;
mod runtime;
mod tracer;

pub use config::{AppProtocol, DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR, RuntimeConfig};
pub use error::Error;
pub use lanes::{LANE_ATTRIBUTE, LaneResolver};
pub use invoke::{GrpcBody, InvokeError, InvokeRequest, InvokeResponse, LoopbackInvoker, ServiceInvoker};
pub use runtime::Runtime;
pub use tracer::{CallSpan, CallTracer};

/// The version GetMetadata reports.
pub const RUNTIME_VERSION: &str = concat!("oxidecar-", env!("CARGO_PKG_VERSION"));
