//! A TLS stream presented to Pingora as a socket: Pingora speaks plain HTTP over it while rustls
//! does the record layer underneath, with connection facts (peer identity, chain) riding along in
//! the stream's digest.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pingora::http::ResponseHeader;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, SocketDigest};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the proxy learned about a connection when it was accepted or opened.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The filter chain that took the connection (downstream only).
    pub chain: Option<Arc<str>>,
    /// The peer's verified SPIFFE ID, when the connection is mutual TLS.
    pub peer_identity: Option<Arc<str>>,
    /// Whether TLS protects the connection.
    pub tls: bool,
    /// SNI the client sent (downstream) or we sent (upstream).
    pub sni: Option<Arc<str>>,
    /// Whether the TLS handshake resumed an earlier session.
    pub resumed: bool,
}

impl ConnInfo {
    /// Istio's `connection_security_policy` label value.
    pub fn security_policy(&self) -> &'static str {
        match (self.tls, self.peer_identity.is_some()) {
            (true, true) => "mutual_tls",
            (true, false) => "tls",
            _ => "none",
        }
    }
}

/// Attaches `info` to a stream (through the digest Pingora carries into every HTTP session).
pub fn attach<S: GetProxyDigest + ?Sized>(stream: &mut S, info: ConnInfo) {
    // The digest's response header is for CONNECT proxies; it is unused here.
    let Ok(header) = ResponseHeader::build(200, None) else { return };
    let user: Box<dyn Any + Send + Sync> = Box::new(info);
    stream.set_proxy_digest(ProxyDigest::new(Box::new(header), Some(user)));
}

/// The [`ConnInfo`] attached to a stream, if any.
pub fn info_of(digest: Option<&ProxyDigest>) -> Option<&ConnInfo> {
    digest?.user_data.as_ref()?.downcast_ref::<ConnInfo>()
}

/// Any byte stream with a TCP socket at the bottom that socket options can be applied to.
pub trait TlsIo: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug {
    fn set_nodelay(&self) -> std::io::Result<()>;
}

#[derive(Debug)]
pub struct TlsSocket<T: TlsIo>(pub T);

impl<T: TlsIo> VirtualSocket for TlsSocket<T> {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.0.set_nodelay(),
            // Keep-alive is set on the TCP socket before the handshake when wanted.
            _ => Ok(()),
        }
    }
}

impl<T: TlsIo> AsyncRead for TlsSocket<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: TlsIo> AsyncWrite for TlsSocket<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl TlsIo for tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    fn set_nodelay(&self) -> std::io::Result<()> {
        self.get_ref().0.set_nodelay(true)
    }
}

/// A terminated downstream connection: TLS over whatever Pingora accepted.
impl TlsIo for tokio_rustls::server::TlsStream<pingora::protocols::Stream> {
    fn set_nodelay(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Wraps a TLS stream as a Pingora stream, keeping the TCP socket's addresses (`fd`) visible.
pub fn into_stream<T: TlsIo + 'static>(tls: T, fd: Option<i32>, info: ConnInfo) -> L4Stream {
    let mut stream = L4Stream::from(VirtualSocketStream::new(Box::new(TlsSocket(tls))));
    if let Some(fd) = fd {
        stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
    }
    attach(&mut stream, info);
    stream
}
