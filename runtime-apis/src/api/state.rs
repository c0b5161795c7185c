//! State operations.

use oxidecar_components::state::query::{Query, QueryPage};
use oxidecar_components::state::{DeleteRequest, SetRequest, StateFeature, StateItem, StateStore, TransactionOp};

use super::{Api, check_key, find};
use crate::error::ApiError;
use std::sync::Arc;

/// One result of a bulk read.
#[derive(Debug, Clone)]
pub struct BulkItem {
    pub key: String,
    pub item: Option<StateItem>,
    pub error: String,
}

impl Api {
    fn state_store(&self, name: &str) -> Result<&Arc<dyn StateStore>, ApiError> {
        find(&self.stores.state, name, "state store", "ERR_STATE_STORE_NOT_FOUND")
    }

    /// Reads one key.
    pub async fn get_state(&self, store: &str, key: &str) -> Result<Option<StateItem>, ApiError> {
        let s = self.state_store(store)?;
        check_key(store, key)?;
        let what = || format!("state store {store:?}: get key {key:?}");
        self.on_component(store, "ERR_STATE_GET", what, (), |()| async move {
            s.get(key).await.map_err(|e| ApiError::component(e, "ERR_STATE_GET", what()))
        })
        .await
    }

    /// Reads several keys; per-key failures are reported in the items.
    pub async fn get_bulk_state(&self, store: &str, keys: Vec<String>) -> Result<Vec<BulkItem>, ApiError> {
        let s = self.state_store(store)?;
        for k in &keys {
            check_key(store, k)?;
        }
        let results = s.bulk_get(&keys).await;
        Ok(keys
            .into_iter()
            .zip(results)
            .map(|(key, r)| match r {
                Ok(item) => BulkItem { key, item, error: String::new() },
                Err(e) => BulkItem { key, item: None, error: e.to_string() },
            })
            .collect())
    }

    /// Writes items in order; the first failure stops and is returned.
    pub async fn save_state(&self, store: &str, items: Vec<SetRequest>) -> Result<(), ApiError> {
        let s = self.state_store(store)?;
        for item in &items {
            check_key(store, &item.key)?;
        }
        for item in items {
            let key = item.key.clone();
            let what = || format!("state store {store:?}: save key {key:?}");
            self.on_component(store, "ERR_STATE_SAVE", what, item, |item| async move {
                s.set(item).await.map_err(|e| ApiError::component(e, "ERR_STATE_SAVE", what()))
            })
            .await?;
        }
        Ok(())
    }

    /// Deletes keys in order; the first failure stops and is returned.
    pub async fn delete_state(&self, store: &str, items: Vec<DeleteRequest>) -> Result<(), ApiError> {
        let s = self.state_store(store)?;
        for item in &items {
            check_key(store, &item.key)?;
        }
        for item in items {
            let key = item.key.clone();
            let what = || format!("state store {store:?}: delete key {key:?}");
            self.on_component(store, "ERR_STATE_DELETE", what, item, |item| async move {
                s.delete(item).await.map_err(|e| ApiError::component(e, "ERR_STATE_DELETE", what()))
            })
            .await?;
        }
        Ok(())
    }

    /// Runs a state query (Dapr's JSON query language) on a store that supports queries.
    pub async fn query_state(&self, store: &str, query: &str) -> Result<QueryPage, ApiError> {
        let s = self.state_store(store)?;
        if !s.features().contains(&StateFeature::QueryApi) {
            return Err(ApiError::new(
                tonic::Code::Unimplemented,
                "ERR_STATE_QUERY_UNSUPPORTED",
                format!("state store {store:?} does not support queries (QueryStateAlpha1)"),
            ));
        }
        let q = Query::parse(query).map_err(|e| ApiError::component(e, "ERR_MALFORMED_REQUEST", format_args!("state store {store:?}")))?;
        s.query("", &q).await.map_err(|e| ApiError::component(e, "ERR_STATE_QUERY", format_args!("state store {store:?}: query")))
    }

    /// Applies a transaction atomically.
    pub async fn transact_state(&self, store: &str, ops: Vec<TransactionOp>) -> Result<(), ApiError> {
        let s = self.state_store(store)?;
        if ops.is_empty() {
            return Err(ApiError::malformed(format!("state store {store:?}: transaction has no operations")));
        }
        for op in &ops {
            check_key(store, op.key())?;
        }
        let what = || format!("state store {store:?}: transaction");
        self.on_component(store, "ERR_STATE_TRANSACTION", what, ops, |ops| async move {
            s.transact(ops).await.map_err(|e| ApiError::component(e, "ERR_STATE_TRANSACTION", what()))
        })
        .await
    }
}
