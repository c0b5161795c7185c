//! The fallback when `nft` is not installed: the same rules as [`super::rules`] for
//! `iptables-restore` / `ip6tables-restore` (the nat table), in chains of our own that the
//! built-in OUTPUT and PREROUTING chains jump to. Unlike the nft table this is applied per family
//! and not atomically: the old chains are removed first, then the new ones restored.

use std::fmt::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;

use super::{CaptureError, Plan, Scope};

/// Outbound decisions (jumped to from OUTPUT).
pub const OUTPUT_CHAIN: &str = "OXIDECAR_OUTPUT";
/// Inbound decisions (jumped to from PREROUTING, and for the sidecar calling its own pod).
pub const INBOUND_CHAIN: &str = "OXIDECAR_INBOUND";
/// Deleting our jump rule again and again must stop somewhere.
const MAX_JUMP_RULES: usize = 64;

/// One address family's tools and loopback range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!((self, net), (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_)))
    }
}

/// The `iptables-restore --noflush` input for `family`.
pub fn restore_script(plan: &Plan, family: Family) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        let _ = writeln!(s, "{l}");
    };
    line("*nat".into());
    line(format!(":{OUTPUT_CHAIN} - [0:0]"));
    line(format!(":{INBOUND_CHAIN} - [0:0]"));
    line(format!("-A OUTPUT -p tcp -j {OUTPUT_CHAIN}"));
    line(format!("-A PREROUTING -p tcp -j {INBOUND_CHAIN}"));
    // Inbound: excluded ports stay, included ones go to the inbound listener.
    let inbound_on = plan.include_inbound_ports != Scope::Only(Vec::new());
    for port in &plan.exclude_inbound_ports {
        line(format!("-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN"));
    }
    match &plan.include_inbound_ports {
        Scope::All => line(format!("-A {INBOUND_CHAIN} -p tcp -j REDIRECT --to-ports {}", plan.inbound_port)),
        Scope::Only(ports) => {
            for port in ports {
                line(format!("-A {INBOUND_CHAIN} -p tcp --dport {port} -j REDIRECT --to-ports {}", plan.inbound_port));
            }
        }
    }
    // Outbound, in the same order as the nft ruleset.
    if inbound_on {
        for uid in &plan.proxy_uids {
            line(format!("-A {OUTPUT_CHAIN} -o lo ! -d {} -m owner --uid-owner {uid} -j {INBOUND_CHAIN}", family.loopback()));
        }
    }
    line(format!("-A {OUTPUT_CHAIN} -o lo -j RETURN"));
    for uid in &plan.proxy_uids {
        line(format!("-A {OUTPUT_CHAIN} -m owner --uid-owner {uid} -j RETURN"));
    }
    for gid in &plan.proxy_gids {
        line(format!("-A {OUTPUT_CHAIN} -m owner --gid-owner {gid} -j RETURN"));
    }
    for port in &plan.exclude_outbound_ports {
        line(format!("-A {OUTPUT_CHAIN} -p tcp --dport {port} -j RETURN"));
    }
    for net in plan.exclude_outbound.iter().filter(|n| family.holds(n)) {
        line(format!("-A {OUTPUT_CHAIN} -d {net} -j RETURN"));
    }
    let destinations: Vec<String> = match &plan.include_outbound {
        Scope::All => vec![String::new()],
        Scope::Only(nets) => nets.iter().filter(|n| family.holds(n)).map(|n| format!(" -d {n}")).collect(),
    };
    let ports: Vec<String> = match &plan.include_outbound_ports {
        Scope::All => vec![String::new()],
        Scope::Only(ports) => ports.iter().map(|p| format!(" --dport {p}")).collect(),
    };
    for d in &destinations {
        for p in &ports {
            line(format!("-A {OUTPUT_CHAIN} -p tcp{d}{p} -j REDIRECT --to-ports {}", plan.outbound_port));
        }
    }
    line("COMMIT".into());
    s
}

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Removes our jump rules and chains from both families (whatever is there; absent is fine).
pub fn cleanup() -> Result<(), CaptureError> {
    for family in [Family::V4, Family::V6] {
        let tool = family.iptables();
        for (builtin, chain) in [("OUTPUT", OUTPUT_CHAIN), ("PREROUTING", INBOUND_CHAIN)] {
            let mut removed = 0;
            while removed < MAX_JUMP_RULES && quiet(tool, &["-t", "nat", "-D", builtin, "-p", "tcp", "-j", chain]) {
                removed += 1;
            }
        }
        for chain in [OUTPUT_CHAIN, INBOUND_CHAIN] {
            if quiet(tool, &["-t", "nat", "-F", chain]) && !quiet(tool, &["-t", "nat", "-X", chain]) {
                return Err(CaptureError::InUse { chain: format!("{tool} nat {chain}") });
            }
        }
    }
    Ok(())
}

