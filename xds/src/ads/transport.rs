//! Where the control plane is: `unix:PATH` (pilot-agent), `http://HOST:PORT` (plaintext, for
//! local control planes and tests) or `https://HOST:PORT` (istiod: TLS verified against Istio's
//! root certificate, with the projected service-account token as a bearer token).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsAddress {
    Unix(PathBuf),
    Http(String),
    Https { url: String, root_ca: PathBuf, token: PathBuf },
}

impl fmt::Display for XdsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdsAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            XdsAddress::Http(u) | XdsAddress::Https { url: u, .. } => f.write_str(u),
        }
    }
}

impl XdsAddress {
    /// Parses `unix:PATH`, `http://…`, `https://…` or a bare `HOST:PORT` (istiod, TLS).
    pub fn parse(s: &str, root_ca: PathBuf, token: PathBuf) -> Result<XdsAddress, String> {
        if let Some(path) = s.strip_prefix("unix://").or_else(|| s.strip_prefix("unix:")) {
            if path.is_empty() {
                return Err(format!("{s:?}: unix: needs a socket path"));
            }
            return Ok(XdsAddress::Unix(PathBuf::from(path)));
        }
        let url = if s.contains("://") { s.to_string() } else { format!("https://{s}") };
        let uri: Uri = url.parse().map_err(|e| format!("{s:?} is not an address (unix:PATH, http://HOST:PORT or https://HOST:PORT): {e}"))?;
        if uri.host().is_none() {
            return Err(format!("{s:?} has no host"));
        }
        match uri.scheme_str() {
            Some("http") => Ok(XdsAddress::Http(url)),
            Some("https") => Ok(XdsAddress::Https { url, root_ca, token }),
            other => Err(format!("{s:?}: scheme {other:?} is not unix, http or https")),
        }
    }

    /// Opens a channel (connects now, so errors surface here).
    pub async fn connect(&self) -> Result<Channel, String> {
        match self {
            XdsAddress::Unix(path) => {
                let path = path.clone();
                Endpoint::from_static("http://localhost")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                    }))
                    .await
                    .map_err(|e| format!("{self}: {e}"))
            }
            XdsAddress::Http(url) => Endpoint::from_shared(url.clone()).map_err(|e| e.to_string())?.connect().await.map_err(|e| format!("{self}: {e}")),
            XdsAddress::Https { url, root_ca, .. } => {
                let pem = std::fs::read(root_ca).map_err(|e| format!("root CA {}: {e}", root_ca.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let cert: rustls::pki_types::CertificateDer<'static> = cert.map_err(|e| format!("root CA {}: {e}", root_ca.display()))?;
                    roots.add(cert).map_err(|e| format!("root CA {}: {e}", root_ca.display()))?;
                }
                let mut tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
                tls.alpn_protocols = vec![b"h2".to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
                let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
                let port = uri.port_u16().unwrap_or(443);
                let plain_url = format!("http://{host}:{port}");
                Endpoint::from_shared(plain_url)
                    .map_err(|e| e.to_string())?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let (connector, host) = (connector.clone(), host.clone());
                        async move {
                            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(std::io::Error::other)?;
                            Ok::<_, std::io::Error>(TokioIo::new(connector.connect(name, tcp).await?))
                        }
                    }))
                    .await
                    .map_err(|e| format!("{self}: {e}"))
            }
        }
    }

    /// The `authorization` header value for istiod (read at each connect: the token rotates).
    pub fn bearer(&self) -> Result<Option<String>, String> {
        match self {
            XdsAddress::Https { token, .. } => {
                let t = std::fs::read_to_string(token).map_err(|e| format!("token {}: {e}", token.display()))?;
                Ok(Some(format!("Bearer {}", t.trim())))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_names_bad_ones() {
        let p = |s| XdsAddress::parse(s, "ca.pem".into(), "tok".into());
        assert_eq!(p("unix:./etc/istio/proxy/XDS"), Ok(XdsAddress::Unix("./etc/istio/proxy/XDS".into())));
        assert_eq!(p("http://127.0.0.1:15010"), Ok(XdsAddress::Http("http://127.0.0.1:15010".into())));
        assert!(matches!(p("istiod.istio-system.svc:15012"), Ok(XdsAddress::Https { .. })));
        assert!(p("ftp://x:1").is_err_and(|e| e.contains("ftp")));
        assert!(p("unix:").is_err());
    }
}
