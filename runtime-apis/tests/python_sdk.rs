//! The official Dapr Python SDK against an in-process runtime.

mod support;

use oxidecar_runtime_apis::AppProtocol;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_block_with_the_python_sdk() -> anyhow::Result<()> {
    let dir = temp_dir("blocks");
    let res = write_components(&dir);
    let rt = TestRuntime::start("blocks-app", Some(res), None, AppProtocol::Http).await?;
    let out = rt.run_script("client_blocks.py", &[]).await?;
    assert_script_ok("client_blocks.py", &out);
    let metrics = prometheus::TextEncoder::new().encode_to_string(&rt.registry.gather())?;
    assert!(metrics.contains(r#"oxidecar_runtime_api_requests_total{block="state",code="ABORTED",component="statestore",method="SaveState",protocol="grpc"}"#), "{metrics}");
    rt.stop().await;
    Ok(())
}

/// Kills the child process it holds when dropped (the test's own app process).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_receives_cloudevents_retries_and_dead_letters() -> anyhow::Result<()> {
    let dir = temp_dir("pubsub");
    let res = write_components(&dir);
    let app_port = free_port();
    let rt = TestRuntime::start("pubsub-app", Some(res), Some(app_port), AppProtocol::Grpc).await?;
    let app = std::process::Command::new(python())
        .arg(scripts().join("subscriber_app.py"))
        .current_dir(scripts())
        .env("APP_PORT", app_port.to_string())
        .env("DAPR_GRPC_PORT", rt.grpc.port().to_string())
        .env("DAPR_HTTP_PORT", rt.http.port().to_string())
        .env("PYTHONWARNINGS", "ignore")
        .spawn()?;
    let _app = KillOnDrop(app);
    let out = rt.run_script("pubsub_check.py", &[]).await?;
    assert_script_ok("pubsub_check.py", &out);
    rt.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_and_http_app() -> anyhow::Result<()> {
    let dir = temp_dir("http");
    let res = write_components(&dir);
    let app_port = free_port();
    let rt = TestRuntime::start("http-app", Some(res), Some(app_port), AppProtocol::Http).await?;
    let app = std::process::Command::new(python())
        .arg(scripts().join("http_app.py"))
        .current_dir(scripts())
        .env("APP_PORT", app_port.to_string())
        .env("DAPR_HTTP_PORT", rt.http.port().to_string())
        .spawn()?;
    let _app = KillOnDrop(app);
    let out = rt.run_script("http_blocks.py", &[]).await?;
    assert_script_ok("http_blocks.py", &out);
    let metrics = prometheus::TextEncoder::new().encode_to_string(&rt.registry.gather())?;
    assert!(metrics.contains(r#"block="state",code="409",component="statestore",method="SaveState",protocol="http""#), "{metrics}");
    rt.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_and_shutdown_with_embedded_components() -> anyhow::Result<()> {
    // No resources path: the embedded in-memory `statestore` serves.
    let rt = TestRuntime::start_with("token-app", None, None, AppProtocol::Http, Some("t0ken")).await?;
    let out = rt.run_script("token_check.py", &[("DAPR_API_TOKEN", "t0ken".to_string())]).await?;
    assert_script_ok("token_check.py", &out);
    assert!(rt.shutdown_called.load(std::sync::atomic::Ordering::SeqCst), "Shutdown RPC did not reach the proxy callback");
    rt.stop().await;
    Ok(())
}
