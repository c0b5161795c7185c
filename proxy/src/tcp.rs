//! The TCP proxy of a filter chain: pick a cluster and endpoint, connect (trying other endpoints
//! on failure), then copy bytes both ways and record Istio's TCP metrics as the bytes pass.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxidecar_filters::breaker::{Occupancy, PendingOverflow};
use oxidecar_filters::outlier::Outcome;
use oxidecar_xds::model::{ClusterKind, TrafficDirection};
use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::istio::{IstioLabels, Workload};
use crate::shared::{InFlight, Shared};
use crate::tables::{ChainAction, ChainEntry, ClusterState, Tables};
use crate::tls::socket::info_of;
use crate::tls::upstream::Carrying;

/// Endpoints tried before a TCP connection is given up (Envoy's `max_connect_attempts` is 1; we
/// try a few distinct endpoints because nothing has been sent yet).
const MAX_CONNECT_ATTEMPTS: usize = 3;
/// Per-direction copy buffer.
const COPY_BUFFER: usize = 16 * 1024;

/// An upstream byte stream: plain TCP or mesh mTLS.
trait Upstream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Upstream for T {}

struct Connected {
    stream: Box<dyn Upstream>,
    addr: SocketAddr,
    /// The peer's verified identity when the connection is mTLS.
    identity: Option<Arc<str>>,
    tls: bool,
}

