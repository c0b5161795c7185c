//! `state.redis`: Dapr's Redis state store layout, so data written by daprd is readable and back.
//! Each key is a hash with `data` (the value's bytes) and `version` (the ETag, incremented on every
//! write); TTL is the key's own expiry. Writes, deletes and transactions run as one Lua script that
//! checks every ETag / first-write precondition before it changes anything, so a batch is atomic.
//! The key prefix (`<app-id>||`) is applied by the loader for every state store, as daprd does.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use redis::Script;

use super::{
    Concurrency, DeleteRequest, SetRequest, StateFeature, StateItem, StateStore, TTL_EXPIRE_TIME, TransactionOp, rfc3339,
    ttl_from_metadata,
};
use crate::metadata::{Metadata, MetadataError};
use crate::redis_conn::{RedisConn, RedisSettings};
use crate::{ComponentError, catalog};

/// Checks every precondition, then applies every operation. KEYS are the keys; ARGV holds five
/// values per key (kind `s`/`d`, etag, first-write `1`/`0`, data, ttl seconds or empty). A failed check answers `ETAG_MISMATCH <index>` and changes nothing.
const APPLY: &str = r#"
for i = 1, #KEYS do
  local b = (i - 1) * 5
  local etag, fw = ARGV[b + 2], ARGV[b + 3]
  if etag ~= "" or (fw == "1" and ARGV[b + 1] == "s") then
    local ver = redis.call("HGET", KEYS[i], "version")
    if etag ~= "" then
      if ver == false or ver ~= etag then return redis.error_reply("ETAG_MISMATCH " .. i) end
    elseif ver ~= false then
      return redis.error_reply("ETAG_MISMATCH " .. i)
    end
  end
end
for i = 1, #KEYS do
  local b = (i - 1) * 5
  if ARGV[b + 1] == "d" then
    redis.call("DEL", KEYS[i])
  else
    redis.call("HSET", KEYS[i], "data", ARGV[b + 4])
    redis.call("HINCRBY", KEYS[i], "version", 1)
    local ttl = ARGV[b + 5]
    if ttl == "" then
      redis.call("PERSIST", KEYS[i])
    elseif tonumber(ttl) <= 0 then
      redis.call("DEL", KEYS[i])
    else
      redis.call("EXPIRE", KEYS[i], ttl)
    end
  end
end
return #KEYS
"#;

/// The Redis state store.
#[derive(Debug)]
pub struct RedisStateStore {
    redis: RedisConn,
    apply: Script,
}

impl RedisStateStore {
    /// Builds the store from Dapr's metadata keys (see `docs/components.md`). Connects lazily, so a
    /// Redis that is down does not stop the sidecar; operations then fail with `Unavailable` within
    /// `timeout`, and the connection is re-established when Redis is back. Needs a tokio runtime.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::state::REDIS);
        let settings = RedisSettings::take(&mut m)?;
        m.ignore("actorStateStore");
        m.finish()?;
        Ok(Self { redis: RedisConn::new(&settings)?, apply: Script::new(APPLY) })
    }

    /// Runs [`APPLY`] for `ops`; an ETag failure names the key of the operation that failed.
    async fn apply(&self, ops: &[TransactionOp]) -> Result<(), ComponentError> {
        let mut inv = self.apply.prepare_invoke();
        for op in ops {
            let (kind, etag, concurrency) = match op {
                TransactionOp::Set(r) => ("s", r.etag.as_deref(), r.concurrency),
                TransactionOp::Delete(r) => ("d", r.etag.as_deref(), r.concurrency),
            };
            let key = op.key();
            if key.is_empty() {
                return Err(ComponentError::InvalidRequest("key is empty".to_string()));
            }
            let etag = etag.filter(|e| !e.is_empty()).unwrap_or_default();
            if !etag.is_empty() && etag.parse::<u64>().is_err() {
                return Err(ComponentError::EtagInvalid { key: key.to_string(), etag: etag.to_string() });
            }
            let (data, ttl): (&[u8], String) = match op {
                TransactionOp::Set(r) => (&r.value, ttl_from_metadata(&r.metadata)?.map(|d| d.as_secs().to_string()).unwrap_or_default()),
                TransactionOp::Delete(_) => (&[], String::new()),
            };
            let fw = if concurrency == Concurrency::FirstWrite { "1" } else { "0" };
            inv.key(key).arg(kind).arg(etag).arg(fw).arg(data).arg(ttl);
        }
        let inv = &inv;
        match self.redis.run_raw(|mut conn| async move { inv.invoke_async::<i64>(&mut conn).await }).await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) if e.code() == Some("ETAG_MISMATCH") => {
                let index = e.detail().and_then(|d| d.split_whitespace().next()).and_then(|i| i.parse::<usize>().ok()).unwrap_or(1);
                let key = ops.get(index.saturating_sub(1)).map(|o| o.key().to_string()).unwrap_or_default();
                Err(ComponentError::EtagMismatch { key })
            }
            Some(Err(e)) => Err(self.redis.error("write", &e)),
            None => Err(self.redis.timed_out("write")),
        }
    }
}

