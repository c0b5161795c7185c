//! Command line: `oxidecar run` (daprd's flags are accepted as they are), `oxidecar validate`,
//! `oxidecar wait` and `oxidecar capture`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use oxidecar_runtime_apis::{AppProtocol, RuntimeConfig};

use crate::server::{RunOptions, XdsOptions};

#[derive(Parser, Debug)]
#[command(name = "oxidecar", version, about = "One sidecar for the mesh data plane (Istio) and the application runtime (Dapr).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the sidecar. Without --config it starts from the embedded default (passthrough
    /// listeners on 15001/15006, admin on 127.0.0.1:15000, metrics on 15090 and 15020, health on 15021).
    Run(Box<RunArgs>),
    /// Check a static config file; prints every error (file, path, value) and exits 2 if there is one.
    /// With --envoy-config-dump, translate an Envoy admin config dump instead and report per
    /// resource type what was accepted, ignored and rejected (exit 2 on rejections).
    Validate {
        /// The static YAML config file.
        #[arg(required_unless_present = "envoy_config_dump")]
        file: Option<PathBuf>,
        /// An Envoy `/config_dump` (JSON or YAML, as `istioctl proxy-config all -o json` prints).
        #[arg(long, conflicts_with = "file")]
        envoy_config_dump: Option<PathBuf>,
    },
    /// Wait until the sidecar is ready (exit 0) or the timeout passes (exit 1): a postStart hook
    /// that holds the app container until the proxy serves, like Istio's holdApplicationUntilProxyStarts.
    Wait(crate::wait::WaitArgs),
    /// Capture this network namespace's TCP for the sidecar (nftables, or iptables-restore when
    /// nft is missing; like istio-iptables):
    /// outbound to 15001 and inbound to 15006, except the sidecar's own uid (1337), loopback
    /// traffic and the excluded ports and ranges. Needs CAP_NET_ADMIN in the pod's namespace.
    Capture(crate::capture::CaptureArgs),
    /// Mint a development CA (reused when DIR already holds one) and workload certificates with
    /// SPIFFE IDs, for local runs and tests: DIR/NS.SA/{cert-chain.pem,key.pem,root-cert.pem}.
    DevCa(DevCaArgs),
}

#[derive(clap::Args, Debug)]
pub struct DevCaArgs {
    /// Directory for root-cert.pem, root-key.pem and one subdirectory per workload.
    #[arg(long)]
    pub dir: PathBuf,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// A workload as NAMESPACE/SERVICE_ACCOUNT (repeatable).
    #[arg(long = "workload")]
    pub workloads: Vec<String>,
    /// How long the workload certificates are valid (e.g. 24h, 90m).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub validity: std::time::Duration,
    /// Start the validity this long ago (with a short --validity, mints an expired certificate).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub backdate: std::time::Duration,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Static mesh config (YAML). Edits are applied live; SIGHUP forces a reload.
    #[arg(long, short = 'c', env = "OXIDECAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Worker threads per listener (Envoy's --concurrency).
    #[arg(long, env = "OXIDECAR_CONCURRENCY", default_value_t = default_concurrency())]
    pub concurrency: usize,
    /// Override the admin port (default 15000 from the config).
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// Port of the proxy's own Prometheus endpoint (default 15090 from the config).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// The application's id (daprd's --app-id).
    #[arg(long, env = "APP_ID", default_value = "oxidecar")]
    pub app_id: String,
    /// The port the application listens on (daprd's --app-port).
    #[arg(long, env = "APP_PORT")]
    pub app_port: Option<u16>,
    /// How the sidecar talks to the application (daprd's --app-protocol).
    #[arg(long, default_value = "http")]
    pub app_protocol: AppProtocol,
    /// Runtime gRPC API port on 127.0.0.1 (daprd's --dapr-grpc-port).
    #[arg(long, env = "DAPR_GRPC_PORT", default_value_t = 50001)]
    pub dapr_grpc_port: u16,
    /// Runtime HTTP API port on 127.0.0.1 (daprd's --dapr-http-port).
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,
    /// The address the runtime APIs listen on (daprd's --dapr-listen-addresses). Loopback by
    /// default: only the app in the pod can reach them.
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_listen_address)]
    pub dapr_listen_addresses: IpAddr,
    /// Folders of Dapr Component YAML files (daprd's --resources-path; may repeat).
    #[arg(long)]
    pub resources_path: Vec<PathBuf>,
    /// debug, info, warn or error (daprd's --log-level). RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Write logs as JSON lines (daprd's --log-as-json).
    #[arg(long)]
    pub log_as_json: bool,
    /// When set, every runtime API call must carry it in the `dapr-api-token` header.
    #[arg(long, env = "DAPR_API_TOKEN", hide_env_values = true)]
    pub dapr_api_token: Option<String>,
    /// Take the mesh config from an xDS control plane: `unix:PATH` (pilot-agent's
    /// `./etc/istio/proxy/XDS`), `https://istiod.istio-system.svc:15012` (TLS, verified against
    /// --xds-root-ca, with the --xds-token bearer token) or `http://HOST:PORT` (plaintext). Without
    /// it, PILOT_ADDRESS (istiod `HOST:PORT`, TLS) is used when set. --config then only supplies
    /// what xDS does not (admin ports, node, lanes) and the listener sockets: a listener there
    /// binds the xDS listener of the same name (`virtualOutbound`, `virtualInbound`).
    #[arg(long, env = "XDS_ADDRESS")]
    pub xds_address: Option<String>,
    /// Use state-of-the-world xDS instead of delta xDS.
    #[arg(long)]
    pub xds_sotw: bool,
    /// pilot-agent's SDS socket for the workload certificate (`unix:./var/run/secrets/workload-spiffe-uds/socket`);
    /// without it the secrets `default` and `ROOTCA` are requested over the xDS stream.
    #[arg(long, env = "OXIDECAR_SDS_ADDRESS")]
    pub sds_address: Option<String>,
    /// CA certificate that signed istiod's serving certificate (https xDS addresses).
    #[arg(long, env = "XDS_ROOT_CA", default_value = oxidecar_xds::ads::DEFAULT_ROOT_CA_PATH)]
    pub xds_root_ca: PathBuf,
    /// Service-account token sent to istiod as a bearer token (https xDS addresses).
    #[arg(long, env = "XDS_TOKEN", default_value = oxidecar_xds::ads::DEFAULT_TOKEN_PATH)]
    pub xds_token: PathBuf,
}

