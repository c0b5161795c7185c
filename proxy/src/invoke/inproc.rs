//! The invocation listener reached in process. Service invocation used to send its request over a
//! loopback TCP connection to this sidecar's own outbound listener; now it hands the same HTTP/1
//! request to that listener's Pingora proxy over an in-memory stream. Everything past the socket is
//! unchanged — routing, load balancing, upstream pooling, TLS, retries, circuit breakers, lanes,
//! metrics and the access log are the listener's own — but the first hop costs no system calls, no
//! kernel loopback and no wake-up of another thread: the proxy runs on the runtime thread that
//! received the call, and only the upstream connection to the peer sidecar is a real socket.
//!
//! The in-memory connections are kept alive and pooled like any HTTP/1 client's (hyper's pool on
//! our side, Pingora's keep-alive loop on the listener's), so a call costs one request on a warm
//! connection rather than a new stream, a client handshake and a new listener task.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
/// How long the listener keeps an idle in-memory connection (Pingora's HTTP/1 default).
const LISTENER_KEEPALIVE_SECS: u64 = 60;
/// How long our side keeps one idle: shorter than the listener's, so the listener never closes a
/// connection the client is about to send on.
const CLIENT_IDLE: Duration = Duration::from_secs(30);
/// Idle in-memory connections kept per listener.
const MAX_IDLE: usize = 64;
/// The authority the pool keys its connections by; the request's own `Host` header is what the
/// listener routes on (an HTTP/1 request goes out in origin form, without this authority).
pub const POOL_AUTHORITY: &str = "invocation-listener.invalid";

/// The HTTP listeners this process runs, by name, as pooled HTTP/1 clients for calls made in process.
pub struct InProcessListeners {
    clients: HashMap<Arc<str>, Client<Connector, Full<Bytes>>>,
    /// Never signalled: the listeners' drain is checked per call instead.
    _keep_shutdown_open: tokio::sync::watch::Sender<bool>,
}

impl InProcessListeners {
    /// `listeners`: each listener's proxy and the address it listens on.
    pub fn new(listeners: HashMap<Arc<str>, (Arc<HttpProxy<MeshHttp>>, SocketAddr)>) -> Self {
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        let clients = listeners
            .into_iter()
            .map(|(name, (proxy, address))| {
                let connector = Connector { proxy, local: super::reachable(address), shutdown: shutdown.clone() };
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(CLIENT_IDLE)
                    .pool_max_idle_per_host(MAX_IDLE)
                    .pool_timer(TokioTimer::new())
                    .build(connector);
                (name, client)
            })
            .collect();
        Self { clients, _keep_shutdown_open: tx }
    }

    /// Sends `request` (its URI `http://POOL_AUTHORITY/...`) to the invocation listener of the
    /// running config on a pooled in-memory connection. `Err` says why it could not be sent.
    pub async fn send(&self, shared: &Shared, request: http::Request<Full<Bytes>>) -> Result<http::Response<Incoming>, String> {
        let client = {
            let tables = shared.tables.load();
            let name = &tables.snapshot.invocation.listener;
            let listener = tables
                .listeners
                .get(name.as_str())
                .ok_or_else(|| format!("no listener {name:?} to send invocations on (config invocation.listener)"))?;
            if shared.drain.refuses(listener.direction) {
                return Err(format!("listener {name:?} is draining"));
            }
            self.clients
                .get(name.as_str())
                .ok_or_else(|| format!("listener {name:?} was added after start-up; it takes invocations after a restart"))?
                .clone()
        };
        client.request(request).await.map_err(|e| format!("through the invocation listener: {}", error_chain(&e)))
    }
}

/// An error with its causes, for messages a user reads.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Opens in-memory connections to one listener: each one is served by the listener's proxy on a
/// task of the calling runtime, request after request, as Pingora serves a keep-alive connection.
#[derive(Clone)]
struct Connector {
    proxy: Arc<HttpProxy<MeshHttp>>,
    local: SocketAddr,
    shutdown: ShutdownWatch,
}

impl tower_service::Service<Uri> for Connector {
    type Response = ClientEnd;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<ClientEnd>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        let stream: Stream = Box::new(ServerEnd::new(server, self.local));
        let (proxy, shutdown) = (self.proxy.clone(), self.shutdown.clone());
        tracing::debug!(listener = %self.local, "new in-memory connection for invocations");
        tokio::spawn(async move {
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(Some(LISTENER_KEEPALIVE_SECS));
            let mut reused = proxy.process_new_http(session, &shutdown).await;
            while let Some((stream, settings)) = reused.map(|r| r.consume()) {
                let mut session = ServerSession::new_http1(stream);
                if let Some(settings) = settings {
                    settings.apply_to_session(&mut session);
                }
                reused = proxy.process_new_http(session, &shutdown).await;
            }
        });
        Box::pin(std::future::ready(Ok(ClientEnd(TokioIo::new(client)))))
    }
}

/// The caller's side of an in-memory connection, as hyper's client sees it.
struct ClientEnd(TokioIo<DuplexStream>);

impl Connection for ClientEnd {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for ClientEnd {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ClientEnd {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
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
        // Only upstream connections are told apart by id; this one is a downstream.
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
