//! A whole [`ResourceSet`] → one validated [`Snapshot`]: clusters get their endpoints, per-port
//! listeners (`bind_to_port: false`) become filter chains of the `use_original_dst` listener that
//! hands connections to them, references are checked, and anything that still fails validation
//! is rejected by name instead of failing the whole snapshot.

use std::collections::{BTreeMap, BTreeSet};

use super::listener::{TranslatedListener, sort_by_specificity};
use super::report::{Cx, Kind, Rejection, Report};
use super::secret::SdsSecret;
use super::{ResourceSet, cluster, endpoint, listener, route, secret};
use crate::model::{self, Snapshot};

/// What xDS does not provide.
#[derive(Debug, Clone)]
pub struct Options {
    /// Node, admin, lanes, invocation, drain timeout and identity come from here. A listener in it
    /// with the name of an xDS listener pins that listener to its address (so `virtualOutbound`
    /// binds where the bootstrap says; a per-port listener such as `0.0.0.0_9080` named here gets
    /// a socket of its own).
    pub base: Snapshot,
    /// For partial inputs (a dump of listeners only): references to clusters and route configs
    /// that are not in the set resolve to empty placeholders instead of rejecting the referrer,
    /// and load assignments no cluster uses are still checked.
    pub lenient_references: bool,
    /// For a live stream: a listener whose RDS route config has not arrived yet is warming, not
    /// wrong; it is left out (and listed in `Report::warming`) until the route config is there.
    pub warming: bool,
}

/// The result of one translation.
#[derive(Debug, Clone)]
pub struct Translation {
    /// Valid by construction: everything that failed is in `report.rejected` and left out.
    pub snapshot: Snapshot,
    pub secrets: Vec<SdsSecret>,
    pub report: Report,
    /// Route configs named by RDS in the listeners that translated (warming ones included): what
    /// a live client subscribes to. Equal to [`rds_names`] of the input.
    pub rds_names: BTreeSet<String>,
}

pub fn translate(set: &ResourceSet, opts: &Options) -> Translation {
    let mut report = Report::default();
    let mut clusters = Vec::new();
    for (name, c) in &set.clusters {
        let mut cx = Cx { kind: Kind::Cluster, name, ignored: &mut report.ignored };
        match cluster::translate(&mut cx, c) {
            Ok(mut t) => {
                if let Some(eds) = &t.eds_name
                    && let Some(cla) = set.endpoints.get(eds)
                {
                    let mut cx = Cx { kind: Kind::Endpoint, name: eds, ignored: &mut report.ignored };
                    match endpoint::endpoints(&mut cx, "", cla) {
                        Ok(eps) => {
                            t.cluster.endpoints = eps;
                            *report.accepted.entry(Kind::Endpoint).or_default() += 1;
                        }
                        Err(r) => report.rejected.push(r),
                    }
                }
                *report.accepted.entry(Kind::Cluster).or_default() += 1;
                clusters.push(t.cluster);
            }
            Err(r) => report.rejected.push(r),
        }
    }
    if opts.lenient_references {
        let used: BTreeSet<String> = clusters.iter().map(|c| c.name.clone()).collect();
        for (name, cla) in set.endpoints.iter().filter(|(n, _)| !used.contains(*n)) {
            let mut cx = Cx { kind: Kind::Endpoint, name, ignored: &mut report.ignored };
            match endpoint::endpoints(&mut cx, "", cla) {
                Ok(_) => *report.accepted.entry(Kind::Endpoint).or_default() += 1,
                Err(r) => report.rejected.push(r),
            }
        }
        let mut wanted = BTreeSet::new();
        for rc in set.routes.values() {
            for vh in &rc.virtual_hosts {
                for r in &vh.routes {
                    use envoy_types::pb::envoy::config::route::v3::{route, route_action::ClusterSpecifier};
                    if let Some(route::Action::Route(a)) = &r.action {
                        match &a.cluster_specifier {
                            Some(ClusterSpecifier::Cluster(c)) => {
                                wanted.insert(c.clone());
                            }
                            Some(ClusterSpecifier::WeightedClusters(w)) => wanted.extend(w.clusters.iter().map(|c| c.name.clone())),
                            _ => {}
                        }
                        wanted.extend(a.request_mirror_policies.iter().map(|m| m.cluster.clone()));
                    }
                }
            }
        }
        wanted.extend(referenced_by_listeners(set));
        for name in wanted.into_iter().filter(|n| !used.contains(n)) {
            report.unresolved.push(format!("cluster {name:?}"));
            clusters.push(placeholder_cluster(&name));
        }
    }
    let cluster_names: BTreeSet<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    let mut route_configs = Vec::new();
    for (name, rc) in &set.routes {
        let mut cx = Cx { kind: Kind::Route, name, ignored: &mut report.ignored };
        match route::translate(&mut cx, rc).and_then(|r| check_route_refs(&cx, &r, &cluster_names).map(|()| r)) {
            Ok(r) => route_configs.push(r),
            Err(r) => report.rejected.push(r),
        }
    }
    if opts.lenient_references {
        let have: BTreeSet<String> = route_configs.iter().map(|r| r.name.clone()).collect();
        for name in rds_names(set).into_iter().filter(|n| !have.contains(n) && !set.routes.contains_key(n)) {
            report.unresolved.push(format!("route config {name:?}"));
            route_configs.push(model::RouteConfig { name, virtual_hosts: Vec::new() });
        }
    }
    let mut listeners: Vec<TranslatedListener> = Vec::new();
    let route_names: BTreeSet<&str> = route_configs.iter().map(|r| r.name.as_str()).collect();
    let mut rds = BTreeSet::new();
    for (name, l) in &set.listeners {
        let mut cx = Cx { kind: Kind::Listener, name, ignored: &mut report.ignored };
        let translated = listener::translate(&mut cx, l);
        if let Ok(t) = &translated {
            rds.extend(rds_of(t));
        }
        if opts.warming
            && let Ok(t) = &translated
        {
            let inline: BTreeSet<&str> = t.inline_routes.iter().map(|r| r.name.as_str()).collect();
            let waiting = t.listener.filter_chains.iter().filter_map(|fc| fc.http.as_ref()).any(|h| {
                !route_names.contains(h.route_config.as_str()) && !inline.contains(h.route_config.as_str()) && !set.routes.contains_key(&h.route_config)
            });
            if waiting {
                report.warming.push(name.clone());
                continue;
            }
        }
        let result = translated.and_then(|t| {
            for rc in &t.inline_routes {
                check_route_refs(&cx, rc, &cluster_names).map_err(|mut r| {
                    r.field = format!("(inline route config {}).{}", rc.name, r.field);
                    r
                })?;
            }
            check_listener_refs(&cx, &t, &cluster_names, &route_names)?;
            Ok(t)
        });
        match result {
            Ok(t) => listeners.push(t),
            Err(r) => report.rejected.push(r),
        }
    }
    let mut secrets = Vec::new();
    for (name, s) in &set.secrets {
        let mut cx = Cx { kind: Kind::Secret, name, ignored: &mut report.ignored };
        match secret::translate(&mut cx, s) {
            Ok(s) => {
                *report.accepted.entry(Kind::Secret).or_default() += 1;
                secrets.push(s);
            }
            Err(r) => report.rejected.push(r),
        }
    }
    let (model_listeners, inline) = compose_listeners(listeners, &opts.base);
    route_configs.extend(inline);
    let mut snapshot = opts.base.clone();
    snapshot.listeners = model_listeners;
    snapshot.route_configs = route_configs;
    snapshot.clusters = clusters;
    settle(&mut snapshot, set, &mut report);
    report.accepted.insert(Kind::Listener, set.listeners.len() - report.rejected_of(Kind::Listener).count() - report.warming.len());
    report.accepted.insert(Kind::Route, set.routes.len() - report.rejected_of(Kind::Route).count());
    Translation { snapshot, secrets, report, rds_names: rds }
}

