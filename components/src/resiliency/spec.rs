//! The Resiliency YAML as Dapr defines it, and its resolution: durations parsed, trip expressions
//! compiled, and every policy name a target references looked up. Errors name the field.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_norway::Value;

use super::breaker::{self, BreakerPolicy, CircuitBreaker, Trip};
use super::retry::{self, Backoff, CodeSet, RetryPolicy};
use super::{ResiliencyResource, TargetPolicy, duration};

#[derive(Debug, Deserialize)]
struct Meta {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResiliencyDoc {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Meta,
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    spec: SpecDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecDoc {
    policies: PoliciesDoc,
    #[serde(default)]
    targets: TargetsDoc,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PoliciesDoc {
    #[serde(default)]
    timeouts: BTreeMap<String, Value>,
    #[serde(default)]
    retries: BTreeMap<String, RetryDoc>,
    #[serde(default)]
    circuit_breakers: BTreeMap<String, BreakerDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetryDoc {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    duration: Option<Value>,
    #[serde(default)]
    max_interval: Option<Value>,
    #[serde(default)]
    max_retries: Option<i64>,
    #[serde(default)]
    matching: Option<MatchingDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchingDoc {
    #[serde(default, rename = "httpStatusCodes")]
    http_status_codes: Option<String>,
    #[serde(default, rename = "gRPCStatusCodes")]
    grpc_status_codes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BreakerDoc {
    #[serde(default)]
    max_requests: Option<u32>,
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    trip: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TargetsDoc {
    #[serde(default)]
    apps: BTreeMap<String, RefsDoc>,
    #[serde(default)]
    components: BTreeMap<String, ComponentTargetDoc>,
    /// There is no actor runtime here; actor targets are checked, then ignored with a warning.
    #[serde(default)]
    actors: BTreeMap<String, RefsDoc>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RefsDoc {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retry: Option<String>,
    #[serde(default)]
    circuit_breaker: Option<String>,
    /// Actor targets only.
    #[serde(default)]
    circuit_breaker_scope: Option<String>,
    /// Actor targets only.
    #[serde(default)]
    circuit_breaker_cache_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentTargetDoc {
    #[serde(default)]
    outbound: Option<RefsDoc>,
    #[serde(default)]
    inbound: Option<RefsDoc>,
}

/// A duration field: a Go duration string (a bare 0 is accepted too).
fn duration_field(path: &str, v: &Value) -> Result<std::time::Duration, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.as_u64() == Some(0) => "0".to_string(),
        Value::Number(n) => return Err(format!("{path}: {n} is not a duration (write it with a unit, like \"5s\")")),
        other => return Err(format!("{path}: {other:?} is not a duration (write it as a string like \"5s\")")),
    };
    duration::parse(&text).map_err(|m| format!("{path}: {m}"))
}

struct Named {
    timeouts: HashMap<String, std::time::Duration>,
    retries: HashMap<String, RetryPolicy>,
    breakers: HashMap<String, BreakerPolicy>,
}

fn policies(p: PoliciesDoc) -> Result<Named, String> {
    let mut timeouts = HashMap::new();
    for (name, v) in &p.timeouts {
        timeouts.insert(name.clone(), duration_field(&format!("spec.policies.timeouts.{name}"), v)?);
    }
    let mut retries = HashMap::new();
    for (name, r) in p.retries {
        let path = format!("spec.policies.retries.{name}");
        let field = |f: &str, v: &Option<Value>, default| v.as_ref().map_or(Ok(default), |v| duration_field(&format!("{path}.{f}"), v));
        let backoff = match r.policy.as_deref().unwrap_or("constant") {
            "constant" => Backoff::Constant(field("duration", &r.duration, retry::DEFAULT_DURATION)?),
            "exponential" => Backoff::Exponential { max_interval: field("maxInterval", &r.max_interval, retry::DEFAULT_MAX_INTERVAL)? },
            other => return Err(format!("{path}.policy: {other:?} is not a retry policy (constant or exponential)")),
        };
        let max_retries = match r.max_retries.unwrap_or(-1) {
            -1 => None,
            n if (0..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
            n => return Err(format!("{path}.maxRetries: {n} is not a retry count (-1 for unlimited, or 0 and up)")),
        };
        let matching = r.matching.unwrap_or(MatchingDoc { http_status_codes: None, grpc_status_codes: None });
        let codes = |f: &str, v: Option<String>, valid| {
            v.filter(|s| !s.trim().is_empty()).map(|s| CodeSet::parse(&s, valid).map_err(|m| format!("{path}.matching.{f}: {m}"))).transpose()
        };
        retries.insert(
            name.clone(),
            RetryPolicy {
                http_status_codes: codes("httpStatusCodes", matching.http_status_codes, 100..=599)?,
                grpc_status_codes: codes("gRPCStatusCodes", matching.grpc_status_codes, 0..=16)?,
                name,
                backoff,
                max_retries,
            },
        );
    }
    let mut breakers = HashMap::new();
    for (name, b) in p.circuit_breakers {
        let path = format!("spec.policies.circuitBreakers.{name}");
        let field = |f: &str, v: &Option<Value>, default| v.as_ref().map_or(Ok(default), |v| duration_field(&format!("{path}.{f}"), v));
        let trip_text = b.trip.as_deref().unwrap_or(breaker::DEFAULT_TRIP);
        let trip = Trip::parse(trip_text).map_err(|m| format!("{path}.trip: {m}"))?;
        let max_requests = b.max_requests.unwrap_or(breaker::DEFAULT_MAX_REQUESTS);
        if max_requests == 0 {
            return Err(format!("{path}.maxRequests: 0 would never let a trial call through (use 1 or more)"));
        }
        breakers.insert(
            name.clone(),
            BreakerPolicy {
                interval: field("interval", &b.interval, std::time::Duration::ZERO)?,
                timeout: field("timeout", &b.timeout, breaker::DEFAULT_TIMEOUT)?,
                name,
                max_requests,
                trip,
            },
        );
    }
    Ok(Named { timeouts, retries, breakers })
}

fn known<T>(m: &HashMap<String, T>) -> String {
    let mut names: Vec<&str> = m.keys().map(String::as_str).collect();
    names.sort_unstable();
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

fn target(named: &Named, path: &str, refs: &RefsDoc, now: Instant) -> Result<TargetPolicy, String> {
    if !path.starts_with("spec.targets.actors.") {
        let actor_only = [("circuitBreakerScope", refs.circuit_breaker_scope.is_some()), ("circuitBreakerCacheSize", refs.circuit_breaker_cache_size.is_some())];
        if let Some((field, _)) = actor_only.iter().find(|(_, set)| *set) {
            return Err(format!("{path}.{field}: only actor targets have this field"));
        }
    }
    let unknown = |field: &str, kind: &str, name: &str, defined: String| format!("{path}.{field}: unknown {kind} policy {name:?} (defined: {defined})");
    let timeout = match &refs.timeout {
        Some(n) => Some((n.clone(), *named.timeouts.get(n).ok_or_else(|| unknown("timeout", "timeout", n, known(&named.timeouts)))?)),
        None => None,
    };
    let retry = match &refs.retry {
        Some(n) => Some(named.retries.get(n).cloned().ok_or_else(|| unknown("retry", "retry", n, known(&named.retries)))?),
        None => None,
    };
    let breaker = match &refs.circuit_breaker {
        Some(n) => {
            let policy = named.breakers.get(n).cloned().ok_or_else(|| unknown("circuitBreaker", "circuit breaker", n, known(&named.breakers)))?;
            Some(Arc::new(CircuitBreaker::new(policy, now)))
        }
        None => None,
    };
    Ok(TargetPolicy { timeout, retry, breaker })
}

/// Resolves one `kind: Resiliency` document; `Ok(None)` when its `scopes` leave this app out.
/// The error is the message for [`crate::ConfigError`] (the caller names file and resource).
pub(crate) fn parse_resource(value: Value, file: &str, app_id: &str) -> Result<Option<ResiliencyResource>, String> {
    let doc: ResiliencyDoc = serde_norway::from_value(value).map_err(|e| e.to_string())?;
    if !doc.scopes.is_empty() && !doc.scopes.iter().any(|s| s == app_id) {
        return Ok(None);
    }
    let named = policies(doc.spec.policies)?;
    let now = Instant::now();
    let mut apps = HashMap::new();
    for (id, refs) in &doc.spec.targets.apps {
        apps.insert(id.clone(), Arc::new(target(&named, &format!("spec.targets.apps.{id}"), refs, now)?));
    }
    let mut components = HashMap::new();
    let mut inbound = HashMap::new();
    for (name, t) in &doc.spec.targets.components {
        if let Some(refs) = &t.outbound {
            components.insert(name.clone(), Arc::new(target(&named, &format!("spec.targets.components.{name}.outbound"), refs, now)?));
        }
        if let Some(refs) = &t.inbound {
            inbound.insert(name.clone(), Arc::new(target(&named, &format!("spec.targets.components.{name}.inbound"), refs, now)?));
        }
    }
    for (actor, refs) in &doc.spec.targets.actors {
        let path = format!("spec.targets.actors.{actor}");
        target(&named, &path, refs, now)?;
        if let Some(scope) = refs.circuit_breaker_scope.as_deref().filter(|s| !matches!(*s, "type" | "id" | "both")) {
            return Err(format!("{path}.circuitBreakerScope: {scope:?} is not a scope (type, id or both)"));
        }
        tracing::warn!(resiliency = %doc.metadata.name, actor, "actor target ignored: oxidecar serves no actors, so these policies never apply");
    }
    Ok(Some(ResiliencyResource { name: doc.metadata.name, file: file.to_string(), apps, components, inbound }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, app: &str) -> Result<Option<ResiliencyResource>, String> {
        parse_resource(serde_norway::from_str(yaml).expect("yaml"), "r.yaml", app)
    }

    const GOOD: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: myresiliency}
scopes: [checkout]
spec:
  policies:
    timeouts: {general: 5s, quick: 300ms}
    retries:
      fixed: {policy: constant, duration: 50ms, maxRetries: 3, matching: {httpStatusCodes: "429,500-599", gRPCStatusCodes: "14"}}
      forever: {policy: exponential, maxInterval: 2s}
    circuitBreakers:
      cb: {maxRequests: 1, interval: 0s, timeout: 2s, trip: consecutiveFailures >= 3}
  targets:
    apps:
      orders: {timeout: quick, retry: fixed, circuitBreaker: cb}
    components:
      statestore: {outbound: {retry: forever, timeout: general}}
      pubsub: {outbound: {retry: fixed}, inbound: {timeout: quick, retry: fixed, circuitBreaker: cb}}
    actors:
      cart: {timeout: general, circuitBreaker: cb, circuitBreakerScope: both, circuitBreakerCacheSize: 100}
"#;

    #[test]
    fn a_full_resource_resolves() {
        let r = parse(GOOD, "checkout").expect("valid").expect("in scope");
        let orders = &r.apps["orders"];
        assert_eq!(orders.timeout, Some(("quick".to_string(), std::time::Duration::from_millis(300))));
        let retry = orders.retry.as_ref().expect("retry");
        assert_eq!(retry.max_retries, Some(3));
        assert!(retry.retries_http(429) && !retry.retries_http(404));
        assert_eq!(orders.breaker.as_ref().expect("cb").policy().timeout, std::time::Duration::from_secs(2));
        let store = &r.components["statestore"];
        assert_eq!(store.retry.as_ref().expect("retry").max_retries, None, "maxRetries defaults to -1: unlimited");
        let inbound = &r.inbound["pubsub"];
        assert_eq!(inbound.timeout, Some(("quick".to_string(), std::time::Duration::from_millis(300))));
        assert!(!r.inbound.contains_key("statestore"), "outbound only");
        let outbound = &r.components["pubsub"];
        assert!(outbound.breaker.is_none() && outbound.retry.is_some(), "the two directions are separate targets");
        assert!(!Arc::ptr_eq(inbound.breaker.as_ref().expect("cb"), orders.breaker.as_ref().expect("cb")), "each target trips on its own");
    }

    #[test]
    fn scopes_leave_other_apps_out() {
        assert!(parse(GOOD, "payments").expect("valid").is_none());
    }

    #[test]
    fn bad_resources_name_the_field() {
        let cases = [
            (GOOD.replace("retry: fixed,", "retry: fast,"), "spec.targets.apps.orders.retry: unknown retry policy \"fast\" (defined: fixed, forever)"),
            (GOOD.replace("quick: 300ms", "quick: 300"), "spec.policies.timeouts.quick: 300 is not a duration"),
            (GOOD.replace("quick: 300ms", "quick: 3 secs"), "spec.policies.timeouts.quick: \"3 secs\" has an unknown unit"),
            (GOOD.replace("consecutiveFailures >= 3", "consecutiveFailure >= 3"), "spec.policies.circuitBreakers.cb.trip: \"consecutiveFailure >= 3\": unknown count"),
            (GOOD.replace("policy: constant", "policy: linear"), "spec.policies.retries.fixed.policy: \"linear\" is not a retry policy"),
            (GOOD.replace("maxRetries: 3", "maxRetries: -2"), "spec.policies.retries.fixed.maxRetries: -2"),
            (GOOD.replace("\"429,500-599\"", "\"700\""), "spec.policies.retries.fixed.matching.httpStatusCodes: \"700\""),
            (GOOD.replace("statestore: {outbound: {retry: forever, timeout: general}}", "statestore: {outbound: {timeout: slow}}"), "spec.targets.components.statestore.outbound.timeout: unknown timeout policy \"slow\""),
            (GOOD.replace("maxRequests: 1,", "maxRequest: 1,"), "unknown field `maxRequest`"),
            (GOOD.replace("inbound: {timeout: quick,", "inbound: {timeout: quik,"), "spec.targets.components.pubsub.inbound.timeout: unknown timeout policy \"quik\" (defined: general, quick)"),
            (GOOD.replace("circuitBreaker: cb}}", "circuitBreaker: cbb}}"), "spec.targets.components.pubsub.inbound.circuitBreaker: unknown circuit breaker policy \"cbb\""),
            (GOOD.replace("inbound: {", "inbond: {"), "unknown field `inbond`"),
            (GOOD.replace("cart: {timeout: general", "cart: {timeout: slow"), "spec.targets.actors.cart.timeout: unknown timeout policy \"slow\""),
            (GOOD.replace("circuitBreakerScope: both", "circuitBreakerScope: all"), "spec.targets.actors.cart.circuitBreakerScope: \"all\" is not a scope"),
            (GOOD.replace("orders: {timeout: quick,", "orders: {circuitBreakerScope: id, timeout: quick,"), "spec.targets.apps.orders.circuitBreakerScope: only actor targets have this field"),
        ];
        for (yaml, want) in cases {
            let err = parse(&yaml, "checkout").expect_err(want);
            assert!(err.contains(want), "{err}\nwanted: {want}");
        }
    }
}
