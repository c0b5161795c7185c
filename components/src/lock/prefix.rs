//! Dapr's lock key layout: daprd stores resource `r` as `lock||<app-id>||r` by default, chosen by the
//! lock component's `keyPrefix` (`appid`, `name`, `none`, or a custom prefix). The loader wraps every
//! lock store with [`PrefixedLockStore`], so Redis keys match what daprd writes.

use std::sync::Arc;
use std::time::Duration;

use super::{LockStore, UnlockStatus};
use crate::ComponentError;

const API_PREFIX: &str = "lock||";

/// The backend prefix for a `keyPrefix` value (always starts with `lock||`).
pub fn lock_prefix(key_prefix: Option<&str>, app_id: &str, component: &str) -> String {
    let middle = match key_prefix.map(str::trim).filter(|p| !p.is_empty()) {
        None => app_id,
        Some(p) if p.eq_ignore_ascii_case("appid") => app_id,
        Some(p) if p.eq_ignore_ascii_case("name") => component,
        Some(p) if p.eq_ignore_ascii_case("none") => "",
        Some(custom) => custom,
    };
    if middle.is_empty() { API_PREFIX.to_string() } else { format!("{API_PREFIX}{middle}||") }
}

/// A lock store whose resources live under a prefix in the backend.
pub struct PrefixedLockStore {
    inner: Arc<dyn LockStore>,
    prefix: String,
}

impl PrefixedLockStore {
    /// Wraps `inner`; `prefix` comes from [`lock_prefix`].
    pub fn new(inner: Arc<dyn LockStore>, prefix: String) -> Self {
        Self { inner, prefix }
    }

    fn key(&self, resource: &str) -> Result<String, ComponentError> {
        if resource.contains("||") {
            return Err(ComponentError::InvalidRequest(format!("lock resource {resource:?} must not contain \"||\"")));
        }
        Ok(format!("{}{resource}", self.prefix))
    }
}

#[async_trait::async_trait]
impl LockStore for PrefixedLockStore {
    async fn try_lock(&self, resource: &str, owner: &str, expiry: Duration) -> Result<bool, ComponentError> {
        self.inner.try_lock(&self.key(resource)?, owner, expiry).await
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, ComponentError> {
        self.inner.unlock(&self.key(resource)?, owner).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_daprd() {
        assert_eq!(lock_prefix(None, "app", "store"), "lock||app||");
        assert_eq!(lock_prefix(Some("name"), "app", "store"), "lock||store||");
        assert_eq!(lock_prefix(Some("none"), "app", "store"), "lock||");
        assert_eq!(lock_prefix(Some("team"), "app", "store"), "lock||team||");
        assert_eq!(lock_prefix(None, "", "store"), "lock||");
    }
}
