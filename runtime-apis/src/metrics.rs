//! Runtime API metrics: a request counter and a latency histogram per protocol, building block,
//! method and component, registered in the process-wide registry the proxy injects.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Latency buckets in seconds: 50 µs to 5 s, for in-process stores and remote backends alike.
const BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Handles for the runtime API metrics.
#[derive(Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    deliveries: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("oxidecar_runtime_api_requests_total", "Runtime API calls by protocol, building block, method, component and result code"),
            &["protocol", "block", "method", "component", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("oxidecar_runtime_api_request_duration_seconds", "Runtime API call latency by protocol, building block, method and component")
                .buckets(BUCKETS.to_vec()),
            &["protocol", "block", "method", "component"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "oxidecar_pubsub_deliveries_total",
                "Topic messages handled for the app by pubsub, topic, the message's lane (`base` without one) and outcome (delivered, dropped, failed, refused: an open inbound circuit breaker sent it back to the broker, skipped: another lane's subscriber takes it)",
            ),
            &["pubsub", "topic", "lane", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        Ok(Self { requests, duration, deliveries })
    }

    /// Records one call; `component` is the loaded component it addressed, or "".
    pub fn observe(&self, protocol: &'static str, block: &'static str, method: &'static str, component: &str, code: &str, elapsed: Duration) {
        self.requests.with_label_values(&[protocol, block, method, component, code]).inc();
        self.duration.with_label_values(&[protocol, block, method, component]).observe(elapsed.as_secs_f64());
    }

    /// Counts one topic message handled for the app (`lane`: `None` is the base lane).
    pub fn delivery(&self, pubsub: &str, topic: &str, lane: Option<&str>, outcome: &'static str) {
        self.deliveries.with_label_values(&[pubsub, topic, lane.unwrap_or("base"), outcome]).inc();
    }
}
