//! GetState / SaveState throughput and p99 over gRPC against an in-process runtime with the
//! in-memory store. `cargo run --release -p oxidecar-runtime-apis --example bench_state [seconds]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dapr::dapr::proto::common::v1::StateItem;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use dapr::dapr::proto::runtime::v1::{GetStateRequest, SaveStateRequest};
use oxidecar_runtime_apis::{AppProtocol, LoopbackInvoker, Runtime, RuntimeConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut cfg = RuntimeConfig::new("bench");
    cfg.grpc_addr = "127.0.0.1:0".parse()?;
    cfg.http_addr = "127.0.0.1:0".parse()?;
    let stop = CancellationToken::new();
    let invoker = Arc::new(LoopbackInvoker::new("bench", None, AppProtocol::Http));
    let rt = Runtime::start(cfg, invoker, &prometheus::Registry::new(), stop.clone(), Arc::new(|| {})).await?;
    let url = format!("http://{}", rt.grpc_addr());
    println!("| operation | concurrency | ops/s | p50 µs | p99 µs |\n|---|---|---|---|---|");
    for op in ["SaveState", "GetState"] {
        for conc in [16usize, 64] {
            // One HTTP/2 connection per 16 callers, as a few SDK clients would open.
            let mut clients = Vec::new();
            for _ in 0..conc.div_ceil(16) {
                clients.push(DaprClient::connect(url.clone()).await?);
            }
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for i in 0..conc {
                let mut c = clients[i % clients.len()].clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let key = format!("key-{}", i % 8);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let r = if op == "SaveState" {
                            let item = StateItem { key: key.clone(), value: b"value-0123456789".to_vec(), ..Default::default() };
                            c.save_state(SaveStateRequest { store_name: "statestore".into(), states: vec![item] }).await.map(|_| ())
                        } else {
                            c.get_state(GetStateRequest { store_name: "statestore".into(), key: key.clone(), ..Default::default() }).await.map(|_| ())
                        };
                        if r.is_ok() {
                            lat.push(t.elapsed());
                        }
                    }
                    lat
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await?);
            }
            all.sort();
            let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).map_or(0, |d| d.as_micros());
            println!("| {op} | {conc} | {:.0} | {} | {} |", all.len() as f64 / secs as f64, pct(0.50), pct(0.99));
        }
    }
    stop.cancel();
    rt.wait().await;
    Ok(())
}
