//! `/v1.0/state/...`.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use oxidecar_components::state::{Concurrency, DeleteRequest, SetRequest, TransactionOp};
use serde::Deserialize;
use serde_json::Value;

use super::{Shared, bad_json, query_metadata, query_pairs};
use crate::error::ApiError;

#[derive(Deserialize, Default)]
struct Options {
    #[serde(default)]
    concurrency: String,
}

#[derive(Deserialize)]
struct Item {
    key: String,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

fn concurrency(s: &str) -> Result<Concurrency, ApiError> {
    match s {
        "" | "last-write" => Ok(Concurrency::LastWrite),
        "first-write" => Ok(Concurrency::FirstWrite),
        other => Err(ApiError::malformed(format!("concurrency {other:?} is not first-write or last-write"))),
    }
}

impl Item {
    fn concurrency(&self) -> Result<Concurrency, ApiError> {
        concurrency(self.options.as_ref().map(|o| o.concurrency.as_str()).unwrap_or_default())
    }

    fn into_set(self) -> Result<SetRequest, ApiError> {
        let concurrency = self.concurrency()?;
        let value = serde_json::to_vec(&self.value).map_err(|e| ApiError::malformed(format!("key {:?}: value: {e}", self.key)))?;
        Ok(SetRequest { key: self.key, value: Bytes::from(value), etag: self.etag.filter(|e| !e.is_empty()), concurrency, metadata: self.metadata })
    }

    fn into_delete(self) -> Result<DeleteRequest, ApiError> {
        let concurrency = self.concurrency()?;
        Ok(DeleteRequest { key: self.key, etag: self.etag.filter(|e| !e.is_empty()), concurrency, metadata: self.metadata })
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_json(what, e))
}

/// POST /v1.0/state/{store}: save a JSON array of items.
pub async fn save(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    let items: Vec<Item> = parse(&format!("state store {store:?}: save"), &body)?;
    let reqs = items.into_iter().map(Item::into_set).collect::<Result<Vec<_>, _>>()?;
    api.save_state(&store, reqs).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1.0/state/{store}/{key}: the raw value with an ETag header, 204 when absent.
pub async fn get(State(api): Shared, Path((store, key)): Path<(String, String)>) -> Result<Response, ApiError> {
    Ok(match api.get_state(&store, &key).await? {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(item) => {
            let mut headers = HeaderMap::new();
            if let Some(etag) = item.etag.and_then(|e| e.parse().ok()) {
                headers.insert(header::ETAG, etag);
            }
            // Dapr answers item metadata (ttlExpireTime) as `metadata.<key>` headers.
            for (k, v) in &item.metadata {
                if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(format!("metadata.{}", k.to_ascii_lowercase()).as_bytes()), http::HeaderValue::from_str(v)) {
                    headers.insert(name, value);
                }
            }
            (StatusCode::OK, headers, item.value).into_response()
        }
    })
}

/// DELETE /v1.0/state/{store}/{key}: `If-Match` carries the ETag, `?concurrency=` the mode.
pub async fn delete(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let etag = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|s| s.trim_matches('"').to_string());
    let mode = query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "concurrency").map(|(_, v)| v).unwrap_or_default();
    let req = DeleteRequest { key, etag, concurrency: concurrency(&mode)?, metadata: query_metadata(query.as_deref()) };
    api.delete_state(&store, vec![req]).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BulkBody {
    keys: Vec<String>,
}

/// POST /v1.0/state/{store}/bulk: `[{key, data, etag}]` (or `error`) per key.
pub async fn bulk(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<axum::Json<Vec<Value>>, ApiError> {
    let b: BulkBody = parse(&format!("state store {store:?}: bulk get"), &body)?;
    let items = api.get_bulk_state(&store, b.keys).await?;
    Ok(axum::Json(
        items
            .into_iter()
            .map(|b| {
                let mut o = serde_json::Map::new();
                o.insert("key".into(), Value::String(b.key));
                if let Some(item) = b.item {
                    let data = serde_json::from_slice(&item.value).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&item.value).into_owned()));
                    o.insert("data".into(), data);
                    o.insert("etag".into(), Value::String(item.etag.unwrap_or_default()));
                    if !item.metadata.is_empty() {
                        o.insert("metadata".into(), serde_json::json!(item.metadata));
                    }
                }
                if !b.error.is_empty() {
                    o.insert("error".into(), Value::String(b.error));
                }
                Value::Object(o)
            })
            .collect(),
    ))
}

/// POST or PUT /v1.0-alpha1/state/{store}/query: `{results: [{key, data, etag}], token}`.
pub async fn query(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<axum::Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::malformed(format!("state store {store:?}: query body is not UTF-8")))?;
    let page = api.query_state(&store, text).await?;
    let results: Vec<Value> = page
        .results
        .into_iter()
        .map(|i| {
            let data = serde_json::from_slice(&i.value).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&i.value).into_owned()));
            serde_json::json!({"key": i.key, "data": data, "etag": i.etag.unwrap_or_default()})
        })
        .collect();
    let mut out = serde_json::json!({ "results": results });
    if let Some(t) = page.token {
        out["token"] = Value::String(t);
    }
    Ok(axum::Json(out))
}

#[derive(Deserialize)]
struct Operation {
    operation: String,
    request: Item,
}

#[derive(Deserialize)]
struct TransactionBody {
    operations: Vec<Operation>,
}

/// POST /v1.0/state/{store}/transaction.
pub async fn transaction(State(api): Shared, Path(store): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    let t: TransactionBody = parse(&format!("state store {store:?}: transaction"), &body)?;
    let mut ops = Vec::with_capacity(t.operations.len());
    for (i, op) in t.operations.into_iter().enumerate() {
        ops.push(match op.operation.as_str() {
            "upsert" => TransactionOp::Set(op.request.into_set()?),
            "delete" => TransactionOp::Delete(op.request.into_delete()?),
            other => {
                return Err(ApiError::malformed(format!(
                    "state store {store:?}: operations[{i}]: operation {other:?} is not upsert or delete"
                )));
            }
        });
    }
    api.transact_state(&store, ops).await?;
    Ok(StatusCode::NO_CONTENT)
}
