//! `secretstores.local.file`: secrets from a JSON file, nested objects flattened with a separator.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{Secret, SecretStore};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Separator for nested JSON keys when the component does not set `nestedSeparator`.
pub const DEFAULT_NESTED_SEPARATOR: &str = ":";

/// Secrets read once from a JSON file at start-up.
#[derive(Debug)]
pub struct LocalFileSecretStore {
    secrets: HashMap<String, Secret>,
}

impl LocalFileSecretStore {
    /// Reads `secretsFile` (required), `nestedSeparator` and `multiValued`.
    pub fn from_config(mut metadata: Metadata) -> Result<Self, MetadataError> {
        let file = PathBuf::from(metadata.require("secretsFile")?);
        let sep = metadata.take("nestedSeparator").unwrap_or_else(|| DEFAULT_NESTED_SEPARATOR.to_string());
        let multi = metadata.parse::<bool>("multiValued")?.unwrap_or(false);
        metadata.finish()?;
        let bad = |reason: String| MetadataError::BadValue {
            key: "secretsFile".to_string(),
            value: file.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&file).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("is not JSON: {e}")))?;
        let Value::Object(top) = json else {
            return Err(bad("must hold a JSON object".to_string()));
        };
        let mut secrets = HashMap::new();
        for (name, value) in top {
            if multi {
                let mut flat = HashMap::new();
                match value {
                    Value::Object(_) => flatten(&mut flat, "", &value, &sep),
                    other => flatten(&mut flat, &name, &other, &sep),
                }
                secrets.insert(name, flat);
            } else {
                let mut flat = HashMap::new();
                flatten(&mut flat, &name, &value, &sep);
                for (k, v) in flat {
                    secrets.insert(k.clone(), HashMap::from([(k, v)]));
                }
            }
        }
        Ok(Self { secrets })
    }
}

fn flatten(out: &mut HashMap<String, String>, prefix: &str, value: &Value, sep: &str) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}{sep}{k}") };
                flatten(out, &key, v, sep);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[async_trait::async_trait]
impl SecretStore for LocalFileSecretStore {
    async fn get(&self, name: &str, _metadata: &HashMap<String, String>) -> Result<Secret, ComponentError> {
        self.secrets.get(name).cloned().ok_or_else(|| ComponentError::NotFound(format!("secret {name:?}")))
    }

    async fn bulk_get(&self, _metadata: &HashMap<String, String>) -> Result<HashMap<String, Secret>, ComponentError> {
        Ok(self.secrets.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str, extra: &[(&str, &str)]) -> Result<LocalFileSecretStore, MetadataError> {
        let dir = std::env::temp_dir().join(format!("oxidecar-secrets-{}-{}", std::process::id(), json.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secrets.json");
        std::fs::write(&file, json).unwrap();
        let mut m: std::collections::BTreeMap<String, String> =
            extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        m.insert("secretsFile".into(), file.display().to_string());
        LocalFileSecretStore::from_config(Metadata::new(m))
    }

    #[tokio::test]
    async fn nested_keys_are_flattened() {
        let s = store(r#"{"db":{"password":"pw","port":5432},"token":"t"}"#, &[]).unwrap();
        let none = HashMap::new();
        assert_eq!(s.get("db:password", &none).await.unwrap()["db:password"], "pw");
        assert_eq!(s.get("db:port", &none).await.unwrap()["db:port"], "5432");
        assert!(s.get("nope", &none).await.unwrap_err().to_string().contains("\"nope\""));
        assert_eq!(s.bulk_get(&none).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn passes_the_secrets_conformance_suite() {
        let s = store(r#"{"db":{"password":"pw"},"token":"t","n":5}"#, &[]).expect("store");
        let expected = HashMap::from([("db:password".to_string(), "pw".to_string())]);
        if let Err(e) = crate::secretstores::conformance::run(&s, "db:password", &expected, "db:user").await {
            panic!("secretstores.local.file conformance: {e}");
        }
        let multi = store(r#"{"db":{"user":"u","password":"pw"}}"#, &[("multiValued", "true")]).expect("store");
        let expected = HashMap::from([("user".to_string(), "u".to_string()), ("password".to_string(), "pw".to_string())]);
        if let Err(e) = crate::secretstores::conformance::run(&multi, "db", &expected, "cache").await {
            panic!("secretstores.local.file (multiValued) conformance: {e}");
        }
    }

    #[tokio::test]
    async fn multi_valued_and_bad_file() {
        let s = store(r#"{"db":{"user":"u","password":"pw"}}"#, &[("multiValued", "true")]).unwrap();
        assert_eq!(s.get("db", &HashMap::new()).await.unwrap().len(), 2);
        let err = store("[1]", &[("multiValued", "true"), ("x", "y")]).unwrap_err().to_string();
        assert!(err.contains("\"x\""), "{err}");
    }
}
