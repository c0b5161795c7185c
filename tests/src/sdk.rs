//! Driving the real `oxidecar` binary's runtime APIs with the official Dapr Python SDK: a sidecar
//! with the test components (tests/python/fixtures), the scripts in tests/python run against it,
//! and app processes it delivers to. The interpreter is `OXIDECAR_PYTHON` (default the shared venv).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::{AdminPorts, Proxy, TempDir, free_port};

/// The Python interpreter that has the Dapr SDK.
pub fn python() -> String {
    std::env::var("OXIDECAR_PYTHON").unwrap_or_else(|_| "/root/.cache/oxidecar-venv/bin/python".to_string())
}

/// tests/python: the SDK scripts and their fixtures.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The sidecar's runtime ports and where its components live.
pub struct Sidecar {
    pub proxy: Proxy,
    pub grpc: u16,
    pub http: u16,
    _dir: TempDir,
}

impl Sidecar {
    /// Starts a sidecar with the fixture components; `app` is its app port and protocol.
    pub async fn start(app_id: &str, app: Option<(u16, &str)>, extra: &[&str]) -> Sidecar {
        Self::start_with_resources(app_id, app, extra, "").await
    }

    /// Like `start`, with `resources` (more YAML documents) in a second file of the resources path.
    pub async fn start_with_resources(app_id: &str, app: Option<(u16, &str)>, extra: &[&str], resources: &str) -> Sidecar {
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

    /// A Python command for `script` with the sidecar's ports in the environment.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new(python());
        cmd.arg(scripts().join(script))
            .current_dir(scripts())
            .env("DAPR_GRPC_PORT", self.grpc.to_string())
            .env("DAPR_HTTP_PORT", self.http.to_string())
            .env("DAPR_HEALTH_TIMEOUT", "20")
            .env("PYTHONWARNINGS", "ignore");
        cmd
    }

    /// Runs `script` to the end with `env` added; its output.
    pub async fn run(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(script);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run python")
    }

    /// Starts `script` as the app listening on `port`.
    pub fn spawn_app(&self, script: &str, port: u16) -> KillOnDrop {
        KillOnDrop(self.command(script).env("APP_PORT", port.to_string()).spawn().expect("spawn app"))
    }
}

/// The test's own app process, killed when the test ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts a script exited 0 and printed `ALL OK`, showing its output otherwise.
pub fn assert_ok(name: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("ALL OK"), "{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
}
