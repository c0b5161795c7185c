//! The declared shape of every component type: its metadata keys (name, kind, default, required,
//! description) and capabilities. The loader validates Component files against it before a backend
//! sees them, and `docs/components.md` is rendered from it, so the docs cannot drift from the code.
//!
//! Declarations are plain data compiled in every build (whatever the cargo features), one file per
//! building block under `catalog/`.

pub mod bindings;
pub mod configuration;
pub mod lock;
pub mod pubsub;
mod render;
pub mod secretstores;
pub mod sequencer;
pub mod state;

use std::collections::BTreeMap;

pub use render::render_markdown;

use crate::metadata::{MetadataError, parse_duration};

/// What a metadata value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Text,
    /// `true` / `false` (Go's spellings: `1`, `t`, `TRUE`, ... are accepted too).
    Bool,
    /// A whole number.
    Int,
    /// A duration: `500ms`, `10s`, `1m30s`, `2h`, or a bare number of seconds.
    Duration,
    /// One of the listed words (case-insensitive).
    OneOf(&'static [&'static str]),
}

impl Kind {
    /// A short description for the docs.
    pub fn describe(self) -> String {
        match self {
            Self::Text => "string".to_string(),
            Self::Bool => "bool".to_string(),
            Self::Int => "integer".to_string(),
            Self::Duration => "duration".to_string(),
            Self::OneOf(words) => words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(" \\| "),
        }
    }

    /// Checks a value; the reason says what was expected.
    pub fn check(self, value: &str) -> Result<(), String> {
        let v = value.trim();
        let ok = match self {
            Self::Text => true,
            Self::Bool => parse_bool(v).is_some(),
            Self::Int => v.parse::<i64>().is_ok(),
            Self::Duration => parse_duration(v).is_some(),
            Self::OneOf(words) => words.iter().any(|w| w.eq_ignore_ascii_case(v)),
        };
        if ok || v.is_empty() { Ok(()) } else { Err(format!("is not a valid {}", self.describe())) }
    }
}

/// Go's `strconv.ParseBool` spellings, which Dapr component files use.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// How a backend treats a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The backend uses the value.
    Used,
    /// Dapr defines the key; it is accepted so existing files work, but has no effect here.
    Accepted,
    /// Dapr defines the key; only the listed harmless value is accepted, any other is an error
    /// (e.g. `enableTLS` must be `false` while this build speaks plain TCP).
    OnlyValue(&'static str),
}

/// One metadata key a component type accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// The value used when the key is absent, as written in a file; empty for none.
    pub default: &'static str,
    pub description: &'static str,
    pub usage: Use,
}

impl Key {
    /// A key the component cannot work without.
    pub const fn required(name: &'static str, kind: Kind, description: &'static str) -> Self {
        Self { name, kind, required: true, default: "", description, usage: Use::Used }
    }

    /// An optional key with its default (empty for none).
    pub const fn optional(name: &'static str, kind: Kind, default: &'static str, description: &'static str) -> Self {
        Self { name, kind, required: false, default, description, usage: Use::Used }
    }

    /// A Dapr key accepted for compatibility that has no effect here.
    pub const fn accepted(name: &'static str, kind: Kind, description: &'static str) -> Self {
        Self { name, kind, required: false, default: "", description, usage: Use::Accepted }
    }

    /// A Dapr key accepted only with one value (anything else names the key as unsupported).
    pub const fn only(name: &'static str, kind: Kind, value: &'static str, description: &'static str) -> Self {
        Self { name, kind, required: false, default: value, description, usage: Use::OnlyValue(value) }
    }
}

/// The declaration of one component type.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    /// Dapr's type string, e.g. `state.redis`.
    pub type_name: &'static str,
    /// The cargo feature of `oxidecar-components` that builds it; empty when always built.
    pub feature: &'static str,
    /// One line on what the component is and how it stores data.
    pub summary: &'static str,
    /// Key groups (shared groups such as Redis connection keys are listed once and reused).
    pub keys: &'static [&'static [Key]],
    /// Capabilities as GetMetadata reports them (`ETAG`, `TRANSACTIONAL`, ...), or the operations
    /// of an output binding.
    pub capabilities: &'static [&'static str],
    /// When set, keys not declared are not errors: they are data (the text says what they mean).
    pub free_form: Option<&'static str>,
}

impl TypeInfo {
    /// Every declared key, in declaration order.
    pub fn all_keys(&self) -> impl Iterator<Item = &'static Key> + '_ {
        self.keys.iter().flat_map(|g| g.iter())
    }

    /// The declared key called `name`.
    pub fn key(&self, name: &str) -> Option<&'static Key> {
        self.all_keys().find(|k| k.name == name)
    }

    /// Checks a component's resolved metadata against the declaration: unknown keys, missing
    /// required keys, malformed values and unsupported values are errors naming the key.
    pub fn validate(&self, values: &BTreeMap<String, String>) -> Result<(), MetadataError> {
        for (name, value) in values {
            let Some(key) = self.key(name) else {
                if self.free_form.is_some() {
                    continue;
                }
                return Err(MetadataError::UnknownKey { key: name.clone(), known: self.known_list() });
            };
            let bad = |reason: String| MetadataError::BadValue { key: name.clone(), value: value.clone(), reason };
            key.kind.check(value).map_err(bad)?;
            if let Use::OnlyValue(allowed) = key.usage {
                let same = match key.kind {
                    Kind::Bool => parse_bool(value) == parse_bool(allowed) || value.trim().is_empty(),
                    _ => value.trim().eq_ignore_ascii_case(allowed) || value.trim().is_empty(),
                };
                if !same {
                    return Err(bad(format!("is not supported by {} (only {allowed:?})", self.type_name)));
                }
            }
        }
        for key in self.all_keys().filter(|k| k.required) {
            if values.get(key.name).is_none_or(|v| v.trim().is_empty()) {
                return Err(MetadataError::Missing { key: key.name.to_string() });
            }
        }
        Ok(())
    }

    fn known_list(&self) -> String {
        let names: Vec<&str> = self.all_keys().map(|k| k.name).collect();
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    }

    /// The declared default of `key`, when it has one.
    pub fn default_of(&self, key: &str) -> Option<&'static str> {
        self.key(key).map(|k| k.default).filter(|d| !d.is_empty())
    }
}

/// Every declared component type, ordered by building block then type string.
pub fn all() -> Vec<&'static TypeInfo> {
    let mut v: Vec<&'static TypeInfo> = [
        state::ALL,
        pubsub::ALL,
        configuration::ALL,
        lock::ALL,
        sequencer::ALL,
        secretstores::ALL,
        bindings::ALL,
    ]
    .concat();
    v.sort_by_key(|t| t.type_name);
    v
}

/// The declaration of a type string.
pub fn find(type_name: &str) -> Option<&'static TypeInfo> {
    all().into_iter().find(|t| t.type_name == type_name)
}

#[cfg(test)]
mod tests;

/// Cargo features of this crate compiled into this build.
const BUILT_FEATURES: &[&str] = &[
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "http-binding")]
    "http-binding",
    #[cfg(feature = "pubsub-redis")]
    "pubsub-redis",
    #[cfg(feature = "pubsub-jetstream")]
    "pubsub-jetstream",
    #[cfg(feature = "pubsub-mqtt3")]
    "pubsub-mqtt3",
    #[cfg(feature = "pubsub-rabbitmq")]
    "pubsub-rabbitmq",
];

/// Whether the backend of `info` is compiled into this build.
pub fn is_built(info: &TypeInfo) -> bool {
    info.feature.is_empty() || BUILT_FEATURES.contains(&info.feature)
}
