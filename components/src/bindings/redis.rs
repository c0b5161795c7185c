//! `bindings.redis`: an output binding on plain Redis strings (Dapr's operations): `create` sets
//! request metadata `key` to the data (with `ttlInSeconds` as its expiry), `get` answers it (empty
//! when missing), `delete` removes it. Keys are used as given, as daprd does.

use std::collections::HashMap;

use bytes::Bytes;

use super::{BindingRequest, BindingResponse, OutputBinding};
use crate::metadata::{Metadata, MetadataError};
use crate::redis_conn::{RedisConn, RedisSettings};
use crate::{ComponentError, catalog};

/// The Redis output binding.
#[derive(Debug)]
pub struct RedisBinding {
    redis: RedisConn,
}

impl RedisBinding {
    /// Builds the binding from Dapr's Redis keys; connects lazily.
    pub fn from_config(metadata: Metadata) -> Result<Self, MetadataError> {
        let mut m = metadata.with_defaults(&catalog::bindings::REDIS);
        let settings = RedisSettings::take(&mut m)?;
        m.ignore("direction");
        m.finish()?;
        Ok(Self { redis: RedisConn::new(&settings)? })
    }
}

fn key(req: &BindingRequest) -> Result<&str, ComponentError> {
    req.metadata
        .get("key")
        .map(String::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ComponentError::InvalidRequest(format!("operation {}: request metadata key is required", req.operation)))
}

#[async_trait::async_trait]
impl OutputBinding for RedisBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create", "get", "delete"]
    }

    async fn invoke(&self, req: BindingRequest) -> Result<BindingResponse, ComponentError> {
        match req.operation.as_str() {
            "create" => {
                let k = key(&req)?;
                let mut cmd = redis::cmd("SET");
                cmd.arg(k).arg(req.data.as_ref());
                if let Some(ttl) = crate::state::ttl_from_metadata(&req.metadata)? {
                    cmd.arg("EX").arg(ttl.as_secs().max(1));
                }
                self.redis.cmd::<()>("create", &cmd).await?;
                Ok(BindingResponse::default())
            }
            "get" => {
                let value: Option<Vec<u8>> = self.redis.cmd("get", redis::cmd("GET").arg(key(&req)?)).await?;
                Ok(BindingResponse { data: value.map(Bytes::from).unwrap_or_default(), metadata: HashMap::new() })
            }
            "delete" => {
                self.redis.cmd::<i64>("delete", redis::cmd("DEL").arg(key(&req)?)).await?;
                Ok(BindingResponse::default())
            }
            other => Err(ComponentError::Unsupported { operation: other.to_string() }),
        }
    }
}
