//! `/v1.0/metadata`, `/v1.0/shutdown` and `/v1.0/invoke/...`.

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::Shared;
use crate::error::ApiError;
use crate::invoke::InvokeRequest;

/// Request bodies larger than this are refused on invocation (Dapr's default is 4 MiB).
const MAX_INVOKE_BODY: usize = 4 << 20;

/// GET /v1.0/metadata.
pub async fn metadata(State(api): Shared) -> Json<Value> {
    let components: Vec<Value> = api
        .infos
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_name, "version": c.version, "capabilities": c.capabilities}))
        .collect();
    let subscriptions: Vec<Value> = api
        .subscriptions
        .lock()
        .map(|subs| {
            subs.iter()
                .map(|s| {
                    let mut rules: Vec<Value> = s.routes.rules.iter().map(|r| json!({"path": r.path})).collect();
                    if !s.routes.default.is_empty() {
                        rules.push(json!({"path": s.routes.default}));
                    }
                    json!({
                        "pubsubname": s.pubsub_name,
                        "topic": s.topic,
                        "metadata": s.metadata,
                        "rules": rules,
                        "deadLetterTopic": s.dead_letter_topic.clone().unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let extended = api.extended_metadata.lock().map(|m| m.clone()).unwrap_or_default();
    let app = api.app.as_ref().map(|a| json!({"port": a.port(), "protocol": a.protocol().as_str(), "channelAddress": "127.0.0.1"}));
    Json(json!({
        "id": api.app_id,
        "runtimeVersion": crate::RUNTIME_VERSION,
        "components": components,
        "subscriptions": subscriptions,
        "extended": extended,
        "appConnectionProperties": app,
    }))
}

/// PUT /v1.0/metadata/{key}: the body is the value.
pub async fn set_metadata(State(api): Shared, Path(key): Path<String>, body: Bytes) -> StatusCode {
    if let Ok(mut m) = api.extended_metadata.lock() {
        m.insert(key, String::from_utf8_lossy(&body).into_owned());
    }
    StatusCode::NO_CONTENT
}

/// POST /v1.0/shutdown.
pub async fn shutdown(State(api): Shared) -> StatusCode {
    tracing::info!("shutdown requested by the app through the runtime API");
    (api.on_shutdown)();
    StatusCode::NO_CONTENT
}

/// Any verb on /v1.0/invoke/{app_id}/method/{method}.
pub async fn invoke(
    State(api): Shared,
    Path((app_id, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, MAX_INVOKE_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::malformed(format!("invoke {app_id:?} method {method:?}: request body: {e}")))?
        .to_bytes();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut headers = parts.headers;
    headers.remove("dapr-api-token");
    let call = InvokeRequest {
        app_id,
        method,
        http_verb: parts.method,
        query: query.unwrap_or_default(),
        headers,
        body,
        content_type,
    };
    let resp = api.invoke_app(call).await?;
    let mut out = (resp.status, resp.body).into_response();
    for (k, v) in &resp.headers {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING && k != header::CONNECTION {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    if !resp.content_type.is_empty() && !out.headers().contains_key(header::CONTENT_TYPE)
        && let Ok(v) = resp.content_type.parse() {
            out.headers_mut().insert(header::CONTENT_TYPE, v);
        }
    Ok(out)
}
