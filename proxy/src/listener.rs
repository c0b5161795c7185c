//! A listener: accept → destination port (original destination under capture) → protocol sniff
//! when the candidate chains disagree → the HTTP proxy or the TCP proxy of the matching chain.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxidecar_xds::model::Protocol;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::http::{MeshHttp, connection_addrs};
use crate::shared::Shared;
use crate::tcp;

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

/// Reads the first bytes without consuming them (they are rewound into the stream). A client that
/// stays silent past `timeout` is a server-first protocol: opaque TCP.
/// `None` only if the stream changed type between the check and the downcast (it cannot).
async fn sniff(stream: Stream, timeout: Duration) -> Option<(Stream, Protocol)> {
    if !stream.as_any().is::<L4Stream>() {
        return Some((stream, Protocol::Tcp));
    }
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    let mut buf = Vec::with_capacity(SNIFF_BYTES);
    let deadline = tokio::time::Instant::now() + timeout;
    let protocol = loop {
        let mut chunk = [0u8; SNIFF_BYTES];
        let want = SNIFF_BYTES - buf.len();
        match tokio::time::timeout_at(deadline, l4.read(&mut chunk[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Protocol::Tcp,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                match classify(&buf) {
                    Sniff::Http => break Protocol::Http,
                    Sniff::Tcp => break Protocol::Tcp,
                    Sniff::NeedMore if buf.len() >= SNIFF_BYTES => break Protocol::Tcp,
                    Sniff::NeedMore => {}
                }
            }
            Err(_) => break if classify(&buf) == Sniff::Http { Protocol::Http } else { Protocol::Tcp },
        }
    };
    l4.rewind(&buf);
    Some((l4, protocol))
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
        let mut protocols = listener.candidates(port).map(|c| c.protocol);
        let Some(first) = protocols.next() else {
            self.shared.metrics.no_filter_chain.with_label_values(&[&self.name]).inc();
            tracing::info!(listener = %self.name, port, "no filter chain matches; closing connection");
            return None;
        };
        let (stream, protocol) = if protocols.all(|p| p == first) {
            (stream, first)
        } else {
            match sniff(stream, listener.sniff_timeout).await {
                Some(sniffed) => sniffed,
                None => {
                    tracing::error!(listener = %self.name, "cannot sniff this connection's stream; closing it");
                    return None;
                }
            }
        };
        let Some(chain) = listener.candidates(port).find(|c| c.protocol == protocol) else {
            self.shared.metrics.no_filter_chain.with_label_values(&[&self.name]).inc();
            tracing::info!(listener = %self.name, port, ?protocol, "no filter chain for the sniffed protocol; closing connection");
            return None;
        };
        match protocol {
            Protocol::Http => {
                // Serve every request of this connection here, so keep-alive requests skip the sniff.
                let mut stream = stream;
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
