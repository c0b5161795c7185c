//! `state.in-memory`: the reference state store. Numeric ETags, TTL, atomic transactions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::query::{Query, QueryItem, QueryPage};
use super::{
    Concurrency, DeleteRequest, SetRequest, StateFeature, StateItem, StateStore, TransactionOp,
    TTL_EXPIRE_TIME, rfc3339, ttl_from_metadata,
};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    etag: u64,
    expires: Option<Expiry>,
}

/// When a key with a TTL expires: the monotonic deadline decides, the wall-clock time is reported.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    at: Instant,
    wall: SystemTime,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t.at > now)
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

    fn validate_set(req: &SetRequest) -> Result<Option<Expiry>, ComponentError> {
        if req.key.is_empty() {
            return Err(ComponentError::InvalidRequest("key is empty".to_string()));
        }
        Ok(ttl_from_metadata(&req.metadata)?.map(|ttl| Expiry { at: Instant::now() + ttl, wall: SystemTime::now() + ttl }))
    }

    fn apply_set(&self, items: &mut HashMap<String, Entry>, req: SetRequest, expires: Option<Expiry>) {
        let etag = self.next_etag.fetch_add(1, Ordering::Relaxed) + 1;
        items.insert(req.key, Entry { value: req.value, etag, expires });
    }
}

#[async_trait::async_trait]
impl StateStore for InMemoryStateStore {
    fn features(&self) -> &'static [StateFeature] {
        &[StateFeature::Etag, StateFeature::Transactional, StateFeature::Ttl, StateFeature::QueryApi]
    }

    async fn query(&self, prefix: &str, query: &Query) -> Result<QueryPage, ComponentError> {
        let now = Instant::now();
        let mut rows: Vec<(serde_json::Value, QueryItem)> = {
            let items = self.lock();
            items
                .iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
                // Only JSON documents can be queried; other values are never selected.
                .filter_map(|(k, e)| Some((serde_json::from_slice(&e.value).ok()?, k, e)))
                .filter(|(doc, _, _)| query.selects(doc))
                .map(|(doc, k, e)| {
                    let item = QueryItem { key: k[prefix.len()..].to_string(), value: e.value.clone(), etag: Some(e.etag.to_string()) };
                    (doc, item)
                })
                .collect()
        };
        rows.sort_by(|(a, x), (b, y)| query.order(a, b).then_with(|| x.key.cmp(&y.key)));
        Ok(query.paginate(rows.into_iter().map(|(_, item)| item).collect()))
    }

    async fn get(&self, key: &str) -> Result<Option<StateItem>, ComponentError> {
        let now = Instant::now();
        let mut items = self.lock();
        match items.get(key) {
            Some(e) if e.live(now) => Ok(Some(StateItem {
                value: e.value.clone(),
                etag: Some(e.etag.to_string()),
                metadata: match e.expires {
                    Some(x) => HashMap::from([(TTL_EXPIRE_TIME.to_string(), rfc3339(x.wall))]),
                    None => HashMap::new(),
                },
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

    #[tokio::test]
    async fn passes_the_state_conformance_suite() {
        let store = InMemoryStateStore::default();
        if let Err(e) = crate::state::conformance::run(&store, "mem").await {
            panic!("state.in-memory conformance: {e}");
        }
    }
}
