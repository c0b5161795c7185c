//! The inbound side: recognise a TLS ClientHello among a connection's first bytes, read its SNI
//! and ALPN for filter-chain matching, and terminate TLS with the workload identity.

use std::sync::Arc;

use pingora::protocols::Stream;
use rustls::server::Acceptor;

use super::TlsContext;
use super::identity::peer_spiffe_id;
use super::socket::{ConnInfo, into_stream};

/// Largest ClientHello we wait for before giving up on reading it whole.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// What a ClientHello offers, for filter-chain matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub server_name: Option<String>,
    pub alpn: Vec<String>,
}

/// The first bytes, read as TLS.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not a TLS handshake record.
    NotTls,
    /// A TLS record, but the ClientHello is not complete yet.
    NeedMore,
    Tls(ClientHello),
}

/// Whether the bytes start like a TLS handshake record (content type 22, version 3.x).
pub fn looks_like_tls(buf: &[u8]) -> bool {
    buf.first() == Some(&0x16) && buf.get(1).is_none_or(|&b| b == 3)
}

/// Parses a ClientHello from the connection's first bytes with rustls' own parser.
pub fn parse_client_hello(buf: &[u8]) -> Hello {
    if !looks_like_tls(buf) {
        return Hello::NotTls;
    }
    let mut acceptor = Acceptor::default();
    let mut rd = buf;
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Hello::NotTls,
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Hello::Tls(ClientHello {
                server_name: hello.server_name().map(str::to_owned),
                alpn: hello.alpn().map(|it| it.map(|p| String::from_utf8_lossy(p).into_owned()).collect()).unwrap_or_default(),
            })
        }
        Ok(None) => Hello::NeedMore,
        Err(_) => Hello::NotTls,
    }
}

/// Terminates TLS on `stream` (whose first bytes were rewound after sniffing) and returns the
/// decrypted stream with the peer's identity attached; the error names why the handshake failed.
pub async fn terminate(
    tls: &TlsContext,
    stream: Stream,
    require_client_cert: bool,
    alpn: &[String],
    chain: Arc<str>,
    timeout: std::time::Duration,
) -> Result<pingora::protocols::l4::stream::Stream, String> {
    let config = tls.server_config(require_client_cert, alpn)?;
    let fd = stream.id();
    let original = crate::original_dst::recorded(&stream);
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let accepted = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = super::connect::error_reason(&e);
            tls.metrics.handshake_errors.with_label_values(&["server", reason]).inc();
            return Err(format!("TLS handshake failed: {e}"));
        }
        Err(_) => {
            tls.metrics.handshake_errors.with_label_values(&["server", "timeout"]).inc();
            return Err(format!("TLS handshake did not finish within {timeout:?}"));
        }
    };
    let conn = accepted.get_ref().1;
    let resumed = matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    tls.metrics.handshakes.with_label_values(&["server", if resumed { "resumed" } else { "full" }]).inc();
    let peer_identity = conn.peer_certificates().and_then(|c| c.first()).and_then(|leaf| peer_spiffe_id(leaf)).map(Arc::from);
    let sni = conn.server_name().map(Arc::from);
    let info = ConnInfo { chain: Some(chain), peer_identity, tls: true, sni, resumed };
    let stream = into_stream(accepted, Some(fd), info);
    crate::original_dst::restore(&stream, original);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_hello_bytes(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("hello");
        out
    }

    #[test]
    fn reads_sni_and_alpn_and_waits_for_the_whole_hello() {
        let bytes = client_hello_bytes("outbound_.9080_._.reviews.default.svc.cluster.local", &[b"istio-peer-exchange", b"istio"]);
        assert_eq!(
            parse_client_hello(&bytes),
            Hello::Tls(ClientHello {
                server_name: Some("outbound_.9080_._.reviews.default.svc.cluster.local".into()),
                alpn: vec!["istio-peer-exchange".into(), "istio".into()],
            })
        );
        assert_eq!(parse_client_hello(&bytes[..40]), Hello::NeedMore);
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse_client_hello(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00"), Hello::NotTls, "a ServerHello is not a ClientHello");
    }
}