/// Reads `data`, `version` and the absolute expiry (seconds since the epoch; negative for none).
fn decode(fields: (Option<Vec<u8>>, Option<String>), expire_at: i64) -> Result<Option<StateItem>, ComponentError> {
    let (Some(data), version) = fields else {
        return Ok(None);
    };
    let mut metadata = HashMap::new();
    if expire_at > 0 {
        metadata.insert(TTL_EXPIRE_TIME.to_string(), rfc3339(UNIX_EPOCH + Duration::from_secs(expire_at as u64)));
    }
    Ok(Some(StateItem { value: Bytes::from(data), etag: version, metadata }))
}

#[async_trait::async_trait]
impl StateStore for RedisStateStore {
    fn features(&self) -> &'static [StateFeature] {
        &[StateFeature::Etag, StateFeature::Transactional, StateFeature::Ttl]
    }

    async fn get(&self, key: &str) -> Result<Option<StateItem>, ComponentError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(key).arg("data").arg("version").cmd("EXPIRETIME").arg(key);
        let pipe = &pipe;
        let (fields, expire_at): ((Option<Vec<u8>>, Option<String>), i64) =
            self.redis.run("get", |mut conn| async move { pipe.query_async(&mut conn).await }).await?;
        decode(fields, expire_at)
    }

    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<StateItem>, ComponentError>> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HMGET").arg(key).arg("data").arg("version").cmd("EXPIRETIME").arg(key);
        }
        type Row = ((Option<Vec<u8>>, Option<String>), i64);
        let pipe = &pipe;
        let raw: Result<Vec<redis::Value>, _> = self.redis.run("bulk get", |mut conn| async move { pipe.query_async(&mut conn).await }).await;
        match raw {
            Ok(values) => values
                .chunks(2)
                .zip(keys)
                .map(|(pair, key)| {
                    let row: Result<Row, _> = redis::from_redis_value(redis::Value::Array(pair.to_vec()));
                    match row {
                        Ok((fields, exp)) => decode(fields, exp),
                        Err(e) => Err(ComponentError::Unavailable(format!("redis {}: key {key:?} is not a Dapr state hash: {e}", self.redis.addr))),
                    }
                })
                .collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn set(&self, req: SetRequest) -> Result<(), ComponentError> {
        self.apply(&[TransactionOp::Set(req)]).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), ComponentError> {
        self.apply(&[TransactionOp::Delete(req)]).await
    }

    async fn transact(&self, ops: Vec<TransactionOp>) -> Result<(), ComponentError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.apply(&ops).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    #[tokio::test]
    async fn metadata_is_checked_by_name() {
        let err = |pairs: &[(&str, &str)]| RedisStateStore::from_config(meta(pairs)).unwrap_err().to_string();
        assert!(err(&[]).contains("redisHost"));
        assert!(err(&[("redisHost", "h:x")]).contains("bad port"));
        assert!(err(&[("redisHost", "h:1"), ("enableTLS", "true")]).contains("enableTLS"));
        assert!(err(&[("redisHost", "h:1"), ("redisDB", "one")]).contains("redisDB"));
        assert!(err(&[("redisHost", "h:1"), ("timeout", "soon")]).contains("timeout"));
        assert!(err(&[("redisHost", "h:1"), ("poolSiz", "3")]).contains("poolSiz"));
        let ok = RedisStateStore::from_config(meta(&[("redisHost", "127.0.0.1:6379"), ("redisDB", "2"), ("enableTLS", "false"), ("timeout", "2s")]));
        assert_eq!(ok.map(|s| s.redis.timeout).ok(), Some(Duration::from_secs(2)));
    }
}
