//! `/v1.0/publish/...` and `/v1.0-alpha1/publish/bulk/...`.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Shared, bad_json, query_metadata};
use crate::api::BulkEntry;
use crate::error::ApiError;

/// POST /v1.0/publish/{pubsub}/{topic}: the body is the event, `Content-Type` its type.
pub async fn publish(
    State(api): Shared,
    Path((pubsub, topic)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let mut metadata = query_metadata(query.as_deref());
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        metadata.entry("traceparent".to_string()).or_insert_with(|| tp.to_string());
    }
    let metadata = api.with_lane(&headers, metadata);
    api.publish(&pubsub, &topic, body, ct, &metadata).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    entry_id: String,
    event: Value,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}: `[{entryId, event, contentType, metadata}]`.
pub async fn bulk_publish(
    State(api): Shared,
    Path((pubsub, topic)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let entries: Vec<Entry> = serde_json::from_slice(&body).map_err(|e| bad_json(&format!("pubsub {pubsub:?}: bulk publish"), e))?;
    let entries = entries
        .into_iter()
        .map(|e| {
            let event = match e.event {
                Value::String(s) if !e.content_type.contains("json") => Bytes::from(s),
                other => Bytes::from(other.to_string()),
            };
            BulkEntry { entry_id: e.entry_id, event, content_type: e.content_type, metadata: e.metadata }
        })
        .collect();
    let metadata = api.with_lane(&headers, query_metadata(query.as_deref()));
    let failed = api.bulk_publish(&pubsub, &topic, entries, &metadata).await?;
    if failed.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let failed: Vec<Value> = failed.into_iter().map(|(id, err)| json!({"entryId": id, "error": err})).collect();
    Ok((
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "some entries failed", "failedEntries": failed})),
    )
        .into_response())
}
