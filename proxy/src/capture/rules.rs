//! The nftables ruleset for a capture [`Plan`]: two NAT chains in one `inet` table.
//!
//! output (connections this pod opens), first match wins:
//!  1. not TCP: untouched;
//!  2. the sidecar reaching this pod's own address over loopback (not 127.0.0.0/8 or ::1): to the
//!     inbound listener, so a call to the pod's own service passes its inbound policy;
//!  3. anything else over loopback (the app talking to itself or to the sidecar): untouched;
//!  4. the sidecar's uids/gids: untouched (its upstream connections go out directly, no loop);
//!  5. excluded ports and CIDRs: untouched; 6. included CIDRs and ports: to the outbound listener.
//!
//! prerouting (connections arriving at the pod): excluded ports untouched, included ports to the
//! inbound listener. NAT rules see only a connection's first packet; conntrack does the rest.

use std::fmt::Write;

use ipnet::IpNet;

use super::{Plan, Scope, TABLE};

/// `{ a, b }` for nft, or `a` alone.
fn set<T: std::fmt::Display>(items: &[T]) -> String {
    match items {
        [one] => one.to_string(),
        many => format!("{{ {} }}", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn split(nets: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    nets.iter().partition(|n| matches!(n, IpNet::V4(_)))
}

/// The `table inet oxidecar { ... }` block for `plan`.
pub fn ruleset(plan: &Plan) -> String {
    let mut out = String::new();
    // `let _ =`: writing to a String cannot fail.
    let _ = writeln!(out, "table inet {TABLE} {{");
    out.push_str(&output_chain(plan));
    out.push_str(&prerouting_chain(plan));
    out.push_str("}\n");
    out
}

fn output_chain(p: &Plan) -> String {
    let mut c = String::new();
    let mut rule = |r: String| {
        let _ = writeln!(c, "    {r}");
    };
    rule("type nat hook output priority -100; policy accept;".into());
    rule("meta l4proto != tcp return".into());
    let inbound_on = p.include_inbound_ports != Scope::Only(Vec::new());
    if inbound_on {
        let not_excluded = format!("tcp dport != {}", set(&p.exclude_inbound_ports));
        let inbound_ports = match &p.include_inbound_ports {
            Scope::All => String::new(),
            Scope::Only(ports) => format!(" tcp dport {}", set(ports)),
        };
        for uid in &p.proxy_uids {
            for (family, loopback) in [("ip", "127.0.0.0/8"), ("ip6", "::1")] {
                rule(format!(
                    "oifname \"lo\" {family} daddr != {loopback} meta skuid {uid} {not_excluded}{inbound_ports} redirect to :{}",
                    p.inbound_port
                ));
            }
        }
    }
    rule("oifname \"lo\" return".into());
    if !p.proxy_uids.is_empty() {
        rule(format!("meta skuid {} return", set(&p.proxy_uids)));
    }
    if !p.proxy_gids.is_empty() {
        rule(format!("meta skgid {} return", set(&p.proxy_gids)));
    }
    if !p.exclude_outbound_ports.is_empty() {
        rule(format!("tcp dport {} return", set(&p.exclude_outbound_ports)));
    }
    let (ex4, ex6) = split(&p.exclude_outbound);
    if !ex4.is_empty() {
        rule(format!("ip daddr {} return", set(&ex4)));
    }
    if !ex6.is_empty() {
        rule(format!("ip6 daddr {} return", set(&ex6)));
    }
    let ports = match &p.include_outbound_ports {
        Scope::All => String::new(),
        Scope::Only(ports) if ports.is_empty() => return finish(c),
        Scope::Only(ports) => format!("tcp dport {} ", set(ports)),
    };
    match &p.include_outbound {
        Scope::All => rule(format!("{ports}meta l4proto tcp redirect to :{}", p.outbound_port)),
        Scope::Only(nets) => {
            let (in4, in6) = split(nets);
            if !in4.is_empty() {
                rule(format!("ip daddr {} {ports}meta l4proto tcp redirect to :{}", set(&in4), p.outbound_port));
            }
            if !in6.is_empty() {
                rule(format!("ip6 daddr {} {ports}meta l4proto tcp redirect to :{}", set(&in6), p.outbound_port));
            }
        }
    }
    finish(c)
}

fn finish(body: String) -> String {
    format!("  chain output {{\n{body}  }}\n")
}

fn prerouting_chain(p: &Plan) -> String {
    let mut c = String::from("  chain prerouting {\n    type nat hook prerouting priority -100; policy accept;\n");
    let redirect = format!("meta l4proto tcp redirect to :{}", p.inbound_port);
    match &p.include_inbound_ports {
        Scope::Only(ports) if ports.is_empty() => {}
        Scope::Only(ports) => {
            let ports: Vec<u16> = ports.iter().copied().filter(|x| !p.exclude_inbound_ports.contains(x)).collect();
            if !ports.is_empty() {
                let _ = writeln!(c, "    tcp dport {} {redirect}", set(&ports));
            }
        }
        Scope::All => {
            let _ = writeln!(c, "    meta l4proto != tcp return");
            let _ = writeln!(c, "    tcp dport {} return", set(&p.exclude_inbound_ports));
            let _ = writeln!(c, "    {redirect}");
        }
    }
    c.push_str("  }\n");
    c
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::capture::CaptureArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CaptureArgs,
    }

    pub(in crate::capture) fn plan(flags: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(std::iter::once("capture").chain(flags.iter().copied())).expect("flags parse");
        cli.args.plan().expect("valid plan")
    }

    fn lines(rules: &str) -> Vec<&str> {
        rules.lines().map(str::trim).collect()
    }

    #[test]
    fn default_plan_captures_everything_but_the_sidecar_loopback_and_admin_ports() {
        let rules = ruleset(&plan(&[]));
        assert_eq!(
            lines(&rules),
            [
                "table inet oxidecar {",
                "chain output {",
                "type nat hook output priority -100; policy accept;",
                "meta l4proto != tcp return",
                "oifname \"lo\" ip daddr != 127.0.0.0/8 meta skuid 1337 tcp dport != { 15020, 15021, 15090 } redirect to :15006",
                "oifname \"lo\" ip6 daddr != ::1 meta skuid 1337 tcp dport != { 15020, 15021, 15090 } redirect to :15006",
                "oifname \"lo\" return",
                "meta skuid 1337 return",
                "meta l4proto tcp redirect to :15001",
                "}",
                "chain prerouting {",
                "type nat hook prerouting priority -100; policy accept;",
                "meta l4proto != tcp return",
                "tcp dport { 15020, 15021, 15090 } return",
                "meta l4proto tcp redirect to :15006",
                "}",
                "}",
            ]
        );
    }

    #[test]
    fn exclusions_split_by_family_and_merge_the_fixed_inbound_ports() {
        let rules = ruleset(&plan(&[
            "--proxy-uid",
            "1337,1338",
            "-g",
            "1337",
            "--exclude-outbound-ports",
            "6379, 22",
            "--exclude-outbound-ip-ranges",
            "10.96.0.7/16,fd00::/8,192.168.1.1",
            "--exclude-inbound-ports",
            "9090,15021",
        ]));
        let l = lines(&rules);
        assert!(l.contains(&"meta skuid { 1337, 1338 } return"), "{rules}");
        assert!(l.contains(&"meta skgid 1337 return"), "{rules}");
        assert!(l.contains(&"tcp dport { 22, 6379 } return"), "{rules}");
        // Host bits cleared, bare addresses become host routes.
        assert!(l.contains(&"ip daddr { 10.96.0.0/16, 192.168.1.1/32 } return"), "{rules}");
        assert!(l.contains(&"ip6 daddr fd00::/8 return"), "{rules}");
        assert!(l.contains(&"tcp dport { 9090, 15020, 15021, 15090 } return"), "{rules}");
        assert_eq!(l.iter().filter(|r| r.contains("redirect to :15006") && r.contains("skuid 1338")).count(), 2, "{rules}");
    }

    #[test]
    fn include_lists_narrow_the_redirects() {
        let rules = ruleset(&plan(&[
            "--include-outbound-ip-ranges",
            "10.0.0.0/8,2001:db8::/32",
            "--include-outbound-ports",
            "80,443",
            "--include-inbound-ports",
            "8080,15090",
            "-p",
            "16001",
            "-z",
            "16006",
        ]));
        let l = lines(&rules);
        assert!(l.contains(&"ip daddr 10.0.0.0/8 tcp dport { 80, 443 } meta l4proto tcp redirect to :16001"), "{rules}");
        assert!(l.contains(&"ip6 daddr 2001:db8::/32 tcp dport { 80, 443 } meta l4proto tcp redirect to :16001"), "{rules}");
        // 15090 stays excluded even when listed.
        assert!(l.contains(&"tcp dport 8080 meta l4proto tcp redirect to :16006"), "{rules}");
        assert!(!rules.contains("redirect to :15001") && !rules.contains(":15006"), "{rules}");
    }

    #[test]
    fn empty_includes_turn_a_direction_off() {
        let rules = ruleset(&plan(&["--include-outbound-ip-ranges", "", "--include-inbound-ports", ""]));
        assert!(!rules.contains("redirect"), "{rules}");
        assert!(rules.contains("chain output") && rules.contains("chain prerouting"), "{rules}");
    }

    #[test]
    fn bad_values_name_the_flag_and_the_value() {
        let cases = [
            (&["--exclude-outbound-ports", "80,http"][..], "--exclude-outbound-ports: \"http\": not a port"),
            (&["--exclude-inbound-ports", "0"][..], "--exclude-inbound-ports: \"0\": not a port"),
            (&["--exclude-outbound-ip-ranges", "10.0.0.0/33"][..], "--exclude-outbound-ip-ranges: \"10.0.0.0/33\": not a CIDR"),
            (&["--include-outbound-ip-ranges", "example.com"][..], "--include-outbound-ip-ranges: \"example.com\""),
        ];
        for (flags, want) in cases {
            let cli = Cli::try_parse_from(std::iter::once("capture").chain(flags.iter().copied())).expect("flags parse");
            let err = cli.args.plan().expect_err("bad value").to_string();
            assert!(err.contains(want), "{flags:?}: {err}");
        }
    }

    #[test]
    fn cleanup_touches_only_our_table() {
        assert_eq!(crate::capture::cleanup_script(), "table inet oxidecar {}\ndelete table inet oxidecar\n");
    }
}
