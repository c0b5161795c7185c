//! Prometheus metrics with Istio's standard names and labels, so Kiali and the usual Grafana
//! dashboards work unchanged, plus oxidecar's own `oxidecar_*` families. One registry per process,
//! injected wherever metrics are recorded.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Istio's request-duration buckets, in milliseconds.
const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
    300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Size buckets in bytes, 1 B to 100 MB.
const SIZE_BUCKETS: [f64; 9] = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0, 100000000.0];

pub mod istio;

/// Labels of the HTTP/gRPC request families: Istio's full standard set.
pub static REQUEST_LABELS: [&str; 25] = oxidecar_xds::model::ISTIO_REQUEST_LABELS;

/// Labels of the TCP families: the same without `response_code` and `grpc_response_status`.
pub fn tcp_labels() -> &'static [&'static str] {
    &REQUEST_LABELS[..23]
}

/// Handles to every metric family the proxy records.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration_ms: HistogramVec,
    pub request_bytes: HistogramVec,
    pub response_bytes: HistogramVec,
    pub tcp_sent_bytes: IntCounterVec,
    pub tcp_received_bytes: IntCounterVec,
    pub tcp_opened: IntCounterVec,
    pub tcp_closed: IntCounterVec,
    /// Connections closed because no filter chain matched, by listener.
    pub no_filter_chain: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Requests that carried a lane, by the lane they were served in (`base` after fallback).
    pub lane_requests: IntCounterVec,
    pub active_requests: IntGauge,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: prometheus::IntCounter,
    /// Distinct values seen per Istio label, to cap peer-controlled ones.
    pub label_bounds: std::sync::Arc<istio::Bounds>,
    /// Scrapes of the app's own metrics for the merged port, by result.
    pub app_scrapes: IntCounterVec,
    /// Spans by fate: exported, failed (collector error), dropped (queue full).
    pub trace_spans: IntCounterVec,
    /// Lookups of DNS clusters' hosts, by cluster and result (success, failure).
    pub dns_resolutions: IntCounterVec,
    /// Mirrored request copies, by mirror cluster and result.
    pub mirror_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), &REQUEST_LABELS)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let active_requests = IntGauge::new("oxidecar_http_active_requests", "HTTP requests in flight")?;
        registry.register(Box::new(active_requests.clone()))?;
        let access_log_dropped =
            prometheus::IntCounter::new("oxidecar_access_log_dropped_total", "Access log lines dropped because the writer fell behind")?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        Ok(Self {
            requests_total: counter("istio_requests_total", "Requests handled by the proxy", &REQUEST_LABELS)?,
            request_duration_ms: histogram(
                "istio_request_duration_milliseconds",
                "Request duration in milliseconds",
                &DURATION_BUCKETS_MS,
            )?,
            request_bytes: histogram("istio_request_bytes", "Request body sizes in bytes", &SIZE_BUCKETS)?,
            response_bytes: histogram("istio_response_bytes", "Response body sizes in bytes", &SIZE_BUCKETS)?,
            tcp_sent_bytes: counter("istio_tcp_sent_bytes_total", "Bytes sent to the downstream on TCP connections", tcp_labels())?,
            tcp_received_bytes: counter(
                "istio_tcp_received_bytes_total",
                "Bytes received from the downstream on TCP connections",
                tcp_labels(),
            )?,
            tcp_opened: counter("istio_tcp_connections_opened_total", "TCP connections opened", tcp_labels())?,
            tcp_closed: counter("istio_tcp_connections_closed_total", "TCP connections closed", tcp_labels())?,
            no_filter_chain: counter(
                "oxidecar_listener_no_filter_chain_total",
                "Connections closed because no filter chain matched",
                &["listener"],
            )?,
            config_reloads: counter("oxidecar_config_reloads_total", "Config reload attempts", &["result"])?,
            lane_requests: counter(
                "oxidecar_lane_requests_total",
                "Requests that carried a lane, by requested and served lane",
                &["reporter", "destination_service", "lane", "served_lane"],
            )?,
            active_requests,
            access_log_dropped,
            label_bounds: Default::default(),
            trace_spans: counter("oxidecar_trace_spans_total", "Finished spans by result: exported, failed, dropped", &["result"])?,
            app_scrapes: counter("oxidecar_app_metrics_scrapes_total", "Scrapes of the app's metrics for the merged port", &["result"])?,
            dns_resolutions: counter("oxidecar_dns_resolutions_total", "Lookups of DNS clusters' hosts, by result: success, failure", &["cluster", "result"])?,
            mirror_requests: counter(
                "oxidecar_mirror_requests_total",
                "Mirrored request copies by result: answered, failed, body_too_large, overflow",
                &["cluster", "result"],
            )?,
            registry,
        })
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
