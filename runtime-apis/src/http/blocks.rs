//! `/v1.0/configuration/...`, `/v1.0-alpha1/lock|unlock/...`, `/v1.0/secrets/...`, `/v1.0/bindings/...`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use oxidecar_components::configuration::ConfigItem;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use super::{Shared, bad_json, query_metadata, query_pairs};
use crate::config::AppProtocol;
use crate::error::ApiError;

fn items_json(items: HashMap<String, ConfigItem>) -> Value {
    Value::Object(
        items
            .into_iter()
            .map(|(k, v)| (k, json!({"value": v.value, "version": v.version, "metadata": v.metadata})))
            .collect(),
    )
}

fn keys(query: Option<&str>) -> Vec<String> {
    query_pairs(query).into_iter().filter(|(k, _)| k == "key").map(|(_, v)| v).collect()
}

/// GET /v1.0/configuration/{store}?key=a&key=b.
pub async fn get_configuration(State(api): Shared, Path(store): Path<String>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    Ok(Json(items_json(api.get_configuration(&store, &keys(q.as_deref())).await?)))
}

/// POST /v1.0/configuration/{store} with `{"key": "value", ...}`: oxidecar extension to write items
/// into stores that accept writes (the in-memory store).
pub async fn set_configuration(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    let items: HashMap<String, String> =
        serde_json::from_slice(&body).map_err(|e| bad_json(&format!("configuration store {store:?}: set (expects {{\"key\": \"value\"}})"), e))?;
    api.set_configuration(&store, items).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1.0/configuration/{store}/subscribe: changes are POSTed to the app at
/// `/configuration/{store}/{key}` as `{"id", "items"}`.
pub async fn subscribe_configuration(State(api): Shared, Path(store): Path<String>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let Some(app) = api.app.clone().filter(|a| a.protocol() == AppProtocol::Http) else {
        return Err(ApiError::new(
            tonic::Code::FailedPrecondition,
            "ERR_CONFIGURATION_SUBSCRIBE",
            format!("configuration store {store:?}: subscribing over HTTP needs an HTTP app (--app-port, --app-protocol http) to deliver changes to"),
        ));
    };
    let mut sub = api.subscribe_configuration(&store, keys(q.as_deref()), &super::query_metadata(q.as_deref())).await?;
    let id = sub.id.clone();
    let (api2, store2, id2) = (api.clone(), store.clone(), id.clone());
    api.tasks.spawn(
        async move {
            loop {
                let batch = tokio::select! {
                    _ = api2.cancel.cancelled() => break,
                    b = sub.updates.recv() => match b { Some(b) => b, None => break },
                };
                for (key, item) in batch {
                    let body = json!({"id": id2, "items": items_json(HashMap::from([(key.clone(), item)]))});
                    if let Err(e) = app.post_json(&format!("configuration/{store2}/{key}"), &body).await {
                        tracing::debug!(error = %e, "configuration update not delivered to the app");
                    }
                }
            }
        }
        .instrument(tracing::debug_span!("http_configuration_subscription", store = %store, id = %id)),
    );
    Ok(Json(json!({ "id": id })))
}

/// GET /v1.0/configuration/{store}/{id}/unsubscribe.
pub async fn unsubscribe_configuration(State(api): Shared, Path((store, id)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let ok = api.unsubscribe_configuration(&store, &id).await?;
    let message = if ok { String::new() } else { format!("configuration store {store:?}: subscription {id:?} does not exist") };
    Ok(Json(json!({ "ok": ok, "message": message })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBody {
    #[serde(default)]
    resource_id: String,
    #[serde(default)]
    lock_owner: String,
    #[serde(default)]
    expiry_in_seconds: i32,
}

fn lock_body(store: &str, body: &Bytes) -> Result<LockBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_json(&format!("lock store {store:?}"), e))
}

/// POST /v1.0-alpha1/lock/{store} with `{resourceId, lockOwner, expiryInSeconds}`.
pub async fn try_lock(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b = lock_body(&store, &body)?;
    let success = api.try_lock(&store, &b.resource_id, &b.lock_owner, b.expiry_in_seconds).await?;
    Ok(Json(json!({ "success": success })))
}

/// POST /v1.0-alpha1/unlock/{store} with `{resourceId, lockOwner}`.
pub async fn unlock(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b = lock_body(&store, &body)?;
    let status = api.unlock(&store, &b.resource_id, &b.lock_owner).await?;
    Ok(Json(json!({ "status": status as i32 })))
}

/// GET /v1.0/secrets/{store}/{key}.
pub async fn secret(State(api): Shared, Path((store, key)): Path<(String, String)>, RawQuery(q): RawQuery) -> Result<Json<HashMap<String, String>>, ApiError> {
    Ok(Json(api.get_secret(&store, &key, &query_metadata(q.as_deref())).await?))
}

/// GET /v1.0/secrets/{store}/bulk.
pub async fn bulk_secret(
    State(api): Shared,
    Path(store): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<HashMap<String, HashMap<String, String>>>, ApiError> {
    Ok(Json(api.get_bulk_secret(&store, &query_metadata(q.as_deref())).await?))
}

#[derive(Deserialize)]
struct BindingBody {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    operation: String,
}

/// POST|PUT /v1.0/bindings/{name} with `{data, metadata, operation}`.
pub async fn invoke_binding(State(api): Shared, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let b: BindingBody = serde_json::from_slice(&body).map_err(|e| bad_json(&format!("output binding {name:?}"), e))?;
    let data = match b.data {
        Value::Null => Bytes::new(),
        Value::String(s) => Bytes::from(s),
        other => Bytes::from(other.to_string()),
    };
    let resp = api.invoke_binding(&name, &b.operation, data, b.metadata).await?;
    if resp.data.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((StatusCode::OK, resp.data).into_response())
}
