//! Building blocks for the oxidecar application runtime: one trait per block, in-memory reference
//! backends, a registry from Dapr type strings to constructors, and the Dapr Component YAML loader.
#![forbid(unsafe_code)]

pub mod bindings;
pub mod catalog;
pub mod configuration;
pub mod conformance;
pub mod defaults;
pub mod error;
pub mod loader;
pub mod lock;
pub mod metadata;
#[cfg(feature = "postgres")]
pub mod pg_conn;
pub mod pubsub;
#[cfg(feature = "redis")]
pub mod redis_conn;
pub mod registry;
pub mod resiliency;
pub mod secretstores;
pub mod sequencer;
pub mod state;
pub mod subscription;

pub use error::ComponentError;
pub use loader::{ConfigError, LoadedComponent, Resources, load_resources, load_resources_in_lane};
pub use registry::{Component, Registry};

/// A boxed, sendable future, used by handler callbacks handed to components.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
