//! The HTTP API server: Dapr's `/v1.0/...` paths over the same core as the gRPC API.

mod blocks;
mod meta;
mod pubsub;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::error::ApiError;

type Shared = State<Arc<Api>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "errorCode": self.error_code, "message": self.message });
        (self.http_status(), axum::Json(body)).into_response()
    }
}

/// Dapr's `metadata.<key>=<value>` query parameters.
fn query_metadata(query: Option<&str>) -> HashMap<String, String> {
    query_pairs(query)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("metadata.").map(|k| (k.to_string(), v)))
        .collect()
}

/// Decoded `k=v` pairs of a query string, repeated keys kept.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON body that failed to parse, as a Dapr-style 400 naming the API.
fn bad_json(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::malformed(format!("{what}: request body is not valid JSON for this API: {e}"))
}

async fn healthz() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn check_token(State(api): Shared, req: Request, next: Next) -> Response {
    if let Some(want) = &api.config.api_token {
        let ok = req.headers().get("dapr-api-token").is_some_and(|v| v.as_bytes() == want.as_bytes());
        if !ok && !req.uri().path().starts_with("/v1.0/healthz") {
            return ApiError::new(tonic::Code::Unauthenticated, "ERR_API_TOKEN", "authentication error: dapr-api-token header is missing or does not match")
                .into_response();
        }
    }
    next.run(req).await
}

/// The building block and method a route serves, for metrics labels.
fn route_labels(method: &Method, route: &str) -> (&'static str, &'static str) {
    let m = method.as_str();
    match (m, route) {
        ("GET", "/v1.0/state/{store}/{key}") => ("state", "GetState"),
        ("DELETE", "/v1.0/state/{store}/{key}") => ("state", "DeleteState"),
        (_, "/v1.0/state/{store}") => ("state", "SaveState"),
        (_, "/v1.0/state/{store}/bulk") => ("state", "GetBulkState"),
        (_, "/v1.0/state/{store}/transaction") => ("state", "ExecuteStateTransaction"),
        (_, "/v1.0-alpha1/state/{store}/query") => ("state", "QueryStateAlpha1"),
        (_, "/v1.0/publish/{pubsub}/{*topic}") => ("pubsub", "PublishEvent"),
        (_, "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}") => ("pubsub", "BulkPublishEvent"),
        (_, "/v1.0/bindings/{name}") => ("bindings", "InvokeBinding"),
        (_, "/v1.0/secrets/{store}/bulk") => ("secrets", "GetBulkSecret"),
        (_, "/v1.0/secrets/{store}/{key}") => ("secrets", "GetSecret"),
        ("GET", r) if r.ends_with("/configuration/{store}") => ("configuration", "GetConfiguration"),
        (_, r) if r.ends_with("/configuration/{store}") => ("configuration", "SetConfiguration"),
        (_, r) if r.ends_with("/subscribe") => ("configuration", "SubscribeConfiguration"),
        (_, r) if r.ends_with("/unsubscribe") => ("configuration", "UnsubscribeConfiguration"),
        (_, "/v1.0-alpha1/lock/{store}") => ("lock", "TryLockAlpha1"),
        (_, "/v1.0-alpha1/unlock/{store}") => ("lock", "UnlockAlpha1"),
        ("GET", "/v1.0/metadata") => ("metadata", "GetMetadata"),
        (_, "/v1.0/metadata/{key}") => ("metadata", "SetMetadata"),
        (_, "/v1.0/shutdown") => ("metadata", "Shutdown"),
        (_, r) if r.starts_with("/v1.0/invoke/") => ("invoke", "InvokeService"),
        (_, r) if r.starts_with("/v1.0/healthz") => ("health", "Healthz"),
        _ => ("other", "Other"),
    }
}

/// The path segment a route's `{store}` / `{pubsub}` / `{name}` parameter matched.
fn component_in<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    let i = route.split('/').position(|s| matches!(s, "{store}" | "{pubsub}" | "{name}"))?;
    path.split('/').nth(i)
}

