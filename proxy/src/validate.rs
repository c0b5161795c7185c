//! `oxidecar validate --envoy-config-dump FILE`: what oxidecar would make of an Envoy config dump.

use std::path::Path;
use std::process::ExitCode;

use oxidecar_xds::envoy::{self, Kind};

/// Prints per resource type: accepted, ignored fields, rejected (with the field and reason), and
/// what Envoy itself had rejected. Exit status 2 when oxidecar rejects something.
pub fn envoy_config_dump(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let dump = match envoy::dump::read_config_dump(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let options = envoy::Options { base: oxidecar_xds::Snapshot::empty(), lenient_references: true, warming: false };
    let t = envoy::translate(&dump.resources, &options);
    let r = &t.report;
    println!("{}:", file.display());
    for kind in Kind::ALL {
        let received = dump.resources.names(kind).len();
        if received == 0 {
            continue;
        }
        let rejected = r.rejected_of(kind).count();
        let accepted = r.accepted.get(&kind).copied().unwrap_or(0);
        let ignored: u64 = r.ignored.iter().filter(|((k, _), _)| *k == kind).map(|(_, n)| n).sum();
        println!("  {kind}: {received} received, {accepted} accepted, {rejected} rejected, {ignored} ignored fields");
        for ((_, field), n) in r.ignored.iter().filter(|((k, _), _)| *k == kind) {
            println!("    ignored {field} ×{n}");
        }
        for rej in r.rejected_of(kind) {
            println!("    REJECTED {:?}: {}: {}", rej.name, rej.field, rej.reason);
        }
    }
    for (kind, name, details) in &dump.envoy_rejected {
        let ours = r.rejected.iter().any(|x| x.kind == *kind && &x.name == name);
        let first = details.lines().next().unwrap_or_default();
        println!("  Envoy rejected {kind} {name:?} ({first}); oxidecar {}", if ours { "rejects it too" } else { "accepts it" });
    }
    if !r.unresolved.is_empty() {
        println!("  {} references to resources not in this dump (treated as empty): {}", r.unresolved.len(), r.unresolved.join(", "));
    }
    for (at, why) in &dump.unreadable {
        println!("  UNREADABLE {at}: {why}");
    }
    println!(
        "  snapshot: {} listeners, {} route configs, {} clusters, {} endpoints",
        t.snapshot.listeners.len(),
        t.snapshot.route_configs.len(),
        t.snapshot.clusters.len(),
        t.snapshot.clusters.iter().map(|c| c.endpoints.len()).sum::<usize>()
    );
    if r.rejected.is_empty() && dump.unreadable.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) }
}
