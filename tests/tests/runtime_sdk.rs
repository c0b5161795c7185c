//! The runtime APIs of the real `oxidecar` binary, driven by the official Dapr Python SDK
//! (scripts in tests/python; the interpreter is `OXIDECAR_PYTHON`, default the shared venv).

use std::process::Command;
use std::time::Duration;

use oxidecar_tests::{free_port, http_get};
use oxidecar_tests::sdk::{Sidecar, assert_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_block_through_the_python_sdk() {
    let s = Sidecar::start("blocks-app", None, &[]).await;
    assert_ok("client_blocks.py", &s.run("client_blocks.py", &[]).await);
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{}/stats/prometheus", s.proxy.ports.metrics)).await.expect("metrics");
    assert!(
        metrics.contains(r#"oxidecar_runtime_api_requests_total{block="state",code="ABORTED",component="statestore",method="SaveState",protocol="grpc"}"#),
        "runtime API metrics missing from /stats/prometheus:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_gets_cloudevents_retries_and_dead_letters() {
    let port = free_port();
    let s = Sidecar::start("pubsub-app", Some((port, "grpc")), &[]).await;
    let _app = s.spawn_app("subscriber_app.py", port);
    assert_ok("pubsub_check.py", &s.run("pubsub_check.py", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_with_an_http_app() {
    let port = free_port();
    let s = Sidecar::start("http-app", Some((port, "http")), &[]).await;
    let _app = s.spawn_app("http_app.py", port);
    assert_ok("http_blocks.py", &s.run("http_blocks.py", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_and_shutdown_rpc_drains_the_sidecar() {
    let mut s = Sidecar::start("token-app", None, &["--dapr-api-token", "t0ken"]).await;
    assert_ok("token_check.py", &s.run("token_check.py", &[("DAPR_API_TOKEN", "t0ken")]).await);
    let code = s.proxy.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "the Shutdown RPC should drain the sidecar and exit 0");
}

const CRON_TICK: &str = "
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cron-tick}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {name: schedule, value: '@every 1s'}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_input_binding_reaches_a_grpc_app() {
    let port = free_port();
    let s = Sidecar::start_with_resources("binding-app", Some((port, "grpc")), &[], CRON_TICK).await;
    let _app = s.spawn_app("subscriber_app.py", port);
    assert_ok("binding_check.py", &s.run("binding_check.py", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarative_subscriptions_and_cron_route_reach_an_http_app() {
    let resources = r#"
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: decl}
spec:
  pubsubname: pubsub
  topic: decl
  routes:
    rules:
    - {match: 'event.type == "widget"', path: /widgets}
    - {match: 'event.data.kind == "poison"', path: /nowhere}
    default: /orders
  deadLetterTopic: decl-dead
scopes: [decl-app]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: decl-dead}
spec:
  pubsubname: pubsub
  topic: decl-dead
  routes: {default: /orders}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: decl-other}
spec:
  pubsubname: pubsub
  topic: decl-other
  routes: {default: /orders}
scopes: [some-other-app]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cron-http}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {name: schedule, value: '@every 1s'}
  - {name: route, value: /cron-route}
"#;
    let port = free_port();
    let s = Sidecar::start_with_resources("decl-app", Some((port, "http")), &[], resources).await;
    let _app = s.spawn_app("http_app.py", port);
    assert_ok("declarative_check.py", &s.run("declarative_check.py", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_state_on_in_memory_and_postgresql_stores() {
    // A table of this test's own, so other suites sharing the database do not interfere.
    let table = format!("oxidecar_query_{}", std::process::id());
    let resources = format!(
        "apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pgstore}}
spec:
  type: state.postgresql
  version: v1
  metadata:
  - {{name: connectionString, value: \"host=127.0.0.1 port=5432 user=postgres dbname=test\"}}
  - {{name: tableName, value: {table}}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: redisstore}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: \"127.0.0.1:6379\"}}
"
    );
    let s = Sidecar::start_with_resources("query-app", None, &[], &resources).await;
    let out = s.run("query_check.py", &[("QUERY_STORES", "statestore pgstore"), ("QUERY_UNSUPPORTED", "redisstore")]).await;
    let _ = Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", &format!("DROP TABLE IF EXISTS {table}")]).output();
    assert_ok("query_check.py", &out);
}
