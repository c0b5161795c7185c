//! SDS Secret → PEM material for the proxy's certificate store: the workload certificate
//! (`default`: chain + key) and the trust bundle (`ROOTCA`).

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};

use super::report::{Cx, Tr};

/// One SDS secret in PEM. `default` carries chain and key; `ROOTCA` carries the trusted CAs.
#[derive(Clone, PartialEq, Eq)]
pub struct SdsSecret {
    pub name: String,
    pub cert_chain_pem: Option<String>,
    pub private_key_pem: Option<String>,
    pub trusted_ca_pem: Option<String>,
}

impl std::fmt::Debug for SdsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdsSecret")
            .field("name", &self.name)
            .field("cert_chain_pem", &self.cert_chain_pem.as_ref().map(String::len))
            .field("private_key_pem", &self.private_key_pem.as_ref().map(|_| "[redacted]"))
            .field("trusted_ca_pem", &self.trusted_ca_pem.as_ref().map(String::len))
            .finish()
    }
}

fn pem(cx: &Cx<'_>, field: &str, d: Option<&DataSource>) -> Tr<Option<String>> {
    let Some(d) = d else { return Ok(None) };
    Ok(match &d.specifier {
        Some(data_source::Specifier::InlineBytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(data_source::Specifier::InlineString(s)) => Some(s.clone()),
        Some(data_source::Specifier::Filename(f)) => {
            Some(std::fs::read_to_string(f).map_err(|e| cx.reject(field, format!("cannot read {f}: {e}")))?)
        }
        Some(data_source::Specifier::EnvironmentVariable(v)) => {
            Some(std::env::var(v).map_err(|_| cx.reject(field, format!("environment variable {v} is not set")))?)
        }
        None => None,
    })
}

pub(crate) fn translate(cx: &mut Cx<'_>, s: &Secret) -> Tr<SdsSecret> {
    let mut out = SdsSecret { name: s.name.clone(), cert_chain_pem: None, private_key_pem: None, trusted_ca_pem: None };
    match &s.r#type {
        Some(secret::Type::TlsCertificate(c)) => {
            out.cert_chain_pem = pem(cx, "tls_certificate.certificate_chain", c.certificate_chain.as_ref())?;
            out.private_key_pem = pem(cx, "tls_certificate.private_key", c.private_key.as_ref())?;
            if out.cert_chain_pem.is_none() || out.private_key_pem.is_none() {
                return Err(cx.reject("tls_certificate", "needs certificate_chain and private_key"));
            }
        }
        Some(secret::Type::ValidationContext(v)) => {
            out.trusted_ca_pem = pem(cx, "validation_context.trusted_ca", v.trusted_ca.as_ref())?;
            if out.trusted_ca_pem.is_none() {
                // SPIRE's SPIFFE validator carries per-trust-domain bundles instead.
                return Err(cx.reject("validation_context", "needs trusted_ca (custom validators are not supported)"));
            }
        }
        _ => return Err(cx.reject("type", "only tls_certificate and validation_context secrets are supported")),
    }
    Ok(out)
}
