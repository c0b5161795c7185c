//! Distributed lock declarations.

use super::Kind::Text;
use super::{Key, TypeInfo};
use super::state::REDIS_CONNECTION;

/// daprd's lock key layout key (applied by the loader for every lock store).
pub const KEY_PREFIX: &[Key] = &[Key::optional(
    "keyPrefix",
    Text,
    "appid",
    "Lock key layout: `appid` stores `lock||<app-id>||<resource>`, `name` uses the component name, `none` stores `lock||<resource>`, any other value is a custom prefix.",
)];

/// `lock.in-memory`.
pub static IN_MEMORY: TypeInfo = TypeInfo {
    type_name: "lock.in-memory",
    feature: "",
    summary: "In-process leases with expiry; unlock by a non-owner is refused.",
    keys: &[KEY_PREFIX],
    capabilities: &[],
    free_form: None,
};

/// `lock.redis`.
pub static REDIS: TypeInfo = TypeInfo {
    type_name: "lock.redis",
    feature: "redis",
    summary: "`SET key owner NX PX expiry` takes the lock; unlock is a Lua compare-and-delete, so only the owner releases it.",
    keys: &[KEY_PREFIX, REDIS_CONNECTION],
    capabilities: &[],
    free_form: None,
};

/// Lock declarations.
pub const ALL: &[&TypeInfo] = &[&IN_MEMORY, &REDIS];
