//! A listener: accept → destination port (original destination under capture) → protocol sniff
//! when the candidate chains disagree → the HTTP proxy or the TCP proxy of the matching chain.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxidecar_xds::model::{Protocol, TransportProtocol};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::http::{MeshHttp, connection_addrs};
use crate::shared::Shared;
use crate::tables::Sniffed;
use crate::tcp;
use crate::tls::accept::{Hello, MAX_CLIENT_HELLO, looks_like_tls, parse_client_hello};
use crate::tls::socket::{ConnInfo, attach};

/// Longest a downstream TLS handshake may take once the ClientHello is in.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes needed to tell HTTP from anything else: the longest method plus a space, or the h2 preface start.
const SNIFF_BYTES: usize = 16;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: [&[u8]; 9] = [b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];

pub struct MeshListener {
    pub name: Arc<str>,
    pub shared: Arc<Shared>,
    pub http: Arc<HttpProxy<MeshHttp>>,
}

/// What the first bytes say, or that more bytes are needed.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    Http,
    Tcp,
    NeedMore,
}

fn classify(buf: &[u8]) -> Sniff {
    let candidates = METHODS.iter().copied().chain(std::iter::once(H2_PREFACE));
    let mut could_be = false;
    for token in candidates {
        let n = buf.len().min(token.len());
        if buf[..n] == token[..n] {
            if buf.len() >= token.len() || (token == H2_PREFACE && buf.len() >= SNIFF_BYTES) {
                return Sniff::Http;
            }
            could_be = true;
        }
    }
    if could_be { Sniff::NeedMore } else { Sniff::Tcp }
}

/// Reads the first bytes without consuming them (they are rewound into the stream): a TLS
/// ClientHello (read whole, for its SNI and ALPN), HTTP, or else opaque TCP. A client that stays
/// silent past `timeout` is a server-first protocol: opaque TCP.
/// `None` only if the stream changed type between the check and the downcast (it cannot).
async fn sniff(stream: Stream, timeout: Duration) -> Option<(Stream, Sniffed)> {
    let plain = |protocol| Sniffed { transport: TransportProtocol::RawBuffer, protocol, hello: None };
    if !stream.as_any().is::<L4Stream>() {
        return Some((stream, plain(Protocol::Tcp)));
    }
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    let mut buf = Vec::with_capacity(512);
    let deadline = tokio::time::Instant::now() + timeout;
    let sniffed = loop {
        let mut chunk = [0u8; 4096];
        let want = if looks_like_tls(&buf) && !buf.is_empty() { chunk.len() } else { SNIFF_BYTES - buf.len() };
        match tokio::time::timeout_at(deadline, l4.read(&mut chunk[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break plain(Protocol::Tcp),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if looks_like_tls(&buf) {
                    match parse_client_hello(&buf) {
                        Hello::Tls(hello) => break Sniffed { transport: TransportProtocol::Tls, protocol: Protocol::Tcp, hello: Some(hello) },
                        Hello::NotTls => break plain(Protocol::Tcp),
                        Hello::NeedMore if buf.len() >= MAX_CLIENT_HELLO => break plain(Protocol::Tcp),
                        Hello::NeedMore => continue,
                    }
                }
                match classify(&buf) {
                    Sniff::Http => break plain(Protocol::Http),
                    Sniff::Tcp => break plain(Protocol::Tcp),
                    Sniff::NeedMore if buf.len() >= SNIFF_BYTES => break plain(Protocol::Tcp),
                    Sniff::NeedMore => {}
                }
            }
            Err(_) => break plain(if classify(&buf) == Sniff::Http { Protocol::Http } else { Protocol::Tcp }),
        }
    };
    l4.rewind(&buf);
    Some((l4, sniffed))
}

impl MeshListener {
    fn no_chain(&self, port: u16, why: &str) -> Option<Stream> {
        self.shared.metrics.no_filter_chain.with_label_values(&[&self.name]).inc();
        tracing::info!(listener = %self.name, port, "{why}; closing connection");
        None
    }
}

#[async_trait]
impl ServerApp for MeshListener {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let tables = self.shared.tables.load_full();
        let Some(listener) = tables.listeners.get(&*self.name) else {
            tracing::info!(listener = %self.name, "listener removed from config; closing connection");
            return None;
        };
        if self.shared.drain.refuses(listener.direction) {
            return None;
        }
        crate::original_dst::record(&stream);
        let (local, original) = connection_addrs(stream.get_socket_digest().as_deref());
        let port = original.or(local).map_or(0, |a| a.port());
        let ip = original.or(local).map(|a| a.ip());
        let (mut stream, chain, sniffed) = match listener.chain_without_sniffing(ip, port) {
            Some(None) => return self.no_chain(port, "no filter chain matches"),
            Some(Some(chain)) => (stream, chain, None),
            None => {
                let Some((mut stream, sniffed)) = sniff(stream, listener.sniff_timeout).await else {
                    tracing::error!(listener = %self.name, "cannot sniff this connection's stream; closing it");
                    return None;
                };
                let Some(chain) = listener.candidates(ip, port).find(|c| c.matches(&sniffed)) else {
                    return self.no_chain(port, &format!("no filter chain for the sniffed connection ({:?}, {:?})", sniffed.transport, sniffed.protocol));
                };
                attach(stream.as_mut(), ConnInfo { chain: Some(chain.name.clone()), ..Default::default() });
                (stream, chain, Some(sniffed))
            }
        };
        if let (Some(t), Some(s)) = (&chain.tls, &sniffed)
            && s.transport == TransportProtocol::Tls
        {
            let terminated = crate::tls::accept::terminate(&self.shared.tls, stream, t.require_client_certificate, &t.alpn, chain.name.clone(), HANDSHAKE_TIMEOUT).await;
            stream = match terminated {
                Ok(s) => Box::new(s),
                Err(e) => {
                    tracing::info!(listener = %self.name, chain = %chain.name, error = %e, "downstream TLS refused");
                    return None;
                }
            };
        }
        match chain.protocol {
            Protocol::Http => {
                // Serve every request of this connection here, so keep-alive requests skip the sniff.
                loop {
                    match self.http.process_new(stream, shutdown).await {
                        // Drained listeners close kept-alive connections after their request.
                        Some(_) if self.shared.drain.refuses(listener.direction) => return None,
                        Some(s) => stream = s,
                        None => return None,
                    }
                }
            }
            Protocol::Tcp => {
                tcp::proxy(&self.shared, &self.name, listener.direction, chain, &tables, stream, original).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Sniff::Http);
        assert_eq!(classify(b"POS"), Sniff::NeedMore);
        assert_eq!(classify(b"POST /x"), Sniff::Http);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Sniff::Http);
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Sniff::Tcp);
        assert_eq!(classify(b"\x16\x03\x01"), Sniff::Tcp);
        assert_eq!(classify(b"GETX"), Sniff::Tcp);
    }
}
