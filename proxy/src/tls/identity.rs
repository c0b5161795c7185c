//! The workload identity: a certificate chain carrying a SPIFFE ID, its key and the trust bundle,
//! parsed from PEM (files or SDS) and checked before it replaces the one in use.

use std::path::Path;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A parsed, consistent identity, ready to build TLS configs from.
#[derive(Debug)]
pub struct WorkloadCerts {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Vec<CertificateDer<'static>>,
    /// The leaf's SPIFFE ID (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`).
    pub spiffe_id: String,
    pub not_after: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{what}: cannot read {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("{what}: {problem}")]
    Invalid { what: &'static str, problem: String },
}

fn invalid(what: &'static str, problem: impl Into<String>) -> IdentityError {
    IdentityError::Invalid { what, problem: problem.into() }
}

impl WorkloadCerts {
    /// Reads the three PEM files of [`oxidecar_xds::model::Identity`]; errors name the file.
    pub fn from_files(id: &oxidecar_xds::model::Identity) -> Result<Self, IdentityError> {
        let read = |what: &'static str, p: &Path| {
            std::fs::read(p).map_err(|source| IdentityError::Read { what, path: p.display().to_string(), source })
        };
        let chain = read("cert_chain", &id.cert_chain)?;
        let key = read("private_key", &id.private_key)?;
        let roots = read("trust_bundle", &id.trust_bundle)?;
        Self::from_pem(&chain, &key, &roots).map_err(|e| match e {
            IdentityError::Invalid { what, problem } => {
                let file = match what {
                    "cert_chain" => &id.cert_chain,
                    "private_key" => &id.private_key,
                    _ => &id.trust_bundle,
                };
                IdentityError::Invalid { what, problem: format!("{}: {problem}", file.display()) }
            }
            other => other,
        })
    }

    /// Parses PEM text: a chain (leaf first), a PKCS#8/PKCS#1/SEC1 key, and CA certificates.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], roots_pem: &[u8]) -> Result<Self, IdentityError> {
        let leaf = LeafCertificate::from_pem(chain_pem, key_pem)?;
        let roots = trust_bundle_from_pem(roots_pem)?;
        Ok(Self { chain: leaf.chain, key: leaf.key, roots, spiffe_id: leaf.spiffe_id, not_after: leaf.not_after })
    }
}

/// A certificate chain with its key, checked on its own (SDS delivers it apart from the trust
/// bundle, and a bad one must be refused when it arrives).
pub struct LeafCertificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub spiffe_id: String,
    pub not_after: SystemTime,
}

impl LeafCertificate {
    /// The chain must hold a leaf with a SPIFFE ID, and the key must be that leaf's.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("cert_chain", format!("not PEM certificates: {e}")))?;
        let leaf = chain.first().ok_or_else(|| invalid("cert_chain", "holds no certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("private_key", format!("no usable private key: {e}")))?;
        let info = leaf_info(leaf).map_err(|p| invalid("cert_chain", p))?;
        let spiffe_id = info.spiffe_ids.into_iter().next().ok_or_else(|| invalid("cert_chain", "the leaf certificate has no spiffe:// URI SAN"))?;
        // The key must belong to the leaf: rustls checks the pair when it builds a config.
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signing = provider.key_provider.load_private_key(key.clone_key()).map_err(|e| invalid("private_key", format!("unsupported key: {e}")))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|e| invalid("private_key", format!("does not match the leaf certificate: {e}")))?;
        Ok(Self { chain, key, spiffe_id, not_after: info.not_after })
    }
}

/// CA certificates in PEM; at least one, each a parsable X.509 certificate.
pub fn trust_bundle_from_pem(roots_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(roots_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("trust_bundle", format!("not PEM certificates: {e}")))?;
    if roots.is_empty() {
        return Err(invalid("trust_bundle", "holds no certificate"));
    }
    for (i, der) in roots.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| invalid("trust_bundle", format!("certificate {i} is not X.509: {e}")))?;
    }
    Ok(roots)
}

/// What routing and metrics need from a certificate.
pub struct LeafInfo {
    pub spiffe_ids: Vec<String>,
    pub not_after: SystemTime,
}

/// Reads the URI SANs that are SPIFFE IDs and the expiry of a DER certificate.
pub fn leaf_info(der: &[u8]) -> Result<LeafInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut spiffe_ids = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && uri.starts_with("spiffe://")
            {
                spiffe_ids.push((*uri).to_string());
            }
        }
    }
    let secs = cert.validity().not_after.timestamp();
    let not_after = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Ok(LeafInfo { spiffe_ids, not_after })
}

/// The SPIFFE ID of a peer's leaf certificate, if it has one.
pub fn peer_spiffe_id(der: &[u8]) -> Option<String> {
    leaf_info(der).ok()?.spiffe_ids.into_iter().next()
}
