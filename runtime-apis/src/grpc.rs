//! The gRPC API server (`dapr.proto.runtime.v1.Dapr`).

mod blocks;
mod component;
mod meta;
mod proxy;
mod pubsub;
mod service;
mod state;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use dapr::dapr::proto::runtime::v1::dapr_server::DaprServer;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::api::Api;

/// A boxed server stream.
pub type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC face of the runtime.
#[derive(Clone)]
pub struct GrpcApi {
    api: Arc<Api>,
}

/// The answer for RPCs oxidecar does not serve; names the RPC.
pub fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("dapr.proto.runtime.v1.Dapr/{rpc} is not implemented by oxidecar"))
}

/// A static label for a gRPC code (metrics labels must not be formatted per request).
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::NotFound => "NOT_FOUND",
        Code::Aborted => "ABORTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Unavailable => "UNAVAILABLE",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::Internal => "INTERNAL",
        _ => "OTHER",
    }
}

impl GrpcApi {
    async fn observe<T>(
        &self,
        block: &'static str,
        method: &'static str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        self.observe_in(block, method, "", call).await
    }

    /// Records the call's count and latency, labelled with the component it addressed.
    async fn observe_in<T>(
        &self,
        block: &'static str,
        method: &'static str,
        component: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let result = call.await;
        let code = match &result {
            Ok(_) => "OK",
            Err(s) => code_label(s.code()),
        };
        self.api.metrics.observe("grpc", block, method, component, code, start.elapsed());
        result
    }
}

/// Checks `dapr-api-token` when a token is configured.
fn token_check(token: Option<String>) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(want) = &token else {
            return Ok(req);
        };
        match req.metadata().get("dapr-api-token").map(|v| v.as_bytes()) {
            Some(got) if got == want.as_bytes() => Ok(req),
            Some(_) => Err(Status::unauthenticated("authentication error: dapr-api-token does not match DAPR_API_TOKEN")),
            None => Err(Status::unauthenticated("authentication error: dapr-api-token metadata is missing")),
        }
    }
}

/// Serves the gRPC API on `listener` until `shutdown` fires, then finishes in-flight calls.
pub async fn serve(api: Arc<Api>, listener: TcpListener, shutdown: CancellationToken) -> Result<(), tonic::transport::Error> {
    let token = api.config.api_token.clone();
    let api_tracer = api.config.tracer.clone();
    let svc = DaprServer::with_interceptor(GrpcApi { api: api.clone() }, token_check(token));
    // The builder's tcp_nodelay only applies to listeners tonic binds itself; small unary answers
    // must not wait for Nagle + delayed ACK, so set it on every accepted connection.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    });
    let traced = crate::tracer::GrpcTraceLayer(api_tracer);
    // Paths no service claims are Dapr's gRPC proxying (or UNIMPLEMENTED without dapr-app-id).
    let fallback_api = api.clone();
    let router = tonic::service::Routes::new(svc)
        .into_axum_router()
        .fallback(move |req: axum::extract::Request| proxy::forward(fallback_api.clone(), req));
    tonic::transport::Server::builder()
        .layer(traced)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}
