//! Secret store building block: named secrets, each a small map of key → value.

pub mod conformance;
pub mod local_env;
pub mod local_file;

use std::collections::HashMap;

use crate::ComponentError;

/// One secret: usually a single entry named like the secret, several for multi-valued stores.
pub type Secret = HashMap<String, String>;

/// A secret store.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Reads one secret; `NotFound` naming it when absent.
    async fn get(&self, name: &str, metadata: &HashMap<String, String>) -> Result<Secret, ComponentError>;

    /// Reads every secret the store exposes.
    async fn bulk_get(&self, metadata: &HashMap<String, String>) -> Result<HashMap<String, Secret>, ComponentError>;

    /// Releases backend resources; idempotent.
    async fn close(&self) {}
}
