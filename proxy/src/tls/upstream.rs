//! Per-cluster mesh mTLS: the SNI, expected peer identities and ALPN of a cluster, and the
//! connectors built from them, cached until the workload identity rotates.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use oxidecar_xds::model::{ISTIO_ALPN, UpstreamProtocol, UpstreamTls};
use rustls::pki_types::ServerName;

use super::TlsContext;
use super::connect::MeshConnect;

/// What the connection will carry; Istio tells its peer through ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrying {
    Http1 = 0,
    H2 = 1,
    Tcp = 2,
}

/// Server name used when a cluster configures none.
const DEFAULT_SNI: &str = "oxidecar.mesh";

pub struct ClusterTls {
    pub sni: ServerName<'static>,
    pub expected: Vec<String>,
    alpn: [Vec<&'static str>; 3],
    configured_alpn: Vec<String>,
    connectors: [ArcSwapOption<MeshConnect>; 3],
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").field("sni", &self.sni).field("expected", &self.expected).finish()
    }
}

impl ClusterTls {
    pub fn new(settings: &UpstreamTls, _protocol: UpstreamProtocol) -> Self {
        let sni = settings
            .sni
            .clone()
            .and_then(|s| ServerName::try_from(s).ok())
            .unwrap_or_else(|| ServerName::try_from(DEFAULT_SNI).unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())));
        Self {
            sni,
            expected: settings.subject_alt_names.clone(),
            alpn: [vec!["istio-http/1.1", "http/1.1"], vec!["istio-h2", "h2"], ISTIO_ALPN.to_vec()],
            configured_alpn: settings.alpn.clone(),
            connectors: Default::default(),
        }
    }

    pub fn sni_str(&self) -> &str {
        match &self.sni {
            ServerName::DnsName(d) => d.as_ref(),
            _ => DEFAULT_SNI,
        }
    }

    /// The connector for `carrying`, rebuilt when the identity has rotated since it was made.
    pub fn connector(&self, tls: &Arc<TlsContext>, carrying: Carrying, connect_timeout: Duration) -> Result<Arc<MeshConnect>, String> {
        let slot = &self.connectors[carrying as usize];
        let generation = tls.generation();
        if let Some(c) = slot.load_full().filter(|c| c.generation == generation && c.connect_timeout == connect_timeout) {
            return Ok(c);
        }
        let alpn: Vec<&str> = if self.configured_alpn.is_empty() {
            self.alpn[carrying as usize].clone()
        } else {
            self.configured_alpn.iter().map(String::as_str).collect()
        };
        let config = tls.client_config(&self.expected, &alpn)?;
        let c = Arc::new(MeshConnect { tls: tls.clone(), config, sni: self.sni.clone(), connect_timeout, generation });
        slot.store(Some(c.clone()));
        Ok(c)
    }
}
