//! The runtime APIs of the real `oxidecar` binary, driven by the official Dapr Python SDK
//! (scripts in tests/python; the interpreter is `OXIDECAR_PYTHON`, default the shared venv).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use oxidecar_tests::{AdminPorts, Proxy, TempDir, free_port, http_get};

fn python() -> String {
    std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| "/root/.cache/oxidecar-venv/bin/python".to_string())
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The sidecar's runtime ports and where its components live.
struct Sidecar {
    proxy: Proxy,
    grpc: u16,
    http: u16,
    _dir: TempDir,
}

impl Sidecar {
    async fn start(app_id: &str, app: Option<(u16, &str)>, extra: &[&str]) -> Sidecar {
        Self::start_with_resources(app_id, app, extra, "").await
    }

    /// Like `start`, with `resources` (more YAML documents) in a second file of the resources path.
    async fn start_with_resources(app_id: &str, app: Option<(u16, &str)>, extra: &[&str], resources: &str) -> Sidecar {
        let dir = TempDir::new("runtime");
        let res = dir.0.join("components");
        std::fs::create_dir_all(&res).expect("components dir");
        std::fs::write(dir.0.join("secrets.json"), r#"{"db": {"password": "s3cret"}}"#).expect("secrets");
        let yaml = std::fs::read_to_string(scripts().join("fixtures/components.yaml"))
            .expect("components fixture")
            .replace("{SECRETS_FILE}", &dir.0.join("secrets.json").display().to_string())
            .replace("{FILES_DIR}", &dir.0.join("files").display().to_string());
        std::fs::write(res.join("components.yaml"), yaml).expect("components");
        if !resources.is_empty() {
            std::fs::write(res.join("more.yaml"), resources).expect("more resources");
        }
        let (grpc, http) = (free_port().to_string(), free_port().to_string());
        let res = res.display().to_string();
        let mut args = vec!["--app-id", app_id, "--dapr-grpc-port", &grpc, "--dapr-http-port", &http, "--resources-path", &res];
        let app_port;
        if let Some((port, protocol)) = app {
            app_port = port.to_string();
            args.extend(["--app-port", &app_port, "--app-protocol", protocol]);
        }
        args.extend(extra);
        let proxy = Proxy::start_with_args(AdminPorts::new(), "", &args).await;
        Sidecar { proxy, grpc: grpc.parse().expect("port"), http: http.parse().expect("port"), _dir: dir }
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new(python());
        cmd.arg(scripts().join(script))
            .current_dir(scripts())
            .env("DAPR_GRPC_PORT", self.grpc.to_string())
            .env("DAPR_HTTP_PORT", self.http.to_string())
            .env("DAPR_HEALTH_TIMEOUT", "20")
            .env("PYTHONWARNINGS", "ignore");
        cmd
    }

    async fn run(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(script);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run python")
    }

    fn spawn_app(&self, script: &str, port: u16) -> KillOnDrop {
        KillOnDrop(self.command(script).env("APP_PORT", port.to_string()).spawn().expect("spawn app"))
    }
}

/// The test's own app process, killed when the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_ok(name: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("ALL OK"), "{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
}

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
