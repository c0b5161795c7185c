//! Dapr's `Resiliency` resources (`apiVersion: dapr.io/v1alpha1`, `kind: Resiliency`): named
//! timeout, retry and circuit-breaker policies, applied to target apps (service invocation) and to
//! components' outbound operations (state, publish, output bindings, ...).
//!
//! The policy logic lives here, beside the loader that reads the resources path, so the runtime
//! APIs apply it without a new crate edge (runtime-apis → components is the existing one); it is
//! sockets-free and generic over the operation, so anything that depends on components can reuse it.

pub mod breaker;
pub mod duration;
pub mod retry;
pub mod run;
mod spec;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use run::{Stop, Verdict, run};
pub(crate) use spec::parse_resource;

use crate::loader::ConfigError;
use breaker::CircuitBreaker;
use retry::RetryPolicy;

/// The policies of one target. The breaker is this target's own instance: two targets naming the
/// same breaker policy trip independently, as in Dapr.
#[derive(Debug, Default)]
pub struct TargetPolicy {
    /// Timeout policy name and duration, applied to each attempt.
    pub timeout: Option<(String, Duration)>,
    pub retry: Option<RetryPolicy>,
    pub breaker: Option<Arc<CircuitBreaker>>,
}

/// One Resiliency resource, resolved (policy names replaced by the policies).
#[derive(Debug)]
pub struct ResiliencyResource {
    pub name: String,
    pub file: String,
    pub apps: HashMap<String, Arc<TargetPolicy>>,
    pub components: HashMap<String, Arc<TargetPolicy>>,
    /// Component `inbound` targets: validated, not applied (see docs/RUNTIME.md).
    pub inbound: Vec<String>,
}

/// Every Resiliency resource that applies to this app, merged.
#[derive(Debug, Default)]
pub struct Resiliency {
    apps: HashMap<String, Arc<TargetPolicy>>,
    components: HashMap<String, Arc<TargetPolicy>>,
    /// Resource names, for logs and metadata.
    pub resources: Vec<String>,
}

impl Resiliency {
    /// Merges resources; a target defined by two resources is an error naming both.
    pub fn merge(resources: Vec<ResiliencyResource>) -> Result<Resiliency, ConfigError> {
        let mut out = Resiliency::default();
        let mut owner: HashMap<(&'static str, String), (String, String)> = HashMap::new();
        for r in resources {
            for (kind, targets, into) in [("apps", r.apps, &mut out.apps), ("components", r.components, &mut out.components)] {
                for (name, policy) in targets {
                    if let Some((other, other_file)) = owner.insert((kind, name.clone()), (r.name.clone(), r.file.clone())) {
                        return Err(ConfigError {
                            file: r.file.clone(),
                            resource: format!("resiliency {:?}", r.name),
                            message: format!("spec.targets.{kind}.{name}: already has policies from resiliency {other:?} in {other_file}"),
                        });
                    }
                    into.insert(name, policy);
                }
            }
            for name in &r.inbound {
                tracing::warn!(resiliency = %r.name, component = %name, "inbound component policies are not applied yet (outbound are)");
            }
            out.resources.push(r.name);
        }
        Ok(out)
    }

    /// Policies for service invocation of `app_id`.
    pub fn app(&self, app_id: &str) -> Option<&Arc<TargetPolicy>> {
        self.apps.get(app_id)
    }

    /// Policies for calls from the sidecar to component `name`.
    pub fn component(&self, name: &str) -> Option<&Arc<TargetPolicy>> {
        self.components.get(name)
    }

    /// Component names that have policies (to warn about ones no component matches).
    pub fn component_targets(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.components.is_empty()
    }
}