/// Replaces our chains in both families with the plan's rules.
pub fn apply(plan: &Plan) -> Result<(), CaptureError> {
    cleanup()?;
    for family in [Family::V4, Family::V6] {
        super::feed(&format!("{}-restore", family.iptables()), &["--noflush"], &restore_script(plan, family))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::rules::tests::plan;

    #[test]
    fn mirrors_the_nft_rules_per_family() {
        let p = plan(&["--exclude-outbound-ports", "22", "--exclude-outbound-ip-ranges", "10.0.0.0/8,fd00::/8", "-g", "1337"]);
        let v4 = restore_script(&p, Family::V4);
        let lines: Vec<&str> = v4.lines().collect();
        assert_eq!(
            lines,
            [
                "*nat",
                ":OXIDECAR_OUTPUT - [0:0]",
                ":OXIDECAR_INBOUND - [0:0]",
                "-A OUTPUT -p tcp -j OXIDECAR_OUTPUT",
                "-A PREROUTING -p tcp -j OXIDECAR_INBOUND",
                "-A OXIDECAR_INBOUND -p tcp --dport 15020 -j RETURN",
                "-A OXIDECAR_INBOUND -p tcp --dport 15021 -j RETURN",
                "-A OXIDECAR_INBOUND -p tcp --dport 15090 -j RETURN",
                "-A OXIDECAR_INBOUND -p tcp -j REDIRECT --to-ports 15006",
                "-A OXIDECAR_OUTPUT -o lo ! -d 127.0.0.0/8 -m owner --uid-owner 1337 -j OXIDECAR_INBOUND",
                "-A OXIDECAR_OUTPUT -o lo -j RETURN",
                "-A OXIDECAR_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "-A OXIDECAR_OUTPUT -m owner --gid-owner 1337 -j RETURN",
                "-A OXIDECAR_OUTPUT -p tcp --dport 22 -j RETURN",
                "-A OXIDECAR_OUTPUT -d 10.0.0.0/8 -j RETURN",
                "-A OXIDECAR_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
                "COMMIT",
            ]
        );
        let v6 = restore_script(&p, Family::V6);
        assert!(v6.contains("-A OXIDECAR_OUTPUT -o lo ! -d ::1/128 -m owner --uid-owner 1337 -j OXIDECAR_INBOUND"), "{v6}");
        assert!(v6.contains("-A OXIDECAR_OUTPUT -d fd00::/8 -j RETURN") && !v6.contains("10.0.0.0/8"), "{v6}");
    }

    #[test]
    fn includes_expand_to_one_rule_per_range_and_port() {
        let p = plan(&["-i", "10.0.0.0/8,192.168.0.0/16", "-q", "80,443", "-b", "8080"]);
        let v4 = restore_script(&p, Family::V4);
        let redirects: Vec<&str> = v4.lines().filter(|l| l.contains("--to-ports 15001")).collect();
        assert_eq!(redirects.len(), 4, "{v4}");
        assert!(v4.contains("-A OXIDECAR_OUTPUT -p tcp -d 192.168.0.0/16 --dport 443 -j REDIRECT --to-ports 15001"), "{v4}");
        assert!(v4.contains("-A OXIDECAR_INBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 15006"), "{v4}");
        // No IPv6 range included: IPv6 is not captured outbound.
        assert!(!restore_script(&p, Family::V6).contains("--to-ports 15001"));
    }
}
