//! Operator endpoints: the admin port (`/ready`, `/config_dump`, `/clusters`, `/stats/prometheus`,
//! and in `ops`: `/stats`, `/logging`, `/drain_listeners`, `/quitquitquit`),
//! the metrics ports (`/stats/prometheus`, `/healthz/ready`) and the kubelet health port.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

mod envoy_dump;
mod merge;
mod ops;

use crate::control::ConfigSource;
use crate::shared::Shared;

#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub source: Arc<ConfigSource>,
    /// When the process started serving (`server.uptime` in `/stats`).
    pub started: std::time::Instant,
    /// The app's metrics endpoint from `ISTIO_PROMETHEUS_ANNOTATIONS` (the config's wins).
    pub app_scrape: Option<oxidecar_xds::model::AppScrape>,
    /// With xDS: the Envoy resources the client holds, for `/config_dump?format=envoy`.
    pub xds_held: Option<oxidecar_xds::ads::HeldView>,
}

async fn ready(State(s): State<AdminState>) -> Response {
    if s.shared.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n").into_response()
    } else if s.shared.drain.is_ready() {
        (StatusCode::OK, "LIVE\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n").into_response()
    }
}

async fn prometheus(State(s): State<AdminState>) -> Response {
    s.shared.metrics.active_requests.set(s.shared.drain.in_flight());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.shared.metrics.render()).into_response()
}

#[derive(Deserialize)]
struct DumpQuery {
    format: Option<String>,
}

/// oxidecar's effective config, or with `?format=envoy` an Envoy admin ConfigDump (envoy_dump.rs).
async fn config_dump(State(s): State<AdminState>, Query(q): Query<DumpQuery>) -> Response {
    match q.format.as_deref() {
        None | Some("json") => {}
        Some("envoy") => return axum::Json(envoy_dump::render(&s)).into_response(),
        Some(other) => return (StatusCode::BAD_REQUEST, format!("format {other:?}: use envoy or json\n")).into_response(),
    }
    let tables = s.shared.tables.load();
    let body = serde_json::json!({
        "source": s.source.describe(),
        "version": s.source.version.load(Ordering::SeqCst),
        "snapshot": &*tables.snapshot,
    });
    axum::Json(body).into_response()
}

#[derive(Deserialize)]
struct ClustersQuery {
    format: Option<String>,
}

/// Envoy's `/clusters` shape: one `cluster::endpoint::stat::value` line per counter, or JSON.
async fn clusters(State(s): State<AdminState>, Query(q): Query<ClustersQuery>) -> Response {
    let tables = s.shared.tables.load();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let now = std::time::Instant::now();
    let health = |c: &crate::tables::ClusterState, i: usize| c.health_flag(i, now);
    if q.format.as_deref() == Some("json") {
        let clusters: Vec<_> = tables
            .clusters
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": &*c.name,
                    "service": &*c.service,
                    "rq_active": load(&c.stats.rq_active),
                    "upstream_rq_pending_overflow": c.stats.pending_overflow_total(),
                    "upstream_rq_pending_active": c.stats.gate.stats().pending_active,
                    "upstream_cx_overflow": c.stats.gate.stats().cx_overflow,
                    "endpoints": c.endpoints.iter().enumerate().map(|(i, e)| serde_json::json!({
                        "address": e.address.to_string(),
                        "weight": e.weight,
                        "labels": e.labels,
                        "health": health(c, i),
                        "rq_active": load(&e.stats.rq_active),
                        "rq_total": load(&e.stats.rq_total),
                        "rq_error": load(&e.stats.rq_error),
                        "cx_connect_fail": load(&e.stats.cx_connect_fail),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return axum::Json(serde_json::json!({ "clusters": clusters })).into_response();
    }
    let mut out = String::new();
    for c in &tables.clusters {
        let _ = writeln!(out, "{}::rq_active::{}", c.name, load(&c.stats.rq_active));
        let gate = c.stats.gate.stats();
        let _ = writeln!(out, "{}::upstream_rq_pending_overflow::{}", c.name, c.stats.pending_overflow_total());
        let _ = writeln!(out, "{}::upstream_rq_pending_active::{}", c.name, gate.pending_active);
        let _ = writeln!(out, "{}::upstream_cx_overflow::{}", c.name, gate.cx_overflow);
        for (i, e) in c.endpoints.iter().enumerate() {
            let p = format!("{}::{}", c.name, e.address);
            let _ = writeln!(out, "{p}::weight::{}", e.weight);
            let _ = writeln!(out, "{p}::health_flags::{}", health(c, i));
            let _ = writeln!(out, "{p}::rq_active::{}", load(&e.stats.rq_active));
            let _ = writeln!(out, "{p}::rq_total::{}", load(&e.stats.rq_total));
            let _ = writeln!(out, "{p}::rq_error::{}", load(&e.stats.rq_error));
            let _ = writeln!(out, "{p}::cx_connect_fail::{}", load(&e.stats.cx_connect_fail));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain")], out).into_response()
}

pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/config_dump", get(config_dump))
        .route("/clusters", get(clusters))
        .route("/stats/prometheus", get(prometheus))
        .route("/stats", get(ops::stats))
        .route("/logging", get(ops::logging).post(ops::logging))
        .route("/drain_listeners", get(ops::drain_listeners).post(ops::drain_listeners))
        .route("/quitquitquit", get(ops::quitquitquit).post(ops::quitquitquit))
        .with_state(state)
}

pub fn metrics_router(state: AdminState) -> Router {
    Router::new()
        .route("/stats/prometheus", get(prometheus))
        .route("/healthz/ready", get(ready))
        .with_state(state)
}

pub use merge::from_env as app_scrape_from_env;

/// The merged-metrics port (15020): ours plus the app's.
pub fn merged_metrics_router(state: AdminState) -> Router {
    Router::new()
        .route("/stats/prometheus", get(merge::merged))
        .route("/healthz/ready", get(ready))
        .with_state(state)
}

pub fn health_router(state: AdminState) -> Router {
    Router::new().route("/healthz/ready", get(ready)).with_state(state)
}

/// Serves `router` on an already-bound listener until `stop` is cancelled.
pub async fn serve(listener: std::net::TcpListener, router: Router, stop: CancellationToken) {
    let addr = listener.local_addr().ok();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(?addr, error = %e, "cannot serve admin endpoint"),
    };
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::error!(?addr, error = %e, "admin endpoint stopped");
    }
}
