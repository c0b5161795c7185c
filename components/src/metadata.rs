//! Typed decoding of a component's `spec.metadata`: each backend takes the keys it knows and the rest
//! are rejected by name.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// A bad metadata entry, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("unknown metadata key {key:?} (known keys: {known})")]
    UnknownKey { key: String, known: String },
    #[error("metadata key {key:?}: {value:?} {reason}")]
    BadValue { key: String, value: String, reason: String },
    #[error("metadata key {key:?} is required")]
    Missing { key: String },
}

/// Resolved `spec.metadata` (secret references already replaced by their values).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    values: BTreeMap<String, String>,
    known: Vec<&'static str>,
}

impl Metadata {
    /// Wraps resolved name/value pairs.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { values, known: Vec::new() }
    }

    /// Takes an optional string value.
    pub fn take(&mut self, key: &'static str) -> Option<String> {
        self.known.push(key);
        self.values.remove(key)
    }

    /// Takes a required string value.
    pub fn require(&mut self, key: &'static str) -> Result<String, MetadataError> {
        self.take(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| MetadataError::Missing { key: key.to_string() })
    }

    /// Takes and parses an optional value.
    pub fn parse<T: FromStr>(&mut self, key: &'static str) -> Result<Option<T>, MetadataError>
    where
        T::Err: std::fmt::Display,
    {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<T>().map(Some).map_err(|e| MetadataError::BadValue {
                key: key.to_string(),
                value: v.clone(),
                reason: format!("is not valid: {e}"),
            }),
        }
    }

    /// Takes an optional duration written as Go-style `10s`, `500ms`, `1m`, `2h` or bare seconds.
    pub fn duration(&mut self, key: &'static str) -> Result<Option<Duration>, MetadataError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| MetadataError::BadValue {
                key: key.to_string(),
                value: v,
                reason: "is not a duration (use 500ms, 10s, 1m, 2h)".to_string(),
            }),
        }
    }

    /// Ignores a key Dapr defines but this backend does not need (kept for file compatibility).
    pub fn ignore(&mut self, key: &'static str) {
        self.take(key);
    }

    /// All remaining entries, for backends whose metadata is free-form data.
    pub fn into_entries(self) -> BTreeMap<String, String> {
        self.values
    }

    /// Fails on the first key no one took.
    pub fn finish(self) -> Result<(), MetadataError> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(MetadataError::UnknownKey {
                key,
                known: if self.known.is_empty() {
                    "none".to_string()
                } else {
                    self.known.join(", ")
                },
            }),
        }
    }
}

/// Parses `500ms`, `10s`, `1m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let mut m = Metadata::new([("nope".to_string(), "1".to_string())].into());
        let _ = m.take("known");
        let err = m.finish().unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("known"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let mut m = Metadata::new([("n".to_string(), "x".to_string())].into());
        let err = m.parse::<u32>("n").unwrap_err().to_string();
        assert!(err.contains("\"n\"") && err.contains("\"x\""), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("3d"), None);
    }
}
