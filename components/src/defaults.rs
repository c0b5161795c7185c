//! Components registered when no resources path is given, under the names Dapr's quickstarts use,
//! so `oxidecar run` works with nothing installed.

use std::sync::Arc;

use crate::configuration::in_memory::InMemoryConfigStore;
use crate::loader::LoadedComponent;
use crate::lock::in_memory::InMemoryLockStore;
use crate::pubsub::in_memory::InMemoryPubSub;
use crate::registry::Component;
use crate::secretstores::local_env::LocalEnvSecretStore;
use crate::state::in_memory::InMemoryStateStore;

/// Environment variables with this prefix are the embedded secret store's secrets (prefix removed).
pub const DEFAULT_SECRET_ENV_PREFIX: &str = "OXIDECAR_SECRET_";

/// `statestore`, `pubsub`, `configstore`, `lockstore` and `secretstore`, all in-process.
pub fn embedded() -> Vec<LoadedComponent> {
    let c = |name: &str, type_name: &str, component: Component| LoadedComponent {
        name: name.to_string(),
        type_name: type_name.to_string(),
        version: "v1".to_string(),
        file: None,
        component,
    };
    vec![
        c("statestore", "state.in-memory", Component::State(Arc::new(InMemoryStateStore::default()))),
        c("pubsub", "pubsub.in-memory", Component::PubSub(Arc::new(InMemoryPubSub::default()))),
        c("configstore", "configuration.in-memory", Component::Configuration(Arc::new(InMemoryConfigStore::default()))),
        c("lockstore", "lock.in-memory", Component::Lock(Arc::new(InMemoryLockStore::default()))),
        c(
            "secretstore",
            "secretstores.local.env",
            Component::SecretStore(Arc::new(LocalEnvSecretStore::with_prefix(DEFAULT_SECRET_ENV_PREFIX))),
        ),
    ]
}
