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
    assert!(metrics.contains(r#"oxidecar_runtime_api_requests_total{block="state",code="ABORTED",method="SaveState",protocol="grpc"}"#), "{metrics}");
    rt.stop().await;
    Ok(())
}
