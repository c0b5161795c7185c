//! Serves an Envoy config dump over ADS (delta and state of the world) until killed, for
//! benchmarks that need a real control plane: `ads_serve DUMP_FILE PORT`.
//! Prints `serving N clusters, M listeners on 127.0.0.1:PORT` once listening.

use oxidecar_tests::xds::AdsServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ads_serve DUMP_FILE PORT";
    let file = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?;
    let port: u16 = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let dump = oxidecar_xds::envoy::dump::read_config_dump(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let (clusters, listeners) = (dump.resources.clusters.len(), dump.resources.listeners.len());
    let server = AdsServer::start(dump.resources, port).await;
    println!("serving {clusters} clusters, {listeners} listeners on {}", server.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
