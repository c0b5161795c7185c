//! In-process runtime + official Dapr Python SDK harness.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oxidecar_runtime_apis::{AppProtocol, LoopbackInvoker, Runtime, RuntimeConfig};
use tokio_util::sync::CancellationToken;

/// The Python with the Dapr SDK (`OXIDECAR_PYTHON`, default the shared venv).
pub fn python() -> String {
    std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| "/root/.cache/oxidecar-venv/bin/python".to_string())
}

/// `tests/python/` in the workspace.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python")
}

/// A fresh temp directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxidecar-rt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Component files for the full block set (tests/python/fixtures/components.yaml), with a local
/// secrets file and a local storage binding.
pub fn write_components(dir: &Path) -> PathBuf {
    let res = dir.join("components");
    std::fs::create_dir_all(&res).expect("create components dir");
    std::fs::write(dir.join("secrets.json"), r#"{"db": {"password": "s3cret"}}"#).expect("write secrets");
    let template = std::fs::read_to_string(scripts().join("fixtures/components.yaml")).expect("read components fixture");
    let yaml = template
        .replace("{SECRETS_FILE}", &dir.join("secrets.json").display().to_string())
        .replace("{FILES_DIR}", &dir.join("files").display().to_string());
    std::fs::write(res.join("components.yaml"), yaml).expect("write components");
    res
}

/// A runtime serving on free loopback ports.
pub struct TestRuntime {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    pub shutdown_called: Arc<AtomicBool>,
    pub registry: prometheus::Registry,
    runtime: Option<Runtime>,
}

impl TestRuntime {
    pub async fn start(app_id: &str, resources: Option<PathBuf>, app_port: Option<u16>, protocol: AppProtocol) -> anyhow::Result<Self> {
        Self::start_with(app_id, resources, app_port, protocol, None).await
    }

    pub async fn start_with(
        app_id: &str,
        resources: Option<PathBuf>,
        app_port: Option<u16>,
        protocol: AppProtocol,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut cfg = RuntimeConfig::new(app_id);
        cfg.api_token = token.map(str::to_string);
        cfg.grpc_addr = "127.0.0.1:0".parse()?;
        cfg.http_addr = "127.0.0.1:0".parse()?;
        cfg.resources_paths = resources.into_iter().collect();
        cfg.app_port = app_port;
        cfg.app_protocol = protocol;
        let registry = prometheus::Registry::new();
        let shutdown = CancellationToken::new();
        let called = Arc::new(AtomicBool::new(false));
        let c = called.clone();
        let invoker = Arc::new(LoopbackInvoker::new(app_id, app_port, protocol));
        let runtime = Runtime::start(cfg, invoker, &registry, shutdown.clone(), Arc::new(move || c.store(true, Ordering::SeqCst))).await?;
        Ok(Self { grpc: runtime.grpc_addr(), http: runtime.http_addr(), shutdown, shutdown_called: called, registry, runtime: Some(runtime) })
    }

    /// Runs a script from tests/python with the sidecar's ports in the environment.
    pub async fn run_script(&self, script: &str, extra_env: &[(&str, String)]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(python());
        cmd.arg(scripts().join(script))
            .current_dir(scripts())
            .env("DAPR_GRPC_PORT", self.grpc.port().to_string())
            .env("DAPR_HTTP_PORT", self.http.port().to_string())
            .env("DAPR_HEALTH_TIMEOUT", "20")
            .env("PYTHONWARNINGS", "ignore")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        Ok(out)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.runtime.take() {
            r.wait().await;
        }
    }
}

/// Fails with the script's output unless it exited 0 and printed "ALL OK".
pub fn assert_script_ok(name: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("ALL OK"), "{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
}

/// A free loopback port (bound then released; the app binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
