//! `state.in-memory`: the reference state store. Numeric ETags, TTL, atomic transactions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::{
    Concurrency, DeleteRequest, SetRequest, StateFeature, StateItem, StateStore, TransactionOp,
    ttl_from_metadata,
};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    etag: u64,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// The in-memory state store.
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    items: Mutex<HashMap<String, Entry>>,
    next_etag: AtomicU64,
}

impl InMemoryStateStore {
    /// Builds the store from component metadata (it takes none besides Dapr's `actorStateStore`).
    pub fn from_config(mut metadata: Metadata) -> Result<Self, MetadataError> {
        metadata.ignore("actorStateStore");
        metadata.finish()?;
        Ok(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_etag(
        items: &HashMap<String, Entry>,
        key: &str,
        etag: Option<&str>,
        concurrency: Concurrency,
        now: Instant,
    ) -> Result<(), ComponentError> {
        let current = items.get(key).filter(|e| e.live(now));
        match etag.filter(|e| !e.is_empty()) {
            Some(tag) => {
                let parsed: u64 = tag.parse().map_err(|_| ComponentError::EtagInvalid {
                    key: key.to_string(),
                    etag: tag.to_string(),
                })?;
                match current {
                    Some(e) if e.etag == parsed => Ok(()),
                    _ => Err(ComponentError::EtagMismatch { key: key.to_string() }),
                }
            }
            None if concurrency == Concurrency::FirstWrite && current.is_some() => {
                Err(ComponentError::EtagMismatch { key: key.to_string() })
            }
            None => Ok(()),
        }
    }

    fn validate_set(req: &SetRequest) -> Result<Option<Instant>, ComponentError> {
        if req.key.is_empty() {
            return Err(ComponentError::InvalidRequest("key is empty".to_string()));
        }
        Ok(ttl_from_metadata(&req.metadata)?.map(|ttl| Instant::now() + ttl))
    }

    fn apply_set(&self, items: &mut HashMap<String, Entry>, req: SetRequest, expires: Option<Instant>) {
        let etag = self.next_etag.fetch_add(1, Ordering::Relaxed) + 1;
        items.insert(req.key, Entry { value: req.value, etag, expires });
    }
}

#[async_trait::async_trait]
impl StateStore for InMemoryStateStore {
    fn features(&self) -> &'static [StateFeature] {
        &[StateFeature::Etag, StateFeature::Transactional, StateFeature::Ttl]
    }

    async fn get(&self, key: &str) -> Result<Option<StateItem>, ComponentError> {
        let now = Instant::now();
        let mut items = self.lock();
        match items.get(key) {
            Some(e) if e.live(now) => Ok(Some(StateItem {
                value: e.value.clone(),
                etag: Some(e.etag.to_string()),
                metadata: HashMap::new(),
            })),
            Some(_) => {
                items.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, req: SetRequest) -> Result<(), ComponentError> {
        let expires = Self::validate_set(&req)?;
        let mut items = self.lock();
        Self::check_etag(&items, &req.key, req.etag.as_deref(), req.concurrency, Instant::now())?;
        self.apply_set(&mut items, req, expires);
        Ok(())
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), ComponentError> {
        if req.key.is_empty() {
            return Err(ComponentError::InvalidRequest("key is empty".to_string()));
        }
        let mut items = self.lock();
        Self::check_etag(&items, &req.key, req.etag.as_deref(), req.concurrency, Instant::now())?;
        items.remove(&req.key);
        Ok(())
    }

    async fn transact(&self, ops: Vec<TransactionOp>) -> Result<(), ComponentError> {
        let mut expiries = Vec::with_capacity(ops.len());
        for op in &ops {
            expiries.push(match op {
                TransactionOp::Set(r) => Self::validate_set(r)?,
                TransactionOp::Delete(r) if r.key.is_empty() => {
                    return Err(ComponentError::InvalidRequest("key is empty".to_string()));
                }
                TransactionOp::Delete(_) => None,
            });
        }
        let now = Instant::now();
        let mut items = self.lock();
        // Check every precondition against a scratch copy of the touched keys so the batch is atomic.
        let mut scratch: HashMap<String, Entry> = HashMap::new();
        for op in &ops {
            if let Some(e) = items.get(op.key()) {
                scratch.entry(op.key().to_string()).or_insert_with(|| e.clone());
            }
        }
        for op in &ops {
            match op {
                TransactionOp::Set(r) => {
                    Self::check_etag(&scratch, &r.key, r.etag.as_deref(), r.concurrency, now)?;
                    scratch.insert(r.key.clone(), Entry { value: Bytes::new(), etag: u64::MAX, expires: None });
                }
                TransactionOp::Delete(r) => {
                    Self::check_etag(&scratch, &r.key, r.etag.as_deref(), r.concurrency, now)?;
                    scratch.remove(&r.key);
                }
            }
        }
        for (op, expires) in ops.into_iter().zip(expiries) {
            match op {
                TransactionOp::Set(r) => self.apply_set(&mut items, r, expires),
                TransactionOp::Delete(r) => {
                    items.remove(&r.key);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> SetRequest {
        SetRequest { key: key.into(), value: Bytes::from(value.to_string()), ..Default::default() }
    }

    #[tokio::test]
    async fn etags_and_concurrency() {
        let s = InMemoryStateStore::default();
        s.set(set("k", "1")).await.unwrap();
        let item = s.get("k").await.unwrap().unwrap();
        let etag = item.etag.clone().unwrap();
        // Matching etag succeeds and changes the etag.
        s.set(SetRequest { etag: Some(etag.clone()), ..set("k", "2") }).await.unwrap();
        // The old etag is now stale.
        let err = s.set(SetRequest { etag: Some(etag.clone()), ..set("k", "3") }).await.unwrap_err();
        assert_eq!(err, ComponentError::EtagMismatch { key: "k".into() });
        assert!(matches!(
            s.set(SetRequest { etag: Some("abc".into()), ..set("k", "3") }).await,
            Err(ComponentError::EtagInvalid { .. })
        ));
        // First-write without an etag fails on an existing key and works on a new one.
        let fw = |k: &str| SetRequest { concurrency: Concurrency::FirstWrite, ..set(k, "x") };
        assert!(s.set(fw("k")).await.is_err());
        s.set(fw("new")).await.unwrap();
        // Delete with a stale etag fails; without one it works.
        assert!(s.delete(DeleteRequest { key: "k".into(), etag: Some(etag), ..Default::default() }).await.is_err());
        s.delete(DeleteRequest { key: "k".into(), ..Default::default() }).await.unwrap();
        assert_eq!(s.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn ttl_expires() {
        let s = InMemoryStateStore::default();
        let mut req = set("t", "v");
        req.metadata.insert("ttlInSeconds".into(), "0".into());
        s.set(req).await.unwrap();
        assert_eq!(s.get("t").await.unwrap(), None);
        let mut bad = set("t", "v");
        bad.metadata.insert("ttlInSeconds".into(), "soon".into());
        assert!(matches!(s.set(bad).await, Err(ComponentError::InvalidRequest(m)) if m.contains("ttlInSeconds")));
    }

    #[tokio::test]
    async fn transaction_is_atomic() {
        let s = InMemoryStateStore::default();
        s.set(set("a", "1")).await.unwrap();
        let ops = vec![
            TransactionOp::Set(set("b", "2")),
            TransactionOp::Delete(DeleteRequest { key: "a".into(), etag: Some("999".into()), ..Default::default() }),
        ];
        assert!(s.transact(ops).await.is_err());
        assert_eq!(s.get("b").await.unwrap(), None, "nothing applied after a failed check");
        let ops = vec![TransactionOp::Set(set("b", "2")), TransactionOp::Delete(DeleteRequest { key: "a".into(), ..Default::default() })];
        s.transact(ops).await.unwrap();
        assert!(s.get("a").await.unwrap().is_none());
        assert_eq!(s.get("b").await.unwrap().unwrap().value, Bytes::from("2"));
    }
}
