//! Sequencer declarations (Layotto's monotonic id generator; no Dapr RPC).

use super::Kind::Text;
use super::state::{POSTGRES_CONNECTION, REDIS_CONNECTION};
use super::{Key, TypeInfo};

/// `sequencer.in-memory`.
pub static IN_MEMORY: TypeInfo = TypeInfo {
    type_name: "sequencer.in-memory",
    feature: "",
    summary: "In-process counters per key; ids restart with the process.",
    keys: &[],
    capabilities: &[],
    free_form: None,
};

/// `sequencer.redis`.
pub static REDIS: TypeInfo = TypeInfo {
    type_name: "sequencer.redis",
    feature: "redis",
    summary: "`INCRBY` on one Redis key per sequence (`<keyPrefix><key>`).",
    keys: &[REDIS_CONNECTION, &[Key::optional("keyPrefix", Text, "sequencer||", "Prefix of the Redis key of each sequence.")]],
    capabilities: &[],
    free_form: None,
};

/// `sequencer.postgresql`.
pub static POSTGRESQL: TypeInfo = TypeInfo {
    type_name: "sequencer.postgresql",
    feature: "postgres",
    summary: "One row per sequence key; `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` hands out the next id.",
    keys: &[POSTGRES_CONNECTION, &[Key::optional("tableName", Text, "oxidecar_sequencer", "Table of the counters (created when missing).")]],
    capabilities: &[],
    free_form: None,
};

/// Sequencer declarations.
pub const ALL: &[&TypeInfo] = &[&IN_MEMORY, &REDIS, &POSTGRESQL];