/// One IP address (`[::1]` or `::1` for IPv6). daprd accepts a list; one address is what we serve.
fn parse_listen_address(s: &str) -> Result<IpAddr, String> {
    if s.contains(',') {
        return Err(format!("{s:?}: oxidecar listens on one address; give one of them"));
    }
    s.trim_start_matches('[').trim_end_matches(']').parse().map_err(|e| format!("{s:?} is not an IP address: {e}"))
}

fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl RunArgs {
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            config: self.config.clone(),
            concurrency: self.concurrency,
            admin_port: self.admin_port,
            metrics_port: self.metrics_port,
            runtime: RuntimeConfig {
                app_id: self.app_id.clone(),
                app_port: self.app_port,
                app_protocol: self.app_protocol,
                grpc_addr: SocketAddr::new(self.dapr_listen_addresses, self.dapr_grpc_port),
                http_addr: SocketAddr::new(self.dapr_listen_addresses, self.dapr_http_port),
                resources_paths: self.resources_path.clone(),
                api_token: self.dapr_api_token.clone().filter(|t| !t.is_empty()),
                tracer: None,
                lanes: None,
            },
            xds: self.xds_address.clone().or_else(|| std::env::var("PILOT_ADDRESS").ok().filter(|a| !a.is_empty())).map(|address| XdsOptions {
                address,
                sds_address: self.sds_address.clone(),
                delta: !self.xds_sotw,
                root_ca: self.xds_root_ca.clone(),
                token: self.xds_token.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_accepts_one_ip_and_names_bad_input() {
        assert_eq!(parse_listen_address("127.0.0.1"), Ok(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(parse_listen_address("[::1]"), Ok(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
        assert!(parse_listen_address("127.0.0.1,[::1]").is_err_and(|e| e.contains("one address")));
        assert!(parse_listen_address("localhost").is_err_and(|e| e.contains("\"localhost\" is not an IP address")));
    }

    #[test]
    fn daprd_flags_parse_into_the_runtime_config() {
        let cli = Cli::try_parse_from([
            "oxidecar", "run", "--app-id", "orders", "--app-port", "8080", "--app-protocol", "grpc",
            "--dapr-grpc-port", "50002", "--dapr-http-port", "3501", "--resources-path", "./components",
            "--log-level", "debug", "--metrics-port", "9090",
        ])
        .expect("daprd flags");
        let Command::Run(args) = cli.command else { panic!("run") };
        let opts = args.run_options();
        assert_eq!(opts.runtime.app_id, "orders");
        assert_eq!(opts.runtime.app_port, Some(8080));
        assert_eq!(opts.runtime.app_protocol, AppProtocol::Grpc);
        assert_eq!(opts.runtime.grpc_addr, "127.0.0.1:50002".parse().expect("addr"));
        assert_eq!(opts.runtime.http_addr, "127.0.0.1:3501".parse().expect("addr"));
        assert_eq!(opts.metrics_port, Some(9090));
        let bad = Cli::try_parse_from(["oxidecar", "run", "--app-protocol", "https"]).expect_err("unsupported");
        assert!(bad.to_string().contains("https"), "{bad}");
    }
}
