//! Service invocation: the `ServiceInvoker` trait the proxy implements with its outbound path, and a
//! loopback invoker that only reaches the local app.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::app::AppChannel;
use crate::config::AppProtocol;

/// An HTTP-shaped call of `method` on app `app_id`.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub app_id: String,
    /// Path on the target app, without the leading slash.
    pub method: String,
    pub http_verb: Method,
    /// Encoded query string without `?` (may be empty).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub content_type: String,
}

/// The target app's answer.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub content_type: String,
}

/// Why an invocation produced no answer from the target app.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("app {app_id:?} is not reachable from this sidecar: {reason}")]
    Unreachable { app_id: String, reason: String },
    #[error("invoking {method:?} on app {app_id:?} failed: {reason}")]
    Failed { app_id: String, method: String, reason: String },
    #[error("app {app_id:?} has no app port: start the sidecar with --app-port")]
    NoAppPort { app_id: String },
}

/// How the sidecar reaches the local app and peers.
#[async_trait::async_trait]
pub trait ServiceInvoker: Send + Sync + 'static {
    /// Invoke `method` on app `app_id` with an HTTP-shaped request; the proxy implements this with its outbound path.
    async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError>;

    /// Forwards a plain gRPC call (Dapr's gRPC proxying: any service but the Dapr API, sent to the
    /// runtime's gRPC port with `dapr-app-id`) to app `app_id`, streaming both ways; the answer is
    /// the target app's, status and trailers included. The default refuses: only the proxy, whose
    /// outbound path reaches other apps, forwards them.
    async fn proxy_grpc(&self, app_id: &str, _req: http::Request<GrpcBody>) -> Result<http::Response<GrpcBody>, InvokeError> {
        Err(InvokeError::Unreachable { app_id: app_id.to_string(), reason: "this runtime does not forward gRPC calls (no mesh proxy)".to_string() })
    }
}

/// The body of a proxied gRPC call, either way.
pub type GrpcBody = axum::body::Body;

/// Invokes the local app on `127.0.0.1:<app port>` (HTTP, or gRPC `AppCallback.OnInvoke`); other app
/// ids are unreachable.
#[derive(Clone)]
pub struct LoopbackInvoker {
    app_id: String,
    app: Option<Arc<AppChannel>>,
}

impl LoopbackInvoker {
    /// An invoker for the local app `app_id` listening on `app_port` with `protocol`.
    pub fn new(app_id: impl Into<String>, app_port: Option<u16>, protocol: AppProtocol) -> Self {
        Self { app_id: app_id.into(), app: app_port.map(|p| Arc::new(AppChannel::new(p, protocol))) }
    }
}

#[async_trait::async_trait]
impl ServiceInvoker for LoopbackInvoker {
    async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        if req.app_id != self.app_id {
            return Err(InvokeError::Unreachable {
                app_id: req.app_id,
                reason: format!("the loopback invoker only reaches the local app {:?}", self.app_id),
            });
        }
        let Some(app) = &self.app else {
            return Err(InvokeError::NoAppPort { app_id: req.app_id });
        };
        app.invoke(req).await
    }
}
