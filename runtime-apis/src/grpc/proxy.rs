//! Dapr's gRPC proxying: a call to any gRPC service other than the Dapr API that reaches the
//! runtime's gRPC port with metadata `dapr-app-id: X` is handed, as the HTTP/2 request it is, to
//! the `ServiceInvoker`, which forwards it to app X (over the mesh, in the proxy). Without
//! `dapr-app-id` such a call is UNIMPLEMENTED, naming its path.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tonic::Status;

use super::code_label;
use crate::api::Api;
use crate::error::ApiError;
use crate::invoke::GrpcBody;

/// The metadata naming the app a proxied call is for.
pub const APP_ID_HEADER: &str = "dapr-app-id";

fn reply(status: Status) -> Response<GrpcBody> {
    let mut resp = status.into_http::<GrpcBody>();
    // A trailers-only answer still needs its content type for strict clients.
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

/// The fallback of the runtime's gRPC server: every path no registered service claims.
pub async fn forward(api: Arc<Api>, mut req: Request<GrpcBody>) -> Response<GrpcBody> {
    let start = Instant::now();
    let path = req.uri().path().to_string();
    if let Some(want) = &api.config.api_token {
        match req.headers().get("dapr-api-token") {
            Some(got) if got.as_bytes() == want.as_bytes() => {}
            Some(_) => return reply(Status::unauthenticated("authentication error: dapr-api-token does not match DAPR_API_TOKEN")),
            None => return reply(Status::unauthenticated("authentication error: dapr-api-token metadata is missing")),
        }
    }
    let Some(app_id) = req.headers().get(APP_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()) else {
        return reply(Status::unimplemented(format!(
            "{path} is not served here: the runtime serves dapr.proto.runtime.v1.Dapr, and forwards other gRPC calls only when metadata {APP_ID_HEADER} names the target app"
        )));
    };
    let app_id = app_id.to_string();
    // The caller's token is for its own sidecar; the target app never sees it.
    req.headers_mut().remove("dapr-api-token");
    let resp = match api.invoker.proxy_grpc(&app_id, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(app_id, path, error = %e, "gRPC proxying failed");
            reply(ApiError::from(e).into())
        }
    };
    // Time to the answer's headers: a stream's length is the app's business.
    let code = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok()).map_or("OK", |c| code_label(tonic::Code::from(c)));
    api.metrics.observe("grpc", "invoke", "ProxyGrpc", "", code, start.elapsed());
    resp
}
