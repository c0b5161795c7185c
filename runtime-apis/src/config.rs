//! What the runtime needs from the command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Dapr's default gRPC API address.
pub const DEFAULT_GRPC_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50001);
/// Dapr's default HTTP API address.
pub const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3500);

/// How the sidecar talks to the app (daprd's `--app-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppProtocol {
    #[default]
    Http,
    Grpc,
}

impl AppProtocol {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// An `--app-protocol` value we do not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--app-protocol {0:?} is not supported (use http or grpc)")]
pub struct UnsupportedAppProtocol(pub String);

impl FromStr for AppProtocol {
    type Err = UnsupportedAppProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Self::Http),
            "grpc" => Ok(Self::Grpc),
            other => Err(UnsupportedAppProtocol(other.to_string())),
        }
    }
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub app_id: String,
    pub app_port: Option<u16>,
    pub app_protocol: AppProtocol,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// `--resources-path` (may repeat); empty means the embedded in-memory defaults.
    pub resources_paths: Vec<PathBuf>,
    /// `DAPR_API_TOKEN`: when set, every call must carry it in `dapr-api-token`.
    pub api_token: Option<String>,
    /// Where runtime API calls are reported for tracing (the proxy's exporter); none: untraced.
    pub tracer: Option<std::sync::Arc<dyn crate::tracer::CallTracer>>,
    /// How lanes are read and where this workload's lane is (the proxy's); none: pub/sub ignores lanes.
    pub lanes: Option<std::sync::Arc<dyn crate::lanes::LaneResolver>>,
}

impl RuntimeConfig {
    /// Defaults for `app_id`: no app port, HTTP app, Dapr's ports, embedded components, no token.
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_port: None,
            app_protocol: AppProtocol::Http,
            grpc_addr: DEFAULT_GRPC_ADDR,
            http_addr: DEFAULT_HTTP_ADDR,
            resources_paths: Vec::new(),
            api_token: None,
            tracer: None,
            lanes: None,
        }
    }
}
