//! GetState / SaveState load client for `tests/bench/runtime.sh`: runs in its own process against a
//! running sidecar's gRPC API, or against Redis directly (the same operations on Dapr's hash layout),
//! and prints one Markdown row per run.
//!
//! `bench_state grpc://127.0.0.1:50001/<store> <GetState|SaveState> <concurrency> <seconds>`
//! `bench_state redis://127.0.0.1:6379 <GetState|SaveState> <concurrency> <seconds>`

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dapr::dapr::proto::common::v1::StateItem;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use dapr::dapr::proto::runtime::v1::{GetStateRequest, SaveStateRequest};
use tonic::transport::Channel;

/// Keys the callers spread over (all exist after a SaveState run).
const KEYS: usize = 8;
const VALUE: &[u8] = b"value-0123456789";
/// Callers per HTTP/2 connection to the sidecar, as a few SDK clients would open.
const CALLERS_PER_CONNECTION: usize = 16;

#[derive(Clone)]
enum Target {
    Sidecar { clients: Vec<DaprClient<Channel>>, store: String },
    Redis(redis::aio::MultiplexedConnection),
}

impl Target {
    async fn connect(url: &str, conc: usize) -> anyhow::Result<Self> {
        if let Some(rest) = url.strip_prefix("grpc://") {
            let (addr, store) = rest.split_once('/').context("grpc:// target needs /<store>")?;
            let mut clients = Vec::new();
            for _ in 0..conc.div_ceil(CALLERS_PER_CONNECTION) {
                let ch = Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
                clients.push(DaprClient::new(ch));
            }
            return Ok(Self::Sidecar { clients, store: store.to_string() });
        }
        if url.starts_with("redis://") {
            let client = redis::Client::open(url)?;
            return Ok(Self::Redis(client.get_multiplexed_async_connection().await?));
        }
        bail!("target {url:?}: use grpc://host:port/<store> or redis://host:port")
    }

    async fn call(&self, caller: usize, op: &str, key: &str) -> anyhow::Result<()> {
        match self {
            Self::Sidecar { clients, store } => {
                let mut c = clients[caller % clients.len()].clone();
                if op == "SaveState" {
                    let item = StateItem { key: key.to_string(), value: VALUE.to_vec(), ..Default::default() };
                    c.save_state(SaveStateRequest { store_name: store.clone(), states: vec![item] }).await?;
                } else {
                    c.get_state(GetStateRequest { store_name: store.clone(), key: key.to_string(), ..Default::default() }).await?;
                }
            }
            Self::Redis(conn) => {
                let mut conn = conn.clone();
                // Dapr's layout under the app's prefix: a hash with data and version.
                let key = format!("bench-direct||{key}");
                if op == "SaveState" {
                    let mut p = redis::pipe();
                    p.cmd("HSET").arg(&key).arg("data").arg(VALUE).ignore().cmd("HINCRBY").arg(&key).arg("version").arg(1).ignore();
                    p.query_async::<()>(&mut conn).await?;
                } else {
                    let _: (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET").arg(&key).arg("data").arg("version").query_async(&mut conn).await?;
                }
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, op, conc, secs] = args.as_slice() else {
        bail!("usage: bench_state <grpc://host:port/store | redis://host:port> <GetState|SaveState> <concurrency> <seconds>");
    };
    if op != "GetState" && op != "SaveState" {
        bail!("operation {op:?}: use GetState or SaveState");
    }
    let conc: usize = conc.parse().context("concurrency")?;
    let secs: f64 = secs.parse().context("seconds")?;
    let target = Target::connect(url, conc).await?;
    // Warm up (and make sure every key exists for GetState).
    for k in 0..KEYS {
        target.call(0, "SaveState", &format!("key-{k}")).await.with_context(|| format!("warm-up against {url}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for caller in 0..conc {
        let (target, op) = (target.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("key-{}", caller % KEYS);
            let (mut lat, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match target.call(caller, &op, &key).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).map_or(0, |d| d.as_micros());
    let kind = if url.starts_with("redis://") { "direct Redis client" } else { "oxidecar gRPC" };
    println!("| {kind} | {url} | {op} | {conc} | {:.0} | {} | {} | {errors} |", all.len() as f64 / secs, pct(0.50), pct(0.99));
    Ok(())
}
