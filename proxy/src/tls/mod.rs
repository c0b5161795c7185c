//! Mesh mTLS on rustls with the aws-lc-rs provider.
//!
//! One [`TlsContext`] per process holds the workload identity (swapped whole on rotation) and the
//! TLS configs built from it: one client config per (identity, expected peers, ALPN) and one server
//! config per (identity, client-certificate requirement, ALPN), cached and reused by every
//! connection, so session resumption works and no handshake pays for building a config.
//!
//! The crypto provider is the seam for acceleration: [`provider`] picks the cipher-suite order
//! from the CPU (AES-GCM first with AES-NI, ChaCha20 first without), and a provider backed by an
//! offload engine would be plugged in there (see docs/TLS.md).

pub mod accept;
pub mod connect;
pub mod identity;
pub mod ktls;
pub mod socket;
pub mod upstream;
pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, StoresServerSessions, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use identity::{IdentityError, WorkloadCerts};

/// ALPN a terminating chain accepts when its config names none: HTTP first, then Istio's values.
pub const DEFAULT_SERVER_ALPN: [&str; 6] = ["h2", "http/1.1", "istio-peer-exchange", "istio", "istio-h2", "istio-http/1.1"];
/// Sessions kept for resumption, server side.
const SERVER_SESSION_CACHE: usize = 8192;

/// Whether the CPU has AES and carry-less multiply instructions (AES-GCM in hardware).
pub fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// aws-lc-rs with the cipher-suite order this CPU is fastest at.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
    let aes = [cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384];
    let chacha = [cs::TLS13_CHACHA20_POLY1305_SHA256, cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256];
    let cipher_suites = if cpu_has_aes() { aes.into_iter().chain(chacha).collect() } else { chacha.into_iter().chain(aes).collect() };
    Arc::new(CryptoProvider { cipher_suites, ..default_provider() })
}

/// The identity in force, with what every config shares.
struct Material {
    certs: WorkloadCerts,
    roots: Arc<RootCertStore>,
    generation: u64,
}

#[derive(Hash, PartialEq, Eq)]
struct ClientKey {
    generation: u64,
    expected: Vec<String>,
    alpn: Vec<Vec<u8>>,
}

#[derive(Hash, PartialEq, Eq)]
struct ServerKey {
    generation: u64,
    require_client_cert: bool,
    alpn: Vec<Vec<u8>>,
}

/// TLS counters, registered with the proxy's metrics.
#[derive(Clone)]
pub struct TlsMetrics {
    /// `side` client|server, `kind` full|resumed.
    pub handshakes: IntCounterVec,
    /// `side`, `reason`.
    pub handshake_errors: IntCounterVec,
    /// Seconds until the workload certificate expires.
    pub cert_expiry_seconds: IntGauge,
    /// Identity updates by `result` (applied|rejected).
    pub identity_updates: IntCounterVec,
    /// 1 for the active record-layer path: `kernel` (kTLS) or `userspace`.
    pub record_path: IntGaugeVec,
    /// 1 when the kernel offers the `tls` upper-layer protocol.
    pub kernel_tls_available: IntGauge,
}

impl TlsMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let cert_expiry_seconds = IntGauge::new("oxidecar_tls_cert_expiry_seconds", "Seconds until the workload certificate expires")?;
        registry.register(Box::new(cert_expiry_seconds.clone()))?;
        let record_path = IntGaugeVec::new(Opts::new("oxidecar_tls_record_path", "1 for the TLS record-layer path in use: kernel (kTLS) or userspace"), &["path"])?;
        registry.register(Box::new(record_path.clone()))?;
        let kernel_tls_available = IntGauge::new("oxidecar_tls_kernel_offload_available", "1 when the kernel offers kTLS (the tls upper-layer protocol)")?;
        registry.register(Box::new(kernel_tls_available.clone()))?;
        Ok(Self {
            handshakes: counter("oxidecar_tls_handshakes_total", "Completed TLS handshakes by side and kind (full or resumed)", &["side", "kind"])?,
            handshake_errors: counter("oxidecar_tls_handshake_errors_total", "Failed TLS handshakes by side and reason", &["side", "reason"])?,
            cert_expiry_seconds,
            identity_updates: counter("oxidecar_tls_identity_updates_total", "Workload identity updates by result", &["result"])?,
            record_path,
            kernel_tls_available,
        })
    }
}

/// The process's TLS state: identity, cached configs, counters.
pub struct TlsContext {
    material: ArcSwapOption<Material>,
    generation: AtomicU64,
    client_configs: Mutex<HashMap<ClientKey, Arc<ClientConfig>>>,
    server_configs: Mutex<HashMap<ServerKey, Arc<ServerConfig>>>,
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
    provider: Arc<CryptoProvider>,
    pub metrics: TlsMetrics,
}

