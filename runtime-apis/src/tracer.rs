//! Tracing hooks for runtime API calls. The runtime does not know how spans are exported (the
//! proxy does): it reports each call's start, with the caller's headers (which carry the trace
//! context Dapr SDKs propagate), and its end, with the status, to a [`CallTracer`] it is given.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Receives runtime API calls as they start.
pub trait CallTracer: Send + Sync + std::fmt::Debug {
    /// A call to `method` (e.g. `GetState`) over `protocol` (`grpc` | `http`) started; `None`
    /// when it is not traced.
    fn start(&self, protocol: &'static str, method: &str, headers: &http::HeaderMap) -> Option<Box<dyn CallSpan>>;
}

/// One traced call; ended with its status (a gRPC code number or an HTTP status).
pub trait CallSpan: Send {
    fn end(self: Box<Self>, status: &str);
}

/// The RPC name of a gRPC path: `/dapr.proto.runtime.v1.Dapr/GetState` → `GetState`.
fn grpc_method(path: &str) -> &str {
    path.rsplit('/').next().filter(|m| !m.is_empty()).unwrap_or("unknown")
}

/// Wraps the gRPC server so every call is reported to the tracer.
#[derive(Clone, Debug)]
pub struct GrpcTraceLayer(pub Option<Arc<dyn CallTracer>>);

impl<S> tower_layer::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;
    fn layer(&self, inner: S) -> GrpcTrace<S> {
        GrpcTrace { inner, tracer: self.0.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcTrace<S> {
    inner: S,
    tracer: Option<Arc<dyn CallTracer>>,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for GrpcTrace<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = self.tracer.as_ref().and_then(|t| t.start("grpc", grpc_method(req.uri().path()), req.headers()));
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            if let Some(span) = span {
                // Errors are trailers-only answers with `grpc-status` in the headers; a unary
                // success has it in the trailers, still to come: no header means OK.
                let status = match &result {
                    Ok(resp) => resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_string(),
                    Err(_) => "2".to_string(),
                };
                span.end(&status);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc_paths_name_their_method() {
        assert_eq!(super::grpc_method("/dapr.proto.runtime.v1.Dapr/GetState"), "GetState");
        assert_eq!(super::grpc_method("/"), "unknown");
    }
}
