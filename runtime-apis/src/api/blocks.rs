//! Configuration, lock, secret and binding operations.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use oxidecar_components::bindings::{BindingRequest, BindingResponse};
use oxidecar_components::configuration::{ConfigItem, ConfigSubscription};
use oxidecar_components::lock::UnlockStatus;
use oxidecar_components::secretstores::Secret;
use tonic::Code;

use super::{Api, find};
use crate::error::ApiError;

const CONFIG_NOT_FOUND: &str = "ERR_CONFIGURATION_STORE_NOT_FOUND";
const LOCK_NOT_FOUND: &str = "ERR_LOCK_STORE_NOT_FOUND";

impl Api {
    /// Reads configuration items (all when `keys` is empty).
    pub async fn get_configuration(&self, store: &str, keys: &[String]) -> Result<HashMap<String, ConfigItem>, ApiError> {
        let s = find(&self.stores.configuration, store, "configuration store", CONFIG_NOT_FOUND)?;
        let what = || format!("configuration store {store:?}: get {keys:?}");
        self.on_component(store, "ERR_CONFIGURATION_GET", what, (), |()| async move {
            s.get(keys).await.map_err(|e| ApiError::component(e, "ERR_CONFIGURATION_GET", what()))
        })
        .await
    }

    /// Subscribes to configuration changes.
    pub async fn subscribe_configuration(&self, store: &str, keys: Vec<String>, metadata: &HashMap<String, String>) -> Result<ConfigSubscription, ApiError> {
        let s = find(&self.stores.configuration, store, "configuration store", CONFIG_NOT_FOUND)?;
        s.subscribe(keys, metadata)
            .await
            .map_err(|e| ApiError::component(e, "ERR_CONFIGURATION_SUBSCRIBE", format_args!("configuration store {store:?}: subscribe")))
    }

    /// Ends a configuration subscription; `false` when the id is unknown.
    pub async fn unsubscribe_configuration(&self, store: &str, id: &str) -> Result<bool, ApiError> {
        let s = find(&self.stores.configuration, store, "configuration store", CONFIG_NOT_FOUND)?;
        if id.is_empty() {
            return Err(ApiError::malformed(format!("configuration store {store:?}: subscription id is empty")));
        }
        s.unsubscribe(id)
            .await
            .map_err(|e| ApiError::component(e, "ERR_CONFIGURATION_UNSUBSCRIBE", format_args!("configuration store {store:?}: unsubscribe {id:?}")))
    }

    /// Writes configuration items (oxidecar extension for stores that accept writes).
    pub async fn set_configuration(&self, store: &str, items: HashMap<String, String>) -> Result<(), ApiError> {
        let s = find(&self.stores.configuration, store, "configuration store", CONFIG_NOT_FOUND)?;
        s.set(items)
            .await
            .map_err(|e| ApiError::component(e, "ERR_CONFIGURATION_SET", format_args!("configuration store {store:?}: set")))
    }

    fn lock_args(store: &str, resource: &str, owner: &str) -> Result<(), ApiError> {
        if resource.is_empty() {
            return Err(ApiError::malformed(format!("lock store {store:?}: resource id is empty")));
        }
        if owner.is_empty() {
            return Err(ApiError::malformed(format!("lock store {store:?}: lock owner of {resource:?} is empty")));
        }
        Ok(())
    }

    /// Tries to take a lock for `expiry_secs` seconds.
    pub async fn try_lock(&self, store: &str, resource: &str, owner: &str, expiry_secs: i32) -> Result<bool, ApiError> {
        let s = find(&self.stores.lock, store, "lock store", LOCK_NOT_FOUND)?;
        Self::lock_args(store, resource, owner)?;
        if expiry_secs <= 0 {
            return Err(ApiError::malformed(format!("lock store {store:?}: expiry of {resource:?} must be positive, got {expiry_secs}")));
        }
        let what = || format!("lock store {store:?}: lock {resource:?}");
        self.on_component(store, "ERR_TRY_LOCK", what, (), |()| async move {
            s.try_lock(resource, owner, Duration::from_secs(expiry_secs as u64)).await.map_err(|e| ApiError::component(e, "ERR_TRY_LOCK", what()))
        })
        .await
    }

    /// Releases a lock held by `owner`.
    pub async fn unlock(&self, store: &str, resource: &str, owner: &str) -> Result<UnlockStatus, ApiError> {
        let s = find(&self.stores.lock, store, "lock store", LOCK_NOT_FOUND)?;
        Self::lock_args(store, resource, owner)?;
        let what = || format!("lock store {store:?}: unlock {resource:?}");
        self.on_component(store, "ERR_UNLOCK", what, (), |()| async move {
            s.unlock(resource, owner).await.map_err(|e| ApiError::component(e, "ERR_UNLOCK", what()))
        })
        .await
    }

    /// Reads one secret.
    pub async fn get_secret(&self, store: &str, key: &str, metadata: &HashMap<String, String>) -> Result<Secret, ApiError> {
        let s = find(&self.stores.secrets, store, "secret store", "ERR_SECRET_STORE_NOT_FOUND")?;
        if key.is_empty() {
            return Err(ApiError::malformed(format!("secret store {store:?}: secret key is empty")));
        }
        let what = || format!("secret store {store:?}: get {key:?}");
        self.on_component(store, "ERR_SECRET_GET", what, (), |()| async move {
            s.get(key, metadata).await.map_err(|e| ApiError::component(e, "ERR_SECRET_GET", what()))
        })
        .await
    }

    /// Reads every secret of a store.
    pub async fn get_bulk_secret(&self, store: &str, metadata: &HashMap<String, String>) -> Result<HashMap<String, Secret>, ApiError> {
        let s = find(&self.stores.secrets, store, "secret store", "ERR_SECRET_STORE_NOT_FOUND")?;
        s.bulk_get(metadata)
            .await
            .map_err(|e| ApiError::component(e, "ERR_SECRET_GET", format_args!("secret store {store:?}: bulk get")))
    }

    /// Calls an output binding.
    pub async fn invoke_binding(&self, name: &str, operation: &str, data: Bytes, metadata: HashMap<String, String>) -> Result<BindingResponse, ApiError> {
        let b = find(&self.stores.output_bindings, name, "output binding", "ERR_INVOKE_OUTPUT_BINDING")?;
        if operation.is_empty() {
            return Err(ApiError::malformed(format!("output binding {name:?}: operation is empty (supported: {})", b.operations().join(", "))));
        }
        if !b.operations().contains(&operation) {
            return Err(ApiError::new(
                Code::InvalidArgument,
                "ERR_INVOKE_OUTPUT_BINDING",
                format!("output binding {name:?}: operation {operation:?} is not supported (supported: {})", b.operations().join(", ")),
            ));
        }
        let req = BindingRequest { operation: operation.to_string(), data, metadata };
        let what = || format!("output binding {name:?}: {operation}");
        self.on_component(name, "ERR_INVOKE_OUTPUT_BINDING", what, req, |req| async move {
            b.invoke(req).await.map_err(|e| ApiError::component(e, "ERR_INVOKE_OUTPUT_BINDING", what()))
        })
        .await
    }
}