fn check_route_refs(cx: &Cx<'_>, rc: &model::RouteConfig, clusters: &BTreeSet<&str>) -> Result<(), Rejection> {
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        for (j, r) in vh.routes.iter().enumerate() {
            let path = format!("virtual_hosts[{i}].routes[{j}].route");
            let Some(a) = &r.route else { continue };
            if let Some(c) = &a.cluster
                && !clusters.contains(c.as_str())
            {
                return Err(cx.reject(format!("{path}.cluster"), format!("unknown cluster {c:?}")));
            }
            for (k, w) in a.weighted_clusters.iter().enumerate() {
                if !clusters.contains(w.name.as_str()) {
                    return Err(cx.reject(format!("{path}.weighted_clusters.clusters[{k}]"), format!("unknown cluster {:?}", w.name)));
                }
            }
            for (k, m) in a.mirrors.iter().enumerate() {
                if !clusters.contains(m.cluster.as_str()) {
                    return Err(cx.reject(format!("{path}.request_mirror_policies[{k}].cluster"), format!("unknown cluster {:?}", m.cluster)));
                }
            }
        }
    }
    Ok(())
}

fn check_listener_refs(cx: &Cx<'_>, t: &TranslatedListener, clusters: &BTreeSet<&str>, routes: &BTreeSet<&str>) -> Result<(), Rejection> {
    let inline: BTreeSet<&str> = t.inline_routes.iter().map(|r| r.name.as_str()).collect();
    for (i, fc) in t.listener.filter_chains.iter().enumerate() {
        let path = format!("filter_chains[{}]", fc.name.as_deref().map_or(i.to_string(), |n| format!("{n:?}")));
        if let Some(h) = &fc.http
            && !routes.contains(h.route_config.as_str())
            && !inline.contains(h.route_config.as_str())
        {
            return Err(cx.reject(format!("{path}.http_connection_manager.rds"), format!("route config {:?} is not known (not received or rejected)", h.route_config)));
        }
        if let Some(tcp) = &fc.tcp {
            for c in tcp.cluster.iter().chain(tcp.weighted_clusters.iter().map(|w| &w.name)) {
                if !clusters.contains(c.as_str()) {
                    return Err(cx.reject(format!("{path}.tcp_proxy"), format!("unknown cluster {c:?}")));
                }
            }
        }
    }
    Ok(())
}

