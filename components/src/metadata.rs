//! Typed decoding of a component's `spec.metadata`: each backend takes the keys it knows and the rest
//! are rejected by name.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::catalog::TypeInfo;

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
    declared: Option<&'static TypeInfo>,
}

impl Metadata {
    /// Wraps resolved name/value pairs.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { values, known: Vec::new(), declared: None }
    }

    /// Absent keys then read as the default `info` declares (the one `docs/components.md` shows).
    pub fn with_defaults(mut self, info: &'static TypeInfo) -> Self {
        self.declared = Some(info);
        self
    }

    /// Takes an optional string value (the declared default when absent).
    pub fn take(&mut self, key: &'static str) -> Option<String> {
        self.known.push(key);
        self.values
            .remove(key)
            .or_else(|| self.declared.and_then(|t| t.default_of(key)).map(str::to_string))
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

    /// Takes a required `host[:port]` value (`default_port` when the port is left out).
    pub fn host_port(&mut self, key: &'static str, default_port: u16) -> Result<(String, u16), MetadataError> {
        let value = self.require(key)?;
        let bad = |reason: &str| MetadataError::BadValue { key: key.to_string(), value: value.clone(), reason: reason.to_string() };
        let (host, port) = match value.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad("has a bad port (use host:port)"))?),
            None => (value.clone(), default_port),
        };
        if host.is_empty() {
            return Err(bad("has no host (use host:port)"));
        }
        Ok((host, port))
    }

    /// Takes an optional boolean that must be `false` (or absent): the feature it turns on is not
    /// available in this build.
    pub fn refuse_true(&mut self, key: &'static str, why: &str) -> Result<(), MetadataError> {
        if self.parse::<bool>(key)?.unwrap_or(false) {
            return Err(MetadataError::BadValue { key: key.to_string(), value: "true".to_string(), reason: format!("is not supported: {why}") });
        }
        Ok(())
    }

    /// Takes an optional value that must be empty (or absent): the feature it configures is not
    /// available in this build.
    pub fn refuse_set(&mut self, key: &'static str, why: &str) -> Result<(), MetadataError> {
        match self.take(key) {
            // The value may be a secret (a client key): name the key, not the value.
            Some(v) if !v.trim().is_empty() => {
                Err(MetadataError::BadValue { key: key.to_string(), value: "<set>".to_string(), reason: format!("is not supported: {why}") })
            }
            _ => Ok(()),
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

/// Parses Go-style durations (`500ms`, `10s`, `1m30s`, `2h`, `250us`) or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n));
    }
    let mut rest = s;
    let mut secs = 0.0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let n: f64 = num.parse().ok()?;
        secs += n * match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = next;
    }
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
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1"), None);
    }
}
