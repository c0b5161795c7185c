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
    // A partial dump (listeners only, say) names resources it does not hold: list them, do not reject.
    let partial = [Kind::Cluster, Kind::Listener, Kind::Route].iter().any(|k| dump.resources.names(*k).is_empty());
    let options = envoy::Options { base: oxidecar_xds::Snapshot::empty(), lenient_references: partial, warming: false };
    let rss_before = rss_kib();
    let started = std::time::Instant::now();
    let t = envoy::translate(&dump.resources, &options);
    let translated = started.elapsed();
    // The data plane's own per-snapshot work: route tables, LB state, counters.
    let built = std::time::Instant::now();
    let tables = crate::tables::Tables::build(std::sync::Arc::new(t.snapshot.clone()), None, None);
    let built = built.elapsed();
    let rss_after = rss_kib();
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
    println!(
        "  apply cost: translate {:.1} ms, build tables {:.1} ms{}, RSS +{} KiB",
        translated.as_secs_f64() * 1000.0,
        built.as_secs_f64() * 1000.0,
        match &tables {
            Ok(_) => String::new(),
            Err(e) => format!(" (refused: {e})"),
        },
        rss_after.saturating_sub(rss_before)
    );
    drop(tables);
    if r.rejected.is_empty() && dump.unreadable.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) }
}

/// Resident set size of this process, KiB (0 where /proc is missing).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
