//! Active health checking: for clusters with `health_check`, probe every endpoint on an interval
//! (HTTP GET expecting 2xx, or a TCP connect) and take endpoints out of load balancing after
//! `unhealthy_threshold` failures in a row, back in after `healthy_threshold` successes. Checkers
//! follow config reloads; health state lives in the endpoint counters, which survive reloads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use oxidecar_xds::model::HealthCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use crate::tables::EndpointStats;

/// How often the running tables are compared to spot a reload.
const RELOAD_POLL: Duration = Duration::from_millis(200);

/// Runs checkers for the current config until `stop`, restarting them when the config changes.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let tables = shared.tables.load_full();
        let generation = stop.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        // `Tables::build` keeps the snapshot's cluster order.
        for (spec, cluster) in tables.snapshot.clusters.iter().zip(&tables.clusters) {
            let Some(hc) = spec.health_check.clone() else { continue };
            for ep in &cluster.endpoints {
                let (hc, stats, addr, name, stop) = (hc.clone(), ep.stats.clone(), ep.address, cluster.name.clone(), generation.clone());
                tasks.spawn(async move { check_endpoint(&name, addr, &hc, &stats, stop).await });
            }
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_POLL) => {}
            }
            if !Arc::ptr_eq(&tables, &shared.tables.load()) {
                break;
            }
        }
        generation.cancel();
        while tasks.join_next().await.is_some() {}
    }
}

async fn check_endpoint(cluster: &str, addr: SocketAddr, hc: &HealthCheck, stats: &EndpointStats, stop: CancellationToken) {
    let (mut failures, mut successes) = (0u32, 0u32);
    loop {
        let ok = matches!(tokio::time::timeout(hc.timeout, probe(addr, hc.http_path.as_deref())).await, Ok(true));
        if ok {
            failures = 0;
            successes += 1;
            if successes >= hc.healthy_threshold && stats.hc_failed.swap(false, Ordering::Relaxed) {
                tracing::info!(cluster, endpoint = %addr, "health check passes again; endpoint back in rotation");
            }
        } else {
            successes = 0;
            failures += 1;
            if failures >= hc.unhealthy_threshold && !stats.hc_failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(cluster, endpoint = %addr, failures, "health check failing; endpoint out of rotation");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(hc.interval) => {}
        }
    }
}

/// One probe: a TCP connect, or an HTTP/1.1 GET whose status line must be 2xx.
async fn probe(addr: SocketAddr, http_path: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return false };
    let Some(path) = http_path else { return true };
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: oxidecar-health-check\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}
