//! Peer verification for sidecar-to-sidecar TLS: the chain must lead to the trust bundle (with
//! expiry checked as usual), and the identity is the SPIFFE ID in the leaf's URI SAN — DNS names do
//! not apply, so WebPKI's host-name check is replaced by a check against the expected SPIFFE IDs.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};

use super::identity::leaf_info;

/// The peer presented a valid certificate of the wrong workload.
#[derive(Debug, thiserror::Error)]
#[error("peer identity {got} is not one of the expected {expected:?}")]
pub struct WrongIdentity {
    pub got: String,
    pub expected: Arc<[String]>,
}

#[derive(Debug)]
pub struct SpiffeServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Accepted SPIFFE IDs; empty accepts any SPIFFE ID the trust bundle signs.
    expected: Arc<[String]>,
}

impl SpiffeServerVerifier {
    pub fn new(webpki: Arc<WebPkiServerVerifier>, expected: Arc<[String]>) -> Self {
        Self { webpki, expected }
    }
}

/// Whether `id` is acceptable given the expected list (empty: anything).
pub fn identity_allowed(id: &str, expected: &[String]) -> bool {
    expected.is_empty() || expected.iter().any(|e| e == id)
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(_) => {}
            Err(Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {}
            Err(e) => return Err(e),
        }
        let info = leaf_info(end_entity).map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let Some(got) = info.spiffe_ids.into_iter().next() else {
            return Err(Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(WrongIdentity {
                got: "(no spiffe:// URI SAN)".into(),
                expected: self.expected.clone(),
            })))));
        };
        if identity_allowed(&got, &self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(WrongIdentity { got, expected: self.expected.clone() })))))
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
