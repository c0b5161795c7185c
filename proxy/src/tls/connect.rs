//! The outbound side: Pingora's connector builds a TLS config per connection and cannot check a
//! SPIFFE ID, so clusters with mesh mTLS connect through this L4 hook instead: TCP, then a
//! handshake with the cached client config (session resumption works because the config, and its
//! session cache, outlive the connection), and Pingora speaks HTTP over the result.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};

use super::TlsContext;
use super::identity::peer_spiffe_id;
use super::socket::{ConnInfo, attach};
use super::verify::WrongIdentity;

/// Connects to one cluster's endpoints with one client config.
pub struct MeshConnect {
    pub tls: Arc<TlsContext>,
    pub config: Arc<ClientConfig>,
    pub sni: ServerName<'static>,
    pub connect_timeout: Duration,
    /// The identity generation the config was built from.
    pub generation: u64,
}

impl std::fmt::Debug for MeshConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConnect").field("sni", &self.sni).field("generation", &self.generation).finish()
    }
}

/// A short, bounded label for why a handshake failed.
pub fn error_reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof { "closed_by_peer" } else { "io" };
    };
    match tls {
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired_certificate",
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => "certificate_not_yet_valid",
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => "untrusted_certificate",
        E::InvalidCertificate(C::Other(o)) if o.0.downcast_ref::<WrongIdentity>().is_some() => "wrong_identity",
        E::InvalidCertificate(_) => "invalid_certificate",
        E::NoCertificatesPresented => "no_client_certificate",
        E::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateExpired | A::CertificateUnknown | A::DecryptError) => "certificate_refused_by_peer",
        E::AlertReceived(A::CertificateRequired) => "client_certificate_required",
        E::AlertReceived(_) => "alert_received",
        E::NoApplicationProtocol => "no_alpn_match",
        _ => "handshake",
    }
}

impl MeshConnect {
    /// TCP connect and mTLS handshake to `addr`, both within the connect timeout.
    pub async fn connect_tls(&self, addr: std::net::SocketAddr) -> Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ConnInfo)> {
        let tcp = match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused { ErrorType::ConnectRefused } else { ErrorType::ConnectError };
                return Err(Error::because(kind, format!("connecting to {addr}"), e));
            }
            Err(_) => return Error::e_explain(ErrorType::ConnectTimedout, format!("timeout {:?} connecting to {addr}", self.connect_timeout)),
        };
        let _ = tcp.set_nodelay(true);
        let handshake = tokio_rustls::TlsConnector::from(self.config.clone()).connect(self.sni.clone(), tcp);
        let tls = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let reason = error_reason(&e);
                self.tls.metrics.handshake_errors.with_label_values(&["client", reason]).inc();
                tracing::debug!(upstream = %addr, reason, error = %e, "mTLS handshake failed");
                return Err(Error::because(ErrorType::TLSHandshakeFailure, format!("mTLS to {addr} ({reason})"), e));
            }
            Err(_) => {
                self.tls.metrics.handshake_errors.with_label_values(&["client", "timeout"]).inc();
                return Error::e_explain(ErrorType::ConnectTimedout, format!("mTLS handshake with {addr} did not finish within {:?}", self.connect_timeout));
            }
        };
        let conn = tls.get_ref().1;
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        self.tls.metrics.handshakes.with_label_values(&["client", if resumed { "resumed" } else { "full" }]).inc();
        let peer_identity = conn.peer_certificates().and_then(|c| c.first()).and_then(|leaf| peer_spiffe_id(leaf)).map(Arc::from);
        let sni = match &self.sni {
            ServerName::DnsName(d) => Some(Arc::from(d.as_ref())),
            _ => None,
        };
        Ok((tls, ConnInfo { chain: None, peer_identity, tls: true, sni, resumed }))
    }
}

/// Connects one endpoint of an mTLS cluster for Pingora's HTTP pools.
///
/// Pingora reuses a pooled connection only after checking its file descriptor against the peer
/// address, and a TLS stream handed over as a "virtual" socket has no descriptor, so it would
/// never be reused. The decrypted side is therefore handed over as one end of a Unix socket pair,
/// with a relay task copying between the other end and the TLS stream; the peer address is
/// 0.0.0.0 (Pingora skips the address comparison for it) and the real endpoint is part of the
/// pool key through `group_key`.
#[derive(Debug)]
pub struct EndpointConnect {
    pub mesh: Arc<MeshConnect>,
    pub target: std::net::SocketAddr,
}

/// Relay buffer per direction.
const RELAY_BUFFER: usize = 64 * 1024;

#[async_trait]
impl L4Connect for EndpointConnect {
    async fn connect(&self, _addr: &SocketAddr) -> Result<L4Stream> {
        let (mut tls, info) = self.mesh.connect_tls(self.target).await?;
        let (near, mut far) = tokio::net::UnixStream::pair().map_err(|e| Error::because(ErrorType::ConnectError, "socket pair for the mTLS relay", e))?;
        let target = self.target;
        tokio::spawn(async move {
            if let Err(e) = tokio::io::copy_bidirectional_with_sizes(&mut far, &mut tls, RELAY_BUFFER, RELAY_BUFFER).await {
                tracing::debug!(upstream = %target, error = %e, "mTLS relay ended with an error");
            }
        });
        let mut stream = L4Stream::from(near);
        attach(&mut stream, info);
        Ok(stream)
    }
}