async fn observe(State(api): Shared, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().clone();
    // Only loaded components become label values: callers cannot invent series.
    let component = route
        .as_deref()
        .and_then(|r| component_in(r, req.uri().path()))
        .and_then(|c| api.infos.iter().find(|i| i.name == c))
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let start = Instant::now();
    let span = match (&api.config.tracer, &route) {
        (Some(t), Some(route)) => t.start("http", route_labels(&method, route).1, req.headers()),
        _ => None,
    };
    let resp = next.run(req).await;
    if let Some(span) = span {
        span.end(resp.status().as_str());
    }
    if let Some(route) = route {
        let (block, name) = route_labels(&method, &route);
        api.metrics.observe("http", block, name, &component, resp.status().as_str(), start.elapsed());
    }
    resp
}

/// The router with every API route.
pub fn router(api: Arc<Api>) -> Router {
    let cfg = |v: &str| format!("/{v}/configuration/{{store}}");
    let mut r = Router::new()
        .route("/v1.0/healthz", get(healthz))
        .route("/v1.0/healthz/outbound", get(healthz))
        .route("/v1.0/state/{store}", post(state::save))
        .route("/v1.0/state/{store}/bulk", post(state::bulk))
        .route("/v1.0/state/{store}/transaction", post(state::transaction))
        .route("/v1.0/state/{store}/{key}", get(state::get).delete(state::delete))
        .route("/v1.0-alpha1/state/{store}/query", post(state::query).put(state::query))
        .route("/v1.0/publish/{pubsub}/{*topic}", post(pubsub::publish))
        .route("/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}", post(pubsub::bulk_publish))
        .route("/v1.0/bindings/{name}", post(blocks::invoke_binding).put(blocks::invoke_binding))
        .route("/v1.0/secrets/{store}/bulk", get(blocks::bulk_secret))
        .route("/v1.0/secrets/{store}/{key}", get(blocks::secret))
        .route("/v1.0-alpha1/lock/{store}", post(blocks::try_lock))
        .route("/v1.0-alpha1/unlock/{store}", post(blocks::unlock))
        .route("/v1.0/metadata", get(meta::metadata))
        .route("/v1.0/metadata/{key}", put(meta::set_metadata))
        .route("/v1.0/shutdown", post(meta::shutdown))
        .route("/v1.0/invoke/{app_id}/method/{*method}", any(meta::invoke));
    for v in ["v1.0", "v1.0-alpha1"] {
        r = r
            .route(&cfg(v), get(blocks::get_configuration).post(blocks::set_configuration))
            .route(&format!("{}/subscribe", cfg(v)), get(blocks::subscribe_configuration))
            .route(&format!("{}/{{id}}/unsubscribe", cfg(v)), get(blocks::unsubscribe_configuration));
    }
    r.layer(middleware::from_fn_with_state(api.clone(), check_token))
        .route_layer(middleware::from_fn_with_state(api.clone(), observe))
        .with_state(api)
}

/// Serves the HTTP API on `listener` until `shutdown` fires, then finishes in-flight requests.
pub async fn serve(api: Arc<Api>, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router(api)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Some("key=a&key=b%20c&metadata.ttlInSeconds=5&x");
        assert_eq!(query_pairs(q).len(), 4);
        assert_eq!(query_pairs(q)[1].1, "b c");
        assert_eq!(query_metadata(q)["ttlInSeconds"], "5");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn routes_name_their_component() {
        assert_eq!(component_in("/v1.0/state/{store}/{key}", "/v1.0/state/orders/k1"), Some("orders"));
        assert_eq!(component_in("/v1.0/publish/{pubsub}/{*topic}", "/v1.0/publish/bus/a/b"), Some("bus"));
        assert_eq!(component_in("/v1.0/bindings/{name}", "/v1.0/bindings/cron"), Some("cron"));
        assert_eq!(component_in("/v1.0/metadata", "/v1.0/metadata"), None);
    }
}
