//! `oxidecar capture`: traffic capture for a pod, the nftables counterpart of istio-iptables.
//!
//! Everything lives in one table, `inet oxidecar`, covering IPv4 and IPv6 together. Applying
//! replaces that table in a single nft transaction (a half-applied ruleset never exists);
//! `--cleanup` deletes that table and nothing else. Without `nft`, the same rules go through
//! iptables-restore into chains of our own ([`iptables`]).

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use ipnet::IpNet;

mod iptables;
mod rules;

pub use rules::ruleset;

/// The nftables table that holds every rule capture adds.
pub const TABLE: &str = "oxidecar";
/// Istio's proxy uid: the sidecar's own connections are never captured.
pub const DEFAULT_PROXY_UID: u32 = 1337;
/// Ports never redirected inbound: merged metrics (15020), health (15021), proxy metrics (15090).
pub const ALWAYS_EXCLUDED_INBOUND: [u16; 3] = [15020, 15021, 15090];

/// Flags of `oxidecar capture`. Long names follow Istio's `traffic.sidecar.istio.io/*` annotations,
/// short ones follow istio-iptables.
#[derive(clap::Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Port of the outbound listener that captured outbound TCP is redirected to.
    #[arg(short = 'p', long = "proxy-port", visible_alias = "envoy-port", default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port of the inbound listener that captured inbound TCP is redirected to.
    #[arg(short = 'z', long = "inbound-capture-port", default_value_t = 15006)]
    pub inbound_port: u16,
    /// Connections opened by this uid (the sidecar's) are not captured. May repeat or be comma-separated.
    #[arg(short = 'u', long = "proxy-uid", value_delimiter = ',', default_values_t = [DEFAULT_PROXY_UID])]
    pub proxy_uid: Vec<u32>,
    /// Connections opened by this gid are not captured either. May repeat or be comma-separated.
    #[arg(short = 'g', long = "proxy-gid", value_delimiter = ',')]
    pub proxy_gid: Vec<u32>,
    /// Destination CIDRs (IPv4 or IPv6) whose outbound traffic is captured; `*` for all, empty for none.
    #[arg(short = 'i', long = "include-outbound-ip-ranges", default_value = "*")]
    pub include_outbound_ip_ranges: String,
    /// Destination CIDRs whose outbound traffic goes out directly.
    #[arg(short = 'x', long = "exclude-outbound-ip-ranges", default_value = "")]
    pub exclude_outbound_ip_ranges: String,
    /// Only these outbound destination ports are captured (default: every port).
    #[arg(short = 'q', long = "include-outbound-ports", default_value = "*")]
    pub include_outbound_ports: String,
    /// Outbound destination ports that go out directly.
    #[arg(short = 'o', long = "exclude-outbound-ports", default_value = "")]
    pub exclude_outbound_ports: String,
    /// Inbound ports captured; `*` for all, empty for no inbound capture.
    #[arg(short = 'b', long = "include-inbound-ports", default_value = "*")]
    pub include_inbound_ports: String,
    /// Inbound ports reaching the pod directly (15020, 15021 and 15090 always do).
    #[arg(short = 'd', long = "exclude-inbound-ports", default_value = "")]
    pub exclude_inbound_ports: String,
    /// nft (one atomic table), iptables (iptables-restore and ip6tables-restore into chains of
    /// our own), or auto: nft when installed, else iptables.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Print the ruleset instead of applying it.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove what capture added (the nft table, or the iptables chains and jumps), then exit.
    #[arg(long)]
    pub cleanup: bool,
}

/// Which tool installs the rules.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Nft,
    Iptables,
}

