//! Maps Dapr component type strings (`state.in-memory`, `secretstores.local.file`) to constructors.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::{InputBinding, OutputBinding, cron::CronBinding, localstorage::LocalStorageBinding};
use crate::configuration::{ConfigStore, in_memory::InMemoryConfigStore};
use crate::lock::{LockStore, in_memory::InMemoryLockStore};
use crate::metadata::{Metadata, MetadataError};
use crate::pubsub::{PubSub, in_memory::InMemoryPubSub};
use crate::sequencer::{Sequencer, in_memory::InMemorySequencer};
use crate::secretstores::{SecretStore, local_env::LocalEnvSecretStore, local_file::LocalFileSecretStore};
use crate::state::{StateStore, in_memory::InMemoryStateStore};

/// A built component, by building block.
#[derive(Clone)]
pub enum Component {
    State(Arc<dyn StateStore>),
    PubSub(Arc<dyn PubSub>),
    Configuration(Arc<dyn ConfigStore>),
    Lock(Arc<dyn LockStore>),
    SecretStore(Arc<dyn SecretStore>),
    Sequencer(Arc<dyn Sequencer>),
    /// A binding may be input, output or both.
    Binding { input: Option<Arc<dyn InputBinding>>, output: Option<Arc<dyn OutputBinding>> },
}

impl Component {
    /// The building block name used in metrics and errors.
    pub fn block(&self) -> &'static str {
        match self {
            Self::State(_) => "state",
            Self::PubSub(_) => "pubsub",
            Self::Configuration(_) => "configuration",
            Self::Lock(_) => "lock",
            Self::SecretStore(_) => "secretstores",
            Self::Sequencer(_) => "sequencer",
            Self::Binding { .. } => "bindings",
        }
    }

    /// Closes the component (idempotent).
    pub async fn close(&self) {
        match self {
            Self::State(c) => c.close().await,
            Self::PubSub(c) => c.close().await,
            Self::Configuration(c) => c.close().await,
            Self::Lock(c) => c.close().await,
            Self::SecretStore(c) => c.close().await,
            Self::Sequencer(c) => c.close().await,
            Self::Binding { input, output } => {
                if let Some(i) = input {
                    i.close().await;
                }
                if let Some(o) = output {
                    o.close().await;
                }
            }
        }
    }
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Component({})", self.block())
    }
}

/// Builds a component from its resolved metadata.
pub type Constructor = fn(Metadata) -> Result<Component, MetadataError>;

/// Type string → constructor.
#[derive(Debug, Clone)]
pub struct Registry {
    constructors: BTreeMap<&'static str, Constructor>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self { constructors: BTreeMap::new() }
    }

    /// Every backend compiled into this build.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register("state.in-memory", |m| Ok(Component::State(Arc::new(InMemoryStateStore::from_config(m)?))));
        #[cfg(feature = "redis")]
        r.register("state.redis", |m| Ok(Component::State(Arc::new(crate::state::redis::RedisStateStore::from_config(m)?))));
        #[cfg(feature = "postgres")]
        r.register("state.postgresql", |m| {
            Ok(Component::State(Arc::new(crate::state::postgres::PostgresStateStore::from_config(m)?)))
        });
        r.register("pubsub.in-memory", |m| Ok(Component::PubSub(Arc::new(InMemoryPubSub::from_config(m)?))));
        #[cfg(feature = "pubsub-redis")]
        r.register("pubsub.redis", |m| Ok(Component::PubSub(Arc::new(crate::pubsub::redis::RedisPubSub::from_config(m)?))));
        #[cfg(feature = "pubsub-jetstream")]
        r.register("pubsub.jetstream", |m| Ok(Component::PubSub(Arc::new(crate::pubsub::jetstream::JetStreamPubSub::from_config(m)?))));
        #[cfg(feature = "pubsub-mqtt3")]
        r.register("pubsub.mqtt3", |m| Ok(Component::PubSub(Arc::new(crate::pubsub::mqtt3::Mqtt3PubSub::from_config(m)?))));
        #[cfg(feature = "pubsub-rabbitmq")]
        r.register("pubsub.rabbitmq", |m| Ok(Component::PubSub(Arc::new(crate::pubsub::rabbitmq::RabbitMqPubSub::from_config(m)?))));
        r.register("configuration.in-memory", |m| {
            Ok(Component::Configuration(Arc::new(InMemoryConfigStore::from_config(m)?)))
        });
        #[cfg(feature = "redis")]
        r.register("configuration.redis", |m| {
            Ok(Component::Configuration(Arc::new(crate::configuration::redis::RedisConfigStore::from_config(m)?)))
        });
        #[cfg(feature = "postgres")]
        r.register("configuration.postgresql", |m| {
            Ok(Component::Configuration(Arc::new(crate::configuration::postgres::PostgresConfigStore::from_config(m)?)))
        });
        r.register("lock.in-memory", |m| Ok(Component::Lock(Arc::new(InMemoryLockStore::from_config(m)?))));
        #[cfg(feature = "redis")]
        r.register("lock.redis", |m| Ok(Component::Lock(Arc::new(crate::lock::redis::RedisLockStore::from_config(m)?))));
        #[cfg(feature = "postgres")]
        r.register("sequencer.postgresql", |m| {
            Ok(Component::Sequencer(Arc::new(crate::sequencer::postgres::PostgresSequencer::from_config(m)?)))
        });
        r.register("sequencer.in-memory", |m| Ok(Component::Sequencer(Arc::new(InMemorySequencer::from_config(m)?))));
        #[cfg(feature = "redis")]
        r.register("sequencer.redis", |m| Ok(Component::Sequencer(Arc::new(crate::sequencer::redis::RedisSequencer::from_config(m)?))));
        r.register("secretstores.local.file", |m| {
            Ok(Component::SecretStore(Arc::new(LocalFileSecretStore::from_config(m)?)))
        });
        r.register("secretstores.local.env", |m| {
            Ok(Component::SecretStore(Arc::new(LocalEnvSecretStore::from_config(m)?)))
        });
        r.register("bindings.localstorage", |m| {
            Ok(Component::Binding { input: None, output: Some(Arc::new(LocalStorageBinding::from_config(m)?)) })
        });
        #[cfg(feature = "http-binding")]
        r.register("bindings.http", |m| {
            Ok(Component::Binding { input: None, output: Some(Arc::new(crate::bindings::http::HttpBinding::from_config(m)?)) })
        });
        #[cfg(feature = "redis")]
        r.register("bindings.redis", |m| {
            Ok(Component::Binding { input: None, output: Some(Arc::new(crate::bindings::redis::RedisBinding::from_config(m)?)) })
        });
        #[cfg(feature = "postgres")]
        r.register("bindings.postgresql", |m| {
            Ok(Component::Binding { input: None, output: Some(Arc::new(crate::bindings::postgres::PostgresBinding::from_config(m)?)) })
        });
        r.register("bindings.cron", |m| {
            Ok(Component::Binding { input: Some(Arc::new(CronBinding::from_config(m)?)), output: None })
        });
        r
    }

    /// Adds or replaces a constructor.
    pub fn register(&mut self, type_name: &'static str, ctor: Constructor) {
        self.constructors.insert(type_name, ctor);
    }

    /// The constructor for a type string.
    pub fn get(&self, type_name: &str) -> Option<Constructor> {
        self.constructors.get(type_name).copied()
    }

    /// Known type strings, for error messages.
    pub fn known_types(&self) -> Vec<&'static str> {
        self.constructors.keys().copied().collect()
    }
}
