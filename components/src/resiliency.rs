//! Dapr's `Resiliency` resources (`apiVersion: dapr.io/v1alpha1`, `kind: Resiliency`): named
//! timeout, retry and circuit-breaker policies, applied to target apps (service invocation), to
//! components' outbound operations (state, publish, output bindings, ...) and to their inbound
//! deliveries (pub/sub messages and input binding events handed to the app).
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
    /// Component `inbound` targets: deliveries from the component to the app.
    pub inbound: HashMap<String, Arc<TargetPolicy>>,
}

/// A kind of target: its section under `spec.targets` and, for components, the direction.
type Kind = (&'static str, &'static str);

/// Every Resiliency resource that applies to this app, merged.
#[derive(Debug, Default)]
pub struct Resiliency {
    apps: HashMap<String, Arc<TargetPolicy>>,
    components: HashMap<String, Arc<TargetPolicy>>,
    inbound: HashMap<String, Arc<TargetPolicy>>,
    /// Resource names, for logs and metadata.
    pub resources: Vec<String>,
}

impl Resiliency {
    /// Merges resources; a target defined by two resources is an error naming both.
    pub fn merge(resources: Vec<ResiliencyResource>) -> Result<Resiliency, ConfigError> {
        let mut out = Resiliency::default();
        // (section, direction, target) → the resource and file that gave it policies.
        let mut owner: HashMap<(Kind, String), (String, String)> = HashMap::new();
        for r in resources {
            let kinds = [(("apps", ""), r.apps, &mut out.apps), (("components", ".outbound"), r.components, &mut out.components), (("components", ".inbound"), r.inbound, &mut out.inbound)];
            for (kind, targets, into) in kinds {
                for (name, policy) in targets {
                    if let Some((other, other_file)) = owner.insert((kind, name.clone()), (r.name.clone(), r.file.clone())) {
                        let (section, direction) = kind;
                        return Err(ConfigError {
                            file: r.file.clone(),
                            resource: format!("resiliency {:?}", r.name),
                            message: format!("spec.targets.{section}.{name}{direction}: already has policies from resiliency {other:?} in {other_file}"),
                        });
                    }
                    into.insert(name, policy);
                }
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

    /// Policies for deliveries from component `name` (pub/sub messages, input binding events) to
    /// the app.
    pub fn component_inbound(&self, name: &str) -> Option<&Arc<TargetPolicy>> {
        self.inbound.get(name)
    }

    /// Component names that have outbound policies (to warn about ones no component matches).
    pub fn component_targets(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }

    /// Component names that have inbound policies.
    pub fn inbound_targets(&self) -> impl Iterator<Item = &str> {
        self.inbound.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.components.is_empty() && self.inbound.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, components: &[&str], inbound: &[&str]) -> ResiliencyResource {
        let targets = |names: &[&str]| names.iter().map(|n| (n.to_string(), Arc::new(TargetPolicy::default()))).collect();
        ResiliencyResource { name: name.into(), file: format!("{name}.yaml"), apps: HashMap::new(), components: targets(components), inbound: targets(inbound) }
    }

    #[test]
    fn inbound_and_outbound_are_separate_targets() {
        let r = Resiliency::merge(vec![resource("a", &["pubsub"], &[]), resource("b", &[], &["pubsub"])]).expect("one direction each");
        assert!(r.component("pubsub").is_some() && r.component_inbound("pubsub").is_some());
        assert!(r.component_inbound("statestore").is_none());
        let err = Resiliency::merge(vec![resource("a", &[], &["pubsub"]), resource("b", &[], &["pubsub"])]).expect_err("twice inbound");
        assert_eq!(err.file, "b.yaml");
        assert!(err.message.contains("spec.targets.components.pubsub.inbound: already has policies from resiliency \"a\" in a.yaml"), "{}", err.message);
    }
}
