//! Admin endpoints that act on the running proxy or summarize it: `/stats` (Envoy-like text or
//! JSON), `/logging` (log levels at run time), `/drain_listeners` and `/quitquitquit`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::proto::MetricType;
use serde::Deserialize;

use super::AdminState;
use crate::logctl;

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    format: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    usedonly: Option<String>,
}

/// `name: value` pairs: server state, per-cluster counters, then every counter and gauge of the
/// Prometheus registry (`family{labels}`) and each histogram's count and sum.
fn collect(s: &AdminState) -> Vec<(String, f64)> {
    let shared = &s.shared;
    let mut out = Vec::new();
    let state = if shared.drain.is_draining() {
        1.0
    } else if shared.drain.is_ready() {
        0.0
    } else {
        2.0
    };
    out.push(("server.state".to_string(), state));
    out.push(("server.live".to_string(), if state == 0.0 { 1.0 } else { 0.0 }));
    out.push(("server.uptime".to_string(), s.started.elapsed().as_secs() as f64));
    out.push(("server.total_connections_and_requests_active".to_string(), shared.drain.in_flight() as f64));
    out.push(("server.config_version".to_string(), s.source.version.load(Ordering::SeqCst) as f64));
    let tables = shared.tables.load();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let now = std::time::Instant::now();
    for c in &tables.clusters {
        let sum = |f: fn(&crate::tables::EndpointStats) -> &std::sync::atomic::AtomicU64| -> f64 {
            c.endpoints.iter().map(|e| load(f(&e.stats))).sum()
        };
        let p = format!("cluster.{}", c.name);
        out.push((format!("{p}.upstream_rq_active"), load(&c.stats.rq_active)));
        out.push((format!("{p}.upstream_rq_retry_active"), load(&c.stats.rq_retry_active)));
        let gate = c.stats.gate.stats();
        let limits = c.gate_limits();
        let flag = |open: bool| if open { 1.0 } else { 0.0 };
        out.push((format!("{p}.upstream_rq_pending_overflow"), c.stats.pending_overflow_total() as f64));
        out.push((format!("{p}.upstream_rq_pending_active"), gate.pending_active as f64));
        out.push((format!("{p}.upstream_rq_pending_total"), gate.pending_total as f64));
        out.push((format!("{p}.upstream_cx_overflow"), gate.cx_overflow as f64));
        out.push((format!("{p}.circuit_breakers.default.cx_open"), flag(c.stats.gate.connections_full(limits))));
        out.push((format!("{p}.circuit_breakers.default.rq_pending_open"), flag(c.stats.gate.pending_full(limits))));
        out.push((format!("{p}.circuit_breakers.default.rq_open"), flag(load(&c.stats.rq_active) >= f64::from(c.circuit_breakers.max_requests))));
        out.push((format!("{p}.upstream_rq_total"), sum(|e| &e.rq_total)));
        out.push((format!("{p}.upstream_rq_error"), sum(|e| &e.rq_error)));
        out.push((format!("{p}.upstream_cx_connect_fail"), sum(|e| &e.cx_connect_fail)));
        out.push((format!("{p}.membership_total"), c.endpoints.len() as f64));
        let healthy = (0..c.endpoints.len()).filter(|i| !c.is_ejected(*i, now)).count();
        out.push((format!("{p}.membership_healthy"), healthy as f64));
    }
    shared.metrics.active_requests.set(shared.drain.in_flight());
    for family in shared.metrics.registry.gather() {
        let name = family.name();
        for m in family.get_metric() {
            let labels: Vec<String> = m.get_label().iter().map(|l| format!("{}=\"{}\"", l.name(), l.value())).collect();
            let key = if labels.is_empty() { name.to_string() } else { format!("{name}{{{}}}", labels.join(",")) };
            match family.get_field_type() {
                MetricType::COUNTER => out.push((key, m.get_counter().get_value())),
                MetricType::GAUGE => out.push((key, m.get_gauge().get_value())),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let (base, rest) = key.split_once('{').map_or((key.as_str(), String::new()), |(b, r)| (b, format!("{{{r}")));
                    out.push((format!("{base}_count{rest}"), h.get_sample_count() as f64));
                    out.push((format!("{base}_sum{rest}"), h.get_sample_sum()));
                }
                _ => {}
            }
        }
    }
    out
}