impl TlsContext {
    pub fn new(metrics: TlsMetrics) -> Result<Arc<Self>, rustls::Error> {
        let provider = provider();
        let sessions = rustls::server::ServerSessionMemoryCache::new(SERVER_SESSION_CACHE);
        let tickets = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let ktls = ktls::Support::detect();
        // The record layer runs in rustls. The kernel hand-off (ktls::offload) is implemented and
        // tested, but not engaged yet: kTLS needs post-handshake messages (TLS 1.3 session
        // tickets) read as control messages, which the copy loops do not do yet.
        metrics.record_path.with_label_values(&["userspace"]).set(1);
        metrics.record_path.with_label_values(&["kernel"]).set(0);
        metrics.kernel_tls_available.set(i64::from(ktls.available()));
        match &ktls {
            ktls::Support::Available => tracing::info!(path = "userspace", "TLS record layer: user space (rustls); the kernel offers kTLS but oxidecar does not engage it yet"),
            ktls::Support::Unavailable(why) => tracing::info!(path = "userspace", reason = %why, "TLS record layer: user space (rustls); kernel TLS unavailable"),
        }
        Ok(Arc::new(Self {
            material: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            client_configs: Mutex::default(),
            server_configs: Mutex::default(),
            sessions,
            tickets,
            provider,
            metrics,
        }))
    }

    /// Installs a new identity. In-flight and pooled connections keep the old one; new
    /// handshakes use the new one. A bad identity is refused and the current one stays.
    pub fn set_identity(&self, certs: WorkloadCerts) -> Result<(), IdentityError> {
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs.roots.iter().cloned());
        if added == 0 {
            return Err(IdentityError::Invalid { what: "trust_bundle", problem: format!("none of its {ignored} certificates is usable as a CA") });
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let expires_in = certs.not_after.duration_since(std::time::SystemTime::now()).map_or(0, |d| d.as_secs());
        self.metrics.cert_expiry_seconds.set(i64::try_from(expires_in).unwrap_or(i64::MAX));
        if expires_in == 0 {
            tracing::warn!(spiffe_id = %certs.spiffe_id, "the workload certificate has expired; peers will refuse it");
        }
        tracing::info!(spiffe_id = %certs.spiffe_id, generation, "workload identity installed");
        self.material.store(Some(Arc::new(Material { certs, roots: Arc::new(roots), generation })));
        // Configs of older generations are no longer reachable; drop them.
        if let Ok(mut m) = self.client_configs.lock() {
            m.retain(|k, _| k.generation == generation);
        }
        if let Ok(mut m) = self.server_configs.lock() {
            m.retain(|k, _| k.generation == generation);
        }
        self.metrics.identity_updates.with_label_values(&["applied"]).inc();
        Ok(())
    }

    /// Our own SPIFFE ID, once an identity is installed.
    pub fn spiffe_id(&self) -> Option<String> {
        self.material.load().as_ref().map(|m| m.certs.spiffe_id.clone())
    }

    /// Identity generation in force (0: none yet). Part of upstream pool keys, so a rotation
    /// moves new requests to connections made with the new certificate.
    pub fn generation(&self) -> u64 {
        self.material.load().as_ref().map_or(0, |m| m.generation)
    }

    /// The client config for peers with one of `expected` identities, offering `alpn`.
    pub fn client_config(&self, expected: &[String], alpn: &[&str]) -> Result<Arc<ClientConfig>, String> {
        let material = self.material.load_full().ok_or("no workload identity yet (certificates not loaded)")?;
        let key = ClientKey { generation: material.generation, expected: expected.to_vec(), alpn: alpn.iter().map(|a| a.as_bytes().to_vec()).collect() };
        let mut cache = self.client_configs.lock().map_err(|_| "TLS config cache poisoned")?;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(material.roots.clone(), self.provider.clone()).build().map_err(|e| e.to_string())?;
        let verifier = Arc::new(verify::SpiffeServerVerifier::new(webpki, expected.to_vec().into()));
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(material.certs.chain.clone(), material.certs.key.clone_key())
            .map_err(|e| format!("workload certificate and key: {e}"))?;
        config.alpn_protocols = key.alpn.clone();
        let config = Arc::new(config);
        cache.insert(key, config.clone());
        Ok(config)
    }

    /// The server config for a terminating chain.
    pub fn server_config(&self, require_client_cert: bool, alpn: &[String]) -> Result<Arc<ServerConfig>, String> {
        let material = self.material.load_full().ok_or("no workload identity yet (certificates not loaded)")?;
        let alpn: Vec<Vec<u8>> = if alpn.is_empty() {
            DEFAULT_SERVER_ALPN.iter().map(|a| a.as_bytes().to_vec()).collect()
        } else {
            alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
        };
        let key = ServerKey { generation: material.generation, require_client_cert, alpn };
        let mut cache = self.server_configs.lock().map_err(|_| "TLS config cache poisoned")?;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(material.roots.clone(), self.provider.clone());
        let verifier = if require_client_cert { verifier.build() } else { verifier.allow_unauthenticated().build() }.map_err(|e| e.to_string())?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(material.certs.chain.clone(), material.certs.key.clone_key())
            .map_err(|e| format!("workload certificate and key: {e}"))?;
        config.alpn_protocols = key.alpn.clone();
        config.session_storage = self.sessions.clone();
        config.ticketer = self.tickets.clone();
        config.send_tls13_tickets = 2;
        let config = Arc::new(config);
        cache.insert(key, config.clone());
        Ok(config)
    }
}
