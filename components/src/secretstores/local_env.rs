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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_secrets_conformance_suite() {
        // `set_var` is unsafe in edition 2024 (and this crate forbids unsafe), so the suite reads a
        // variable every test environment has: PATH, seen through the prefix "PAT" as "H".
        let s = LocalEnvSecretStore::with_prefix("PAT");
        let expected = HashMap::from([("H".to_string(), std::env::var("PATH").expect("PATH is set"))]);
        if let Err(e) = crate::secretstores::conformance::run(&s, "H", &expected, "H_OXIDECAR_NOT_SET").await {
            panic!("secretstores.local.env conformance: {e}");
        }
    }
}
