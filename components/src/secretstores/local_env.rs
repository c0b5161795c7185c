//! `secretstores.local.env`: secrets from the sidecar's environment, optionally limited to a prefix.

use std::collections::HashMap;

use super::{Secret, SecretStore};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Environment variables as secrets. With a prefix, only variables starting with it are visible
/// and their names are given without it.
#[derive(Debug, Default)]
pub struct LocalEnvSecretStore {
    prefix: String,
}

impl LocalEnvSecretStore {
    /// Reads `prefix`.
    pub fn from_config(mut metadata: Metadata) -> Result<Self, MetadataError> {
        let prefix = metadata.take("prefix").unwrap_or_default();
        metadata.finish()?;
        Ok(Self { prefix })
    }

    /// A store limited to `prefix` (used for the embedded default).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }
}

#[async_trait::async_trait]
impl SecretStore for LocalEnvSecretStore {
    async fn get(&self, name: &str, _metadata: &HashMap<String, String>) -> Result<Secret, ComponentError> {
        let var = format!("{}{name}", self.prefix);
        match std::env::var(&var) {
            Ok(v) => Ok(HashMap::from([(name.to_string(), v)])),
            Err(_) => Err(ComponentError::NotFound(format!("secret {name:?} (environment variable {var})"))),
        }
    }

    async fn bulk_get(&self, _metadata: &HashMap<String, String>) -> Result<HashMap<String, Secret>, ComponentError> {
        Ok(std::env::vars()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(&self.prefix)?.to_string();
                (!name.is_empty()).then(|| (name.clone(), HashMap::from([(name, v)])))
            })
            .collect())
    }
}