async fn connect_endpoint(shared: &Shared, cluster: &ClusterState, addr: SocketAddr, tls: bool) -> Result<Connected, String> {
    if let (true, Some(settings)) = (tls, &cluster.tls) {
        let connector = settings.connector(&shared.tls, Carrying::Tcp, cluster.connect_timeout)?;
        let (stream, info) = connector.connect_tls(addr).await.map_err(|e| e.to_string())?;
        return Ok(Connected { stream: Box::new(stream), addr, identity: info.peer_identity, tls: true });
    }
    match tokio::time::timeout(cluster.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(Connected { stream: Box::new(s), addr, identity: None, tls: false })
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn connect(shared: &Shared, cluster: &ClusterState, original: Option<SocketAddr>) -> Option<Connected> {
    if cluster.kind == ClusterKind::Blackhole {
        return None;
    }
    if cluster.kind.is_original_dst() {
        let addr = cluster.kind.passthrough_address(original?);
        return connect_endpoint(shared, cluster, addr, false).await.ok();
    }
    let mut tried = Vec::new();
    while tried.len() < MAX_CONNECT_ATTEMPTS {
        let i = cluster.pick(&tried, None, None)?;
        tried.push(i);
        let ep = &cluster.endpoints[i];
        ep.stats.rq_total.fetch_add(1, Ordering::Relaxed);
        match connect_endpoint(shared, cluster, ep.address, ep.tls).await {
            Ok(c) => {
                cluster.record(i, Outcome::Success);
                return Some(c);
            }
            Err(e) => tracing::debug!(cluster = %cluster.name, endpoint = %ep.address, error = %e, "tcp connect failed"),
        }
        ep.stats.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
        cluster.record(i, Outcome::LocalFailure);
    }
    None
}

/// Istio's labels for a TCP connection: this node on one side, `unknown` on the other until the
/// mTLS work identifies TCP peers.
/// `principals`: this side's principal (when mTLS), the peer's verified principal, and Istio's
/// connection_security_policy.
fn tcp_labels<'a>(
    tables: &'a Tables,
    direction: TrafficDirection,
    cluster: &'a ClusterState,
    flags: &'a str,
    principals: (Option<&'a str>, Option<&'a str>, &'a str),
) -> IstioLabels<'a> {
    let (mine, peer, security_policy) = principals;
    let me = Workload::node(&tables.snapshot.node, mine);
    let peer = Workload { principal: peer.unwrap_or("unknown"), ..Workload::UNKNOWN };
    let (source, destination) = match direction {
        TrafficDirection::Outbound => (me, peer),
        TrafficDirection::Inbound => (peer, me),
    };
    IstioLabels {
        direction,
        source,
        destination,
        service: &cluster.service,
        service_name: &cluster.service_name,
        protocol: "tcp",
        flags,
        security_policy,
        response_code: "",
        grpc_status: "",
    }
}

/// Proxies one accepted connection to the chain's cluster until either side closes.
pub async fn proxy(
    shared: &Arc<Shared>,
    listener: &str,
    direction: TrafficDirection,
    chain: &ChainEntry,
    tables: &Arc<Tables>,
    downstream: Stream,
    original: Option<SocketAddr>,
) {
    let _in_flight = InFlight::new(shared);
    let ChainAction::Tcp { destination } = &chain.action else { return };
    let cluster = tables.cluster(destination.pick());
    let start = std::time::Instant::now();
    let peer = downstream.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
    let log = crate::accesslog::TcpLog { listener, direction, cluster: &cluster.name, downstream: peer, start };
    let conn = info_of(downstream.get_proxy_digest().as_deref()).cloned().unwrap_or_default();
    // The connection holds one of the cluster's `max_connections` for its whole life; beyond it
    // the downstream waits as pending, and past `max_pending_requests` it is closed at once.
    let permit = cluster.stats.gate.acquire(Occupancy::Connection, cluster.gate_limits()).await;
    let upstream = match &permit {
        Ok(_) => connect(shared, cluster, original).await,
        Err(PendingOverflow) => None,
    };
    let flags = match (&upstream, cluster.kind) {
        (Some(_), _) => "-",
        (None, _) if permit.is_err() => "UO",
        (None, ClusterKind::Blackhole) => "UH",
        (None, _) => "UF",
    };
    let me = shared.tls.spiffe_id();
    let up_identity = upstream.as_ref().and_then(|u| u.identity.clone());
    let up_tls = upstream.as_ref().is_some_and(|u| u.tls);
    let (mine, peer, security) = match direction {
        TrafficDirection::Outbound => (if up_tls { me.as_deref() } else { None }, up_identity.as_deref(), "unknown"),
        TrafficDirection::Inbound => (if conn.tls { me.as_deref() } else { None }, conn.peer_identity.as_deref(), conn.security_policy()),
    };
    let labels = tcp_labels(tables, direction, cluster, flags, (mine, peer, security)).tcp_values(&shared.metrics.label_bounds, &tables.snapshot.telemetry.metrics);
    let m = &shared.metrics;
    m.tcp_opened.with_label_values(&labels).inc();
    let Some(Connected { stream: upstream, addr, .. }) = upstream else {
        tracing::info!(listener, cluster = %cluster.name, flags, "no upstream connection for TCP; closing");
        m.tcp_closed.with_label_values(&labels).inc();
        log.write(shared, tables, None, flags, (0, 0), (conn.peer_identity.as_deref(), None));
        return;
    };
    tracing::debug!(listener, chain = %chain.name, cluster = %cluster.name, upstream = %addr, "tcp proxying");
    // Counted as bytes flow, so long-lived connections show up before they close.
    let (received, sent) = (m.tcp_received_bytes.with_label_values(&labels), m.tcp_sent_bytes.with_label_values(&labels));
    let (down_read, down_write) = tokio::io::split(downstream);
    let (up_read, up_write) = tokio::io::split(upstream);
    let (mut rx, mut tx) = (0, 0);
    let (to_upstream, to_downstream) = tokio::join!(pump(down_read, up_write, &received, &mut rx), pump(up_read, down_write, &sent, &mut tx));
    if let Err(e) = to_upstream.and(to_downstream) {
        tracing::debug!(listener, error = %e, "tcp connection ended with an error");
    }
    m.tcp_closed.with_label_values(&labels).inc();
    log.write(shared, tables, Some(addr), flags, (rx, tx), (conn.peer_identity.as_deref(), up_identity.as_deref()));
}

/// Copies one direction until EOF (then half-closes the other side), counting bytes as they pass.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    counter: &prometheus::IntCounter,
    total: &mut u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        // Pingora's stream buffers writes: push each chunk out now.
        to.flush().await?;
        counter.inc_by(n as u64);
        *total += n as u64;
    }
}
