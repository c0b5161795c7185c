//! Pub/sub declarations.

use super::TypeInfo;

/// `pubsub.in-memory`.
pub static IN_MEMORY: TypeInfo = TypeInfo {
    type_name: "pubsub.in-memory",
    feature: "",
    summary: "In-process fan-out to every subscriber of a topic.",
    keys: &[],
    capabilities: &[],
    free_form: None,
};

/// Pub/sub declarations.
pub const ALL: &[&TypeInfo] = &[&IN_MEMORY];
