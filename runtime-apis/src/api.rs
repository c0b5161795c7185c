//! The protocol-neutral core both API servers call: component lookup by name, validation, and the
//! building-block operations with errors that name the component and key.

mod blocks;
mod pubsub;
mod resilient;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oxidecar_components::bindings::{InputBinding, OutputBinding};
use oxidecar_components::configuration::ConfigStore;
use oxidecar_components::lock::LockStore;
use oxidecar_components::pubsub::PubSub;
use oxidecar_components::secretstores::SecretStore;
use oxidecar_components::state::StateStore;
use oxidecar_components::subscription::Subscription;
use oxidecar_components::{Component, LoadedComponent};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;

pub use self::pubsub::{BulkEntry, is_raw};
use crate::app::AppChannel;
use crate::config::RuntimeConfig;
use crate::error::ApiError;
use crate::invoke::ServiceInvoker;
use crate::metrics::Metrics;

/// A component as GetMetadata reports it.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub name: String,
    pub type_name: String,
    pub version: String,
    pub capabilities: Vec<String>,
}

/// Components by building block and name.
#[derive(Default)]
pub struct Stores {
    pub state: HashMap<String, Arc<dyn StateStore>>,
    pub pubsub: HashMap<String, Arc<dyn PubSub>>,
    pub configuration: HashMap<String, Arc<dyn ConfigStore>>,
    pub lock: HashMap<String, Arc<dyn LockStore>>,
    pub secrets: HashMap<String, Arc<dyn SecretStore>>,
    pub output_bindings: HashMap<String, Arc<dyn OutputBinding>>,
    pub input_bindings: HashMap<String, Arc<dyn InputBinding>>,
}

/// Shared state of one runtime.
pub struct Api {
    pub app_id: String,
    pub config: RuntimeConfig,
    pub stores: Stores,
    pub components: Vec<LoadedComponent>,
    pub infos: Vec<ComponentInfo>,
    pub subscriptions: Mutex<Vec<Subscription>>,
    pub extended_metadata: Mutex<HashMap<String, String>>,
    pub invoker: Arc<dyn ServiceInvoker>,
    /// Dapr Resiliency policies for invocation targets and components.
    pub resiliency: oxidecar_components::resiliency::Resiliency,
    pub app: Option<Arc<AppChannel>>,
    pub metrics: Metrics,
    pub on_shutdown: Arc<dyn Fn() + Send + Sync>,
    /// Background work (deliveries, config streams) owned by the runtime.
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
}

impl Api {
    /// Indexes loaded components by block and name.
    pub fn index(components: &[LoadedComponent]) -> (Stores, Vec<ComponentInfo>) {
        let mut stores = Stores::default();
        let mut infos = Vec::with_capacity(components.len());
        for c in components {
            let name = c.name.clone();
            let capabilities: Vec<String> = match &c.component {
                Component::State(s) => {
                    stores.state.insert(name.clone(), s.clone());
                    s.features().iter().map(|f| f.as_str().to_string()).collect()
                }
                Component::PubSub(p) => {
                    stores.pubsub.insert(name.clone(), p.clone());
                    p.features().iter().map(|f| f.as_str().to_string()).collect()
                }
                Component::Configuration(s) => {
                    stores.configuration.insert(name.clone(), s.clone());
                    Vec::new()
                }
                Component::Lock(s) => {
                    stores.lock.insert(name.clone(), s.clone());
                    Vec::new()
                }
                Component::SecretStore(s) => {
                    stores.secrets.insert(name.clone(), s.clone());
                    Vec::new()
                }
                // Dapr has no sequencer RPC; the component is listed by GetMetadata only.
                Component::Sequencer(_) => Vec::new(),
                Component::Binding { input, output } => {
                    let mut caps = Vec::new();
                    if let Some(i) = input {
                        stores.input_bindings.insert(name.clone(), i.clone());
                        caps.push("INPUT_BINDING".to_string());
                    }
                    if let Some(o) = output {
                        stores.output_bindings.insert(name.clone(), o.clone());
                        caps.push("OUTPUT_BINDING".to_string());
                    }
                    caps
                }
            };
            infos.push(ComponentInfo { name, type_name: c.type_name.clone(), version: c.version.clone(), capabilities });
        }
        (stores, infos)
    }

    /// Closes every component (idempotent per component).
    pub async fn close_components(&self) {
        for c in &self.components {
            c.component.close().await;
        }
    }
}

/// Finds a component by name; the error names the block, the name and what is configured.
fn find<'a, T: ?Sized>(
    map: &'a HashMap<String, Arc<T>>,
    name: &str,
    what: &str,
    error_code: &'static str,
) -> Result<&'a Arc<T>, ApiError> {
    if name.is_empty() {
        return Err(ApiError::new(Code::InvalidArgument, error_code, format!("{what} name is empty")));
    }
    map.get(name).ok_or_else(|| {
        let mut known: Vec<&str> = map.keys().map(String::as_str).collect();
        known.sort_unstable();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        ApiError::new(Code::InvalidArgument, error_code, format!("{what} {name:?} is not found (configured: {known})"))
    })
}

/// Rejects empty keys and Dapr's reserved `||` separator.
fn check_key(store: &str, key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::malformed(format!("state store {store:?}: key is empty")));
    }
    if key.contains("||") {
        return Err(ApiError::malformed(format!("state store {store:?}: key {key:?} must not contain \"||\"")));
    }
    Ok(())
}
