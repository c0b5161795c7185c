//! `sequencer.redis`: `INCRBY <keyPrefix><key> <size>`; Redis makes each increment atomic, so ids
//! grow strictly across every client of the server.

use super::{Segment, Sequencer, check, ending_at};
use crate::metadata::{Metadata, MetadataError};
use crate::redis_conn::{RedisConn, RedisSettings};
use crate::{ComponentError, catalog};

/// The Redis sequencer.
#[derive(Debug)]
pub struct RedisSequencer {
    redis: RedisConn,
    prefix: String,
}

impl RedisSequencer {
    /// Builds the sequencer from Dapr's Redis keys and `keyPrefix`; connects lazily.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::sequencer::REDIS);
        let settings = RedisSettings::take(&mut m)?;
        let prefix = m.take("keyPrefix").unwrap_or_default();
        m.finish()?;
        Ok(Self { redis: RedisConn::new(&settings)?, prefix })
    }
}

#[async_trait::async_trait]
impl Sequencer for RedisSequencer {
    async fn segment(&self, key: &str, size: u32) -> Result<Segment, ComponentError> {
        check(key, size)?;
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(format!("{}{key}", self.prefix)).arg(size);
        let last: i64 = self.redis.cmd("next id", &cmd).await?;
        Ok(ending_at(last, size))
    }
}
