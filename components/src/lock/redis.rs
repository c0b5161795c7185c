//! `lock.redis`: a lock is the Redis string `<prefix><resource>` holding the owner, taken with
//! `SET key owner NX PX expiry` so it frees itself when the lease runs out, and released by a Lua
//! compare-and-delete so only the owner can unlock (the layout daprd's Redis lock uses).

use std::time::Duration;

use redis::Script;

use super::{LockStore, UnlockStatus};
use crate::metadata::{Metadata, MetadataError};
use crate::redis_conn::{RedisConn, RedisSettings};
use crate::{ComponentError, catalog};

/// 1 = released, 0 = missing, -1 = held by someone else.
const UNLOCK: &str = r#"
local v = redis.call("GET", KEYS[1])
if v == false then return 0 end
if v ~= ARGV[1] then return -1 end
redis.call("DEL", KEYS[1])
return 1
"#;

/// The Redis lock store.
#[derive(Debug)]
pub struct RedisLockStore {
    redis: RedisConn,
    unlock: Script,
}

impl RedisLockStore {
    /// Builds the store from Dapr's Redis keys; connects lazily.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::lock::REDIS);
        let settings = RedisSettings::take(&mut m)?;
        m.finish()?;
        Ok(Self { redis: RedisConn::new(&settings)?, unlock: Script::new(UNLOCK) })
    }
}

#[async_trait::async_trait]
impl LockStore for RedisLockStore {
    async fn try_lock(&self, resource: &str, owner: &str, expiry: Duration) -> Result<bool, ComponentError> {
        let ms = expiry.as_millis().max(1) as u64;
        let mut cmd = redis::cmd("SET");
        cmd.arg(resource).arg(owner).arg("NX").arg("PX").arg(ms);
        let reply: Option<String> = self.redis.cmd("lock", &cmd).await?;
        Ok(reply.is_some())
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, ComponentError> {
        let mut inv = self.unlock.prepare_invoke();
        inv.key(resource).arg(owner);
        let inv = &inv;
        let status: i64 = self.redis.run("unlock", |mut conn| async move { inv.invoke_async(&mut conn).await }).await?;
        Ok(match status {
            1 => UnlockStatus::Success,
            0 => UnlockStatus::LockDoesNotExist,
            _ => UnlockStatus::LockBelongsToOthers,
        })
    }
}
