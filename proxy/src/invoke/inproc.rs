//! The invocation listener reached in process. Service invocation used to send its request over a
//! loopback TCP connection to this sidecar's own outbound listener; now it hands the same HTTP/1
//! request to that listener's Pingora proxy over an in-memory stream. Everything past the socket is
//! unchanged — routing, load balancing, upstream pooling, TLS, retries, circuit breakers, lanes,
//! metrics and the access log are the listener's own — but the first hop costs no system calls, no
//! kernel loopback and no wake-up of another thread: the proxy runs on the runtime thread that
//! received the call, and only the upstream connection to the peer sidecar is a real socket.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::apps::HttpServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest, UniqueID, UniqueIDType};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::http::MeshHttp;
use crate::shared::Shared;

/// Bytes either direction of an in-memory connection buffers before the writer waits for the
/// reader (the request and response headers of a typical call fit at once).
const PIPE_BYTES: usize = 64 * 1024;

/// The HTTP proxies of the listeners this process runs, by listener name, for calls made in process.
pub struct InProcessListeners {
    proxies: HashMap<Arc<str>, Arc<HttpProxy<MeshHttp>>>,
    /// Never signalled: in-process connections carry one request each, and drain is checked per call.
    shutdown: ShutdownWatch,
    _keep_shutdown_open: tokio::sync::watch::Sender<bool>,
}

impl InProcessListeners {
    pub fn new(proxies: HashMap<Arc<str>, Arc<HttpProxy<MeshHttp>>>) -> Self {
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        Self { proxies, shutdown, _keep_shutdown_open: tx }
    }

    /// Opens an in-memory connection to the invocation listener of the running config and serves
    /// one request on it (on a task of the calling runtime). `Err` says why no connection can be made.
    pub fn connect(&self, shared: &Shared) -> Result<DuplexStream, String> {
        let tables = shared.tables.load();
        let name = &tables.snapshot.invocation.listener;
        let listener = tables
            .snapshot
            .listeners
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| format!("no listener {name:?} to send invocations on (config invocation.listener)"))?;
        let proxy = self
            .proxies
            .get(name.as_str())
            .ok_or_else(|| format!("listener {name:?} was added after start-up; it takes invocations after a restart"))?
            .clone();
        if shared.drain.refuses(listener.direction) {
            return Err(format!("listener {name:?} is draining"));
        }
        let mut local = listener.address;
        if local.ip().is_unspecified() {
            local.set_ip(if local.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        let stream: Stream = Box::new(ServerEnd::new(server, local));
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut session = ServerSession::new_http1(stream);
            // One request per connection: nothing to pool, nothing to time out while idle.
            session.set_keepalive(None);
            let _ = proxy.process_new_http(session, &shutdown).await;
        });
        Ok(client)
    }
}

/// The listener's side of an in-memory connection. Its socket digest names the listener's address
/// as the local address (and loopback as the peer), so filter chain matching, metrics and the
/// access log see what a loopback TCP connection to the listener would show.
#[derive(Debug)]
struct ServerEnd {
    io: DuplexStream,
    digest: Arc<SocketDigest>,
}

impl ServerEnd {
    fn new(io: DuplexStream, local: SocketAddr) -> Self {
        // No file descriptor: every address is filled in here, so the digest never asks the kernel.
        let digest = SocketDigest::from_raw_fd(-1);
        let peer = SocketAddr::new(local.ip(), 0);
        let _ = digest.local_addr.set(Some(PingoraAddr::Inet(local)));
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
        let _ = digest.original_dst.set(None);
        Self { io, digest: Arc::new(digest) }
    }
}

impl AsyncRead for ServerEnd {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerEnd {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ServerEnd {
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.io).await;
    }
}

impl UniqueID for ServerEnd {
    fn id(&self) -> UniqueIDType {
        // Only upstream connections are told apart by id; this one is never pooled.
        0
    }
}

impl Ssl for ServerEnd {}

impl GetTimingDigest for ServerEnd {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for ServerEnd {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for ServerEnd {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.digest.clone())
    }
}

impl Peek for ServerEnd {}
