//! Configuration store declarations.

use super::Kind::{Bool, Text};
use super::state::{POSTGRES_CONNECTION, REDIS_CONNECTION};
use super::{Key, TypeInfo};

/// `configuration.in-memory`.
pub static IN_MEMORY: TypeInfo = TypeInfo {
    type_name: "configuration.in-memory",
    feature: "",
    summary: "In-process items with counting versions; subscribers see each change.",
    keys: &[],
    capabilities: &[],
    free_form: Some("Every metadata entry is an initial item: `name` is the key, `value` the value."),
};

/// `configuration.redis`.
pub static REDIS: TypeInfo = TypeInfo {
    type_name: "configuration.redis",
    feature: "redis",
    summary: "Each item a Redis string `value||version` (Dapr's layout); subscriptions follow keyspace notifications, which are switched on with `CONFIG SET notify-keyspace-events` when the server allows it.",
    keys: &[REDIS_CONNECTION, &[Key::optional(
        "enableKeyspaceNotifications",
        Bool,
        "true",
        "oxidecar: run `CONFIG SET notify-keyspace-events KA` on start so subscriptions work; set `false` where CONFIG is not allowed and configure the server yourself.",
    )]],
    capabilities: &[],
    free_form: None,
};

/// `configuration.postgresql`.
pub static POSTGRESQL: TypeInfo = TypeInfo {
    type_name: "configuration.postgresql",
    feature: "postgres",
    summary: "Items are rows `(key, value, version, metadata)` of a table you create; subscriptions LISTEN on the channel named by the subscribe metadata `pgNotifyChannel`, fed by a trigger that calls `pg_notify` (see RUNTIME.md).",
    keys: &[POSTGRES_CONNECTION, &[Key::required("table", Text, "Table holding the items.")]],
    capabilities: &[],
    free_form: None,
};

/// Configuration declarations.
pub const ALL: &[&TypeInfo] = &[&IN_MEMORY, &REDIS, &POSTGRESQL];
