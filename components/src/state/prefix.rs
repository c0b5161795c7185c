//! Dapr's state key layout: `<prefix>||<key>` in the backend, chosen by the component's `keyPrefix`
//! metadata (`appid`, the default; `name`; `none`; anything else is a custom prefix). daprd applies it
//! to every state store, so the loader wraps every loaded store with [`PrefixedStateStore`].

use std::sync::Arc;

use super::query::{Query, QueryPage};
use super::{DeleteRequest, SetRequest, StateFeature, StateItem, StateStore, TransactionOp};
use crate::ComponentError;

/// Dapr's separator between the prefix and the key.
pub const SEPARATOR: &str = "||";

/// The prefix (with the separator) for a `keyPrefix` value; `None` for `none` or an empty app id.
pub fn prefix_for(key_prefix: Option<&str>, app_id: &str, component: &str) -> Option<String> {
    let base = match key_prefix.map(str::trim).filter(|p| !p.is_empty()) {
        None => app_id,
        Some(p) if p.eq_ignore_ascii_case("appid") => app_id,
        Some(p) if p.eq_ignore_ascii_case("name") => component,
        Some(p) if p.eq_ignore_ascii_case("none") => return None,
        Some(custom) => custom,
    };
    (!base.is_empty()).then(|| format!("{base}{SEPARATOR}"))
}

/// A state store whose keys live under a prefix in the backend; callers see their own keys.
pub struct PrefixedStateStore {
    inner: Arc<dyn StateStore>,
    prefix: String,
}

impl PrefixedStateStore {
    /// Wraps `inner`; `prefix` already ends with `||`.
    pub fn new(inner: Arc<dyn StateStore>, prefix: String) -> Self {
        Self { inner, prefix }
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    /// Errors name the caller's key, not the stored one.
    fn unprefix(&self, e: ComponentError) -> ComponentError {
        let strip = |k: String| k.strip_prefix(&self.prefix).map(str::to_string).unwrap_or(k);
        match e {
            ComponentError::EtagMismatch { key } => ComponentError::EtagMismatch { key: strip(key) },
            ComponentError::EtagInvalid { key, etag } => ComponentError::EtagInvalid { key: strip(key), etag },
            other => other,
        }
    }

    fn op(&self, op: TransactionOp) -> TransactionOp {
        match op {
            TransactionOp::Set(r) => TransactionOp::Set(SetRequest { key: self.key(&r.key), ..r }),
            TransactionOp::Delete(r) => TransactionOp::Delete(DeleteRequest { key: self.key(&r.key), ..r }),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for PrefixedStateStore {
    fn features(&self) -> &'static [StateFeature] {
        self.inner.features()
    }

    async fn get(&self, key: &str) -> Result<Option<StateItem>, ComponentError> {
        self.inner.get(&self.key(key)).await.map_err(|e| self.unprefix(e))
    }

    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<StateItem>, ComponentError>> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.inner.bulk_get(&keys).await.into_iter().map(|r| r.map_err(|e| self.unprefix(e))).collect()
    }

    async fn query(&self, prefix: &str, query: &Query) -> Result<QueryPage, ComponentError> {
        self.inner.query(&self.key(prefix), query).await
    }

    async fn set(&self, req: SetRequest) -> Result<(), ComponentError> {
        let req = SetRequest { key: self.key(&req.key), ..req };
        self.inner.set(req).await.map_err(|e| self.unprefix(e))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), ComponentError> {
        let req = DeleteRequest { key: self.key(&req.key), ..req };
        self.inner.delete(req).await.map_err(|e| self.unprefix(e))
    }

    async fn transact(&self, ops: Vec<TransactionOp>) -> Result<(), ComponentError> {
        let ops = ops.into_iter().map(|o| self.op(o)).collect();
        self.inner.transact(ops).await.map_err(|e| self.unprefix(e))
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::in_memory::InMemoryStateStore;

    #[test]
    fn key_prefix_values() {
        assert_eq!(prefix_for(None, "app", "store").as_deref(), Some("app||"));
        assert_eq!(prefix_for(Some("AppID"), "app", "store").as_deref(), Some("app||"));
        assert_eq!(prefix_for(Some("name"), "app", "store").as_deref(), Some("store||"));
        assert_eq!(prefix_for(Some("none"), "app", "store"), None);
        assert_eq!(prefix_for(Some("shared"), "app", "store").as_deref(), Some("shared||"));
    }

    #[tokio::test]
    async fn keys_are_stored_under_the_prefix_and_errors_name_the_callers_key() {
        let inner = Arc::new(InMemoryStateStore::default());
        let s = PrefixedStateStore::new(inner.clone(), "app||".to_string());
        s.set(SetRequest { key: "k".into(), value: "v".into(), ..Default::default() }).await.unwrap();
        assert!(inner.get("app||k").await.unwrap().is_some());
        assert!(inner.get("k").await.unwrap().is_none());
        let err = s.set(SetRequest { key: "k".into(), etag: Some("999".into()), ..Default::default() }).await.unwrap_err();
        assert_eq!(err, ComponentError::EtagMismatch { key: "k".into() });
    }
}