/// `/stats`: Envoy-like `name: value` lines; `?format=json`, `?format=prometheus`, `?filter=REGEX`,
/// `?usedonly` (non-zero values only).
pub(super) async fn stats(State(s): State<AdminState>, Query(q): Query<StatsQuery>) -> Response {
    if q.format.as_deref() == Some("prometheus") {
        return super::prometheus(State(s)).await;
    }
    let filter = match q.filter.as_deref().map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("filter: invalid regex: {e}\n")).into_response(),
    };
    let stats: Vec<(String, f64)> = collect(&s)
        .into_iter()
        .filter(|(k, v)| filter.as_ref().is_none_or(|f| f.is_match(k)) && (q.usedonly.is_none() || *v != 0.0))
        .collect();
    match q.format.as_deref() {
        Some("json") => {
            let list: Vec<_> = stats.iter().map(|(k, v)| serde_json::json!({ "name": k, "value": v })).collect();
            axum::Json(serde_json::json!({ "stats": list })).into_response()
        }
        None | Some("text") => {
            let mut out = String::new();
            for (k, v) in &stats {
                let _ = writeln!(out, "{k}: {v}");
            }
            ([(header::CONTENT_TYPE, "text/plain")], out).into_response()
        }
        Some(other) => (StatusCode::BAD_REQUEST, format!("format: {other:?} is not one of text, json, prometheus\n")).into_response(),
    }
}

fn show_filter() -> String {
    match logctl::current() {
        Some(f) => {
            let mut out = format!("active loggers:\n  default: {}\n", f.default);
            for (t, l) in &f.targets {
                let _ = writeln!(out, "  {t}: {l}");
            }
            out
        }
        None => "logging is not under oxidecar's control\n".to_string(),
    }
}

/// `/logging`: GET shows the levels; POST `?level=debug` sets every level, POST
/// `?<target>=<level>` (e.g. `?access=debug&oxidecar::http=trace`) sets one target's.
pub(super) async fn logging(method: Method, Query(q): Query<BTreeMap<String, String>>) -> Response {
    if q.is_empty() {
        return ([(header::CONTENT_TYPE, "text/plain")], show_filter()).into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "changing log levels needs POST\n").into_response();
    }
    let result = logctl::update(|f| {
        if let Some(level) = q.get("level") {
            f.set_all(level).map_err(|e| format!("level: {e}"))?;
        }
        for (target, level) in q.iter().filter(|(k, _)| k.as_str() != "level") {
            f.set_target(target, level).map_err(|e| format!("{target}: {e}"))?;
        }
        Ok(())
    });
    match result {
        Ok(_) => ([(header::CONTENT_TYPE, "text/plain")], show_filter()).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct DrainQuery {
    inboundonly: Option<String>,
}

/// `/drain_listeners` (POST): readiness turns 503 DRAINING, the listeners (or only the inbound
/// ones with `?inboundonly`) close every new connection at once and close kept-alive HTTP
/// connections after their current request; work in flight finishes. The process keeps running.
pub(super) async fn drain_listeners(method: Method, State(s): State<AdminState>, Query(q): Query<DrainQuery>) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "/drain_listeners needs POST\n").into_response();
    }
    let inbound_only = q.inboundonly.is_some();
    s.shared.drain.close_listeners(inbound_only);
    s.shared.drain.start_draining();
    tracing::info!(inbound_only, in_flight = s.shared.drain.in_flight(), "listeners draining on admin request");
    (StatusCode::OK, "OK\n").into_response()
}

/// `/quitquitquit` (POST): drain as on SIGTERM, then exit 0 — how a Job's last container ends
/// its sidecar.
pub(super) async fn quitquitquit(method: Method) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "/quitquitquit needs POST\n").into_response();
    }
    tracing::info!("/quitquitquit: draining, then exiting");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot start the drain: {e}\n")).into_response();
    }
    (StatusCode::OK, "OK\n").into_response()
}
