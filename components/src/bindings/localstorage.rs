//! `bindings.localstorage`: an output binding storing files under a root directory.

use std::collections::HashMap;
use std::path::{Component as PathPart, Path, PathBuf};

use bytes::Bytes;

use super::{BindingRequest, BindingResponse, OutputBinding};
use crate::ComponentError;
use crate::metadata::{Metadata, MetadataError};

/// Files under `rootPath`; operations create, get, list and delete.
#[derive(Debug)]
pub struct LocalStorageBinding {
    root: PathBuf,
}

impl LocalStorageBinding {
    /// Reads `rootPath` (required) and creates it.
    pub fn from_config(mut metadata: Metadata) -> Result<Self, MetadataError> {
        let root = PathBuf::from(metadata.require("rootPath")?);
        metadata.finish()?;
        std::fs::create_dir_all(&root).map_err(|e| MetadataError::BadValue {
            key: "rootPath".to_string(),
            value: root.display().to_string(),
            reason: format!("cannot be created: {e}"),
        })?;
        Ok(Self { root })
    }

    fn path(&self, req: &BindingRequest) -> Result<PathBuf, ComponentError> {
        let name = req
            .metadata
            .get("fileName")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ComponentError::InvalidRequest(format!("operation {}: metadata fileName is required", req.operation)))?;
        let rel = Path::new(name);
        // Refuse escapes from the root directory.
        if rel.components().any(|c| !matches!(c, PathPart::Normal(_))) {
            return Err(ComponentError::InvalidRequest(format!("fileName {name:?} must be a relative path inside rootPath")));
        }
        Ok(self.root.join(rel))
    }
}

fn io_error(op: &str, path: &Path, e: std::io::Error) -> ComponentError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ComponentError::NotFound(format!("file {}", path.display()))
    } else {
        ComponentError::Unavailable(format!("{op} {}: {e}", path.display()))
    }
}

#[async_trait::async_trait]
impl OutputBinding for LocalStorageBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create", "get", "list", "delete"]
    }

    async fn invoke(&self, req: BindingRequest) -> Result<BindingResponse, ComponentError> {
        match req.operation.as_str() {
            "create" => {
                let path = self.path(&req)?;
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(|e| io_error("create", parent, e))?;
                }
                tokio::fs::write(&path, &req.data).await.map_err(|e| io_error("create", &path, e))?;
                Ok(BindingResponse {
                    data: Bytes::new(),
                    metadata: HashMap::from([("fileName".to_string(), path.display().to_string())]),
                })
            }
            "get" => {
                let path = self.path(&req)?;
                let data = tokio::fs::read(&path).await.map_err(|e| io_error("get", &path, e))?;
                Ok(BindingResponse { data: data.into(), metadata: HashMap::new() })
            }
            "delete" => {
                let path = self.path(&req)?;
                tokio::fs::remove_file(&path).await.map_err(|e| io_error("delete", &path, e))?;
                Ok(BindingResponse::default())
            }
            "list" => {
                let mut names = Vec::new();
                let mut dir = tokio::fs::read_dir(&self.root).await.map_err(|e| io_error("list", &self.root, e))?;
                while let Some(entry) = dir.next_entry().await.map_err(|e| io_error("list", &self.root, e))? {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
                names.sort();
                let data = serde_json::to_vec(&names).map_err(|e| ComponentError::Unavailable(e.to_string()))?;
                Ok(BindingResponse { data: data.into(), metadata: HashMap::new() })
            }
            other => Err(ComponentError::Unsupported { operation: other.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_get_list_delete() {
        let root = std::env::temp_dir().join(format!("oxidecar-ls-{}", std::process::id()));
        let b = LocalStorageBinding::from_config(Metadata::new([("rootPath".into(), root.display().to_string())].into())).unwrap();
        let md = HashMap::from([("fileName".to_string(), "a.txt".to_string())]);
        let req = |op: &str, data: &'static str| BindingRequest { operation: op.into(), data: Bytes::from(data), metadata: md.clone() };
        b.invoke(req("create", "hello")).await.unwrap();
        assert_eq!(b.invoke(req("get", "")).await.unwrap().data, Bytes::from("hello"));
        assert_eq!(b.invoke(req("list", "")).await.unwrap().data, Bytes::from(r#"["a.txt"]"#));
        b.invoke(req("delete", "")).await.unwrap();
        assert!(matches!(b.invoke(req("get", "")).await, Err(ComponentError::NotFound(_))));
        let escape = BindingRequest { operation: "get".into(), data: Bytes::new(), metadata: HashMap::from([("fileName".to_string(), "../x".to_string())]) };
        assert!(matches!(b.invoke(escape).await, Err(ComponentError::InvalidRequest(_))));
        let _ = std::fs::remove_dir_all(root);
    }
}