/// Bound listeners as they are; per-port listeners folded into every `use_original_dst` listener
/// (specific destination IPs before `0.0.0.0`), unless the base pins them to a socket.
fn compose_listeners(listeners: Vec<TranslatedListener>, base: &Snapshot) -> (Vec<model::Listener>, Vec<model::RouteConfig>) {
    let pins: BTreeMap<&str, std::net::SocketAddr> = base.listeners.iter().map(|l| (l.name.as_str(), l.address)).collect();
    let mut bound = Vec::new();
    let mut handoff = Vec::new();
    let mut original_dst = BTreeSet::new();
    let mut inline = Vec::new();
    for t in listeners {
        inline.extend(t.inline_routes);
        let mut l = t.listener;
        if let Some(addr) = pins.get(l.name.as_str()) {
            l.address = *addr;
        } else if !t.bind_to_port {
            handoff.push(l);
            continue;
        }
        if t.use_original_dst {
            original_dst.insert(l.name.clone());
        }
        bound.push(l);
    }
    let mut handed: Vec<model::FilterChain> = Vec::new();
    for l in &handoff {
        let ip = l.address.ip();
        for (j, fc) in l.filter_chains.iter().enumerate() {
            let mut fc = fc.clone();
            fc.name = Some(format!("{}/{}", l.name, fc.name.as_deref().map_or(j.to_string(), str::to_string)));
            let m = &mut fc.filter_chain_match;
            m.destination_port.get_or_insert(l.address.port());
            if m.prefix_ranges.is_empty() && !ip.is_unspecified() {
                m.prefix_ranges.push(ipnet::IpNet::from(ip));
            }
            handed.push(fc);
        }
    }
    for l in bound.iter_mut().filter(|l| original_dst.contains(&l.name)) {
        let own = std::mem::take(&mut l.filter_chains);
        l.filter_chains = handed.iter().cloned().chain(own).collect();
        sort_by_specificity(&mut l.filter_chains);
    }
    (bound, inline)
}

/// Validates the snapshot; every error is pinned on the resource at its path, which is left out,
/// until the rest is valid.
fn settle(snapshot: &mut Snapshot, set: &ResourceSet, report: &mut Report) {
    for _ in 0..1000 {
        let Err(errors) = snapshot.validate() else { return };
        let Some(e) = errors.0.first() else { return };
        let index = |prefix: &str| -> Option<usize> { e.path.strip_prefix(prefix)?.split(']').next()?.parse().ok() };
        let (kind, name, field) = if let Some(i) = index("clusters[") {
            let c = snapshot.clusters.remove(i);
            *report.accepted.entry(Kind::Cluster).or_default() -= 1;
            (Kind::Cluster, c.name, e.path.clone())
        } else if let Some(i) = index("route_configs[") {
            (Kind::Route, snapshot.route_configs.remove(i).name, e.path.clone())
        } else if let Some(i) = index("listeners[") {
            (Kind::Listener, snapshot.listeners.remove(i).name, e.path.clone())
        } else {
            // Not a resource's fault (the base is invalid): nothing from xDS can fix it.
            tracing::error!(error = %e, "the base config does not validate");
            return;
        };
        let _ = set;
        report.rejected.push(Rejection { kind, name, field, reason: e.message.clone() });
    }
}

fn placeholder_cluster(name: &str) -> model::Cluster {
    let mut c: model::Cluster = serde_json::from_value(serde_json::json!({ "name": name, "type": "eds" })).expect("a named EDS cluster parses");
    c.service = None;
    c
}

/// Clusters named by tcp_proxy filters of the listeners in `set`.
fn referenced_by_listeners(set: &ResourceSet) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut ignored = BTreeMap::new();
    for (name, l) in &set.listeners {
        let mut cx = Cx { kind: Kind::Listener, name, ignored: &mut ignored };
        if let Ok(t) = listener::translate(&mut cx, l) {
            for fc in &t.listener.filter_chains {
                if let Some(tcp) = &fc.tcp {
                    out.extend(tcp.cluster.iter().cloned());
                    out.extend(tcp.weighted_clusters.iter().map(|w| w.name.clone()));
                }
            }
        }
    }
    out
}

/// Route configs named by RDS in the listeners of `set`.
pub fn rds_names(set: &ResourceSet) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut ignored = BTreeMap::new();
    for (name, l) in &set.listeners {
        let mut cx = Cx { kind: Kind::Listener, name, ignored: &mut ignored };
        if let Ok(t) = listener::translate(&mut cx, l) {
            out.extend(rds_of(&t));
        }
    }
    out
}

/// The route configs one listener names through RDS (not its inline ones).
fn rds_of(t: &TranslatedListener) -> impl Iterator<Item = String> + '_ {
    let inline: BTreeSet<&str> = t.inline_routes.iter().map(|r| r.name.as_str()).collect();
    t.listener.filter_chains.iter().filter_map(|fc| fc.http.as_ref()).filter(move |h| !inline.contains(h.route_config.as_str())).map(|h| h.route_config.clone())
}