impl Backend {
    /// `auto` resolved by what is installed (nft when neither is, so the error names nftables).
    fn resolve(self) -> Backend {
        match self {
            Backend::Auto if !on_path("nft") && on_path("iptables-restore") => Backend::Iptables,
            Backend::Auto => Backend::Nft,
            other => other,
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A list that may mean "everything".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope<T> {
    All,
    Only(Vec<T>),
}

/// What capture does, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub proxy_uids: Vec<u32>,
    pub proxy_gids: Vec<u32>,
    pub include_outbound: Scope<IpNet>,
    pub exclude_outbound: Vec<IpNet>,
    pub include_outbound_ports: Scope<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub include_inbound_ports: Scope<u16>,
    /// Includes [`ALWAYS_EXCLUDED_INBOUND`].
    pub exclude_inbound_ports: Vec<u16>,
}

/// A bad flag value, named.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("--{flag}: {value:?}: {reason}")]
    Flag { flag: &'static str, value: String, reason: String },
    #[error("cannot run `{program}`: {source} (install nftables, or iptables for --backend iptables)")]
    Spawn { program: String, source: std::io::Error },
    #[error("{chain}: still referenced by a rule capture did not add; remove that rule first")]
    InUse { chain: String },
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed { program: String, status: std::process::ExitStatus, stderr: String },
}

fn items(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|i| !i.is_empty())
}

fn ports(flag: &'static str, s: &str) -> Result<Vec<u16>, CaptureError> {
    let mut out = Vec::new();
    for item in items(s) {
        match item.parse::<u16>() {
            Ok(p) if p != 0 => out.push(p),
            _ => return Err(CaptureError::Flag { flag, value: item.into(), reason: "not a port (1-65535)".into() }),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn scope_ports(flag: &'static str, s: &str) -> Result<Scope<u16>, CaptureError> {
    if s.trim() == "*" { Ok(Scope::All) } else { ports(flag, s).map(Scope::Only) }
}

/// CIDRs, or bare addresses (a /32 or /128). Host bits are cleared.
fn cidrs(flag: &'static str, s: &str) -> Result<Vec<IpNet>, CaptureError> {
    let mut out = Vec::new();
    for item in items(s) {
        let net = match item.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => match item.parse::<IpAddr>() {
                Ok(a) => IpNet::from(a),
                Err(_) => return Err(CaptureError::Flag { flag, value: item.into(), reason: "not a CIDR or IP address".into() }),
            },
        };
        out.push(net);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl CaptureArgs {
    pub fn plan(&self) -> Result<Plan, CaptureError> {
        if self.outbound_port == 0 || self.inbound_port == 0 {
            let (flag, v) = if self.outbound_port == 0 { ("proxy-port", 0) } else { ("inbound-capture-port", 0) };
            return Err(CaptureError::Flag { flag, value: v.to_string(), reason: "not a port (1-65535)".into() });
        }
        let include_outbound = if self.include_outbound_ip_ranges.trim() == "*" {
            Scope::All
        } else {
            Scope::Only(cidrs("include-outbound-ip-ranges", &self.include_outbound_ip_ranges)?)
        };
        let mut exclude_inbound_ports = ports("exclude-inbound-ports", &self.exclude_inbound_ports)?;
        exclude_inbound_ports.extend(ALWAYS_EXCLUDED_INBOUND);
        exclude_inbound_ports.sort_unstable();
        exclude_inbound_ports.dedup();
        let mut uids = self.proxy_uid.clone();
        uids.sort_unstable();
        uids.dedup();
        let mut gids = self.proxy_gid.clone();
        gids.sort_unstable();
        gids.dedup();
        Ok(Plan {
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            proxy_uids: uids,
            proxy_gids: gids,
            include_outbound,
            exclude_outbound: cidrs("exclude-outbound-ip-ranges", &self.exclude_outbound_ip_ranges)?,
            include_outbound_ports: scope_ports("include-outbound-ports", &self.include_outbound_ports)?,
            exclude_outbound_ports: ports("exclude-outbound-ports", &self.exclude_outbound_ports)?,
            include_inbound_ports: scope_ports("include-inbound-ports", &self.include_inbound_ports)?,
            exclude_inbound_ports,
        })
    }
}

/// Removes the table if it exists, in one transaction (adding an empty table first makes the
/// delete succeed when there is nothing to remove).
pub fn cleanup_script() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

/// Feeds `script` to `program args...` on stdin.
fn feed(program: &str, args: &[&str], script: &str) -> Result<(), CaptureError> {
    let spawn_err = |source| CaptureError::Spawn { program: program.to_owned(), source };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CaptureError::Failed { program: program.to_owned(), status: out.status, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

/// What `--dry-run` prints for `backend`.
fn describe(backend: Backend, plan: Option<&Plan>) -> String {
    match (backend, plan) {
        (Backend::Iptables, None) => format!(
            "# for iptables and ip6tables: delete the jumps to {out} and {inb}, then
-t nat -F {out}
-t nat -X {out}
-t nat -F {inb}
-t nat -X {inb}
",
            out = iptables::OUTPUT_CHAIN,
            inb = iptables::INBOUND_CHAIN
        ),
        (Backend::Iptables, Some(plan)) => format!(
            "# iptables-restore --noflush
{}# ip6tables-restore --noflush
{}",
            iptables::restore_script(plan, iptables::Family::V4),
            iptables::restore_script(plan, iptables::Family::V6)
        ),
        (_, None) => cleanup_script(),
        (_, Some(plan)) => format!("{}{}", cleanup_script(), ruleset(plan)),
    }
}

/// Runs `oxidecar capture`: prints, applies or removes the rules. Returns the process exit code.
pub fn run(args: &CaptureArgs) -> u8 {
    let plan = if args.cleanup {
        None
    } else {
        match args.plan() {
            Ok(plan) => Some(plan),
            Err(e) => {
                eprintln!("oxidecar capture: {e}");
                return 2;
            }
        }
    };
    let backend = args.backend.resolve();
    if args.dry_run {
        print!("{}", describe(backend, plan.as_ref()));
        return 0;
    }
    let result = match (backend, &plan) {
        (Backend::Iptables, None) => iptables::cleanup(),
        (Backend::Iptables, Some(plan)) => iptables::apply(plan),
        (_, plan) => feed("nft", &["-f", "-"], &describe(Backend::Nft, plan.as_ref())),
    };
    let what = match (backend, plan.is_some()) {
        (Backend::Iptables, true) => "iptables chains applied".to_owned(),
        (Backend::Iptables, false) => "iptables chains removed".to_owned(),
        (_, true) => format!("table inet {TABLE} applied"),
        (_, false) => format!("table inet {TABLE} removed"),
    };
    match result {
        Ok(()) => {
            eprintln!("oxidecar capture: {what}");
            0
        }
        Err(e) => {
            eprintln!("oxidecar capture: {e}");
            1
        }
    }
}
