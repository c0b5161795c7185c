//! xDS client metrics, registered in the registry the proxy injects.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct XdsMetrics {
    /// 1 while a stream to the control plane is up.
    pub connected: IntGauge,
    pub reconnects: IntCounter,
    /// Responses by type and result (ack / nack).
    pub responses: IntCounterVec,
    /// Unix time of the last accepted update per type.
    pub last_update: IntGaugeVec,
    /// Resources held per type.
    pub resources: IntGaugeVec,
    /// Harmless Envoy fields skipped, by resource type and field.
    pub ignored_fields: IntCounterVec,
    /// Snapshots put in force.
    pub snapshots: IntCounter,
}

impl XdsMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let reconnects = IntCounter::new("oxidecar_xds_reconnects_total", "xDS streams that ended and were reopened")?;
        registry.register(Box::new(reconnects.clone()))?;
        let snapshots = IntCounter::new("oxidecar_xds_snapshots_applied_total", "Snapshots from xDS put in force")?;
        registry.register(Box::new(snapshots.clone()))?;
        Ok(Self {
            connected: gauge("oxidecar_xds_connected", "1 while the xDS stream to the control plane is up")?,
            reconnects,
            responses: counter_vec("oxidecar_xds_responses_total", "xDS responses by resource type and result (ack, nack)", &["type", "result"])?,
            last_update: gauge_vec("oxidecar_xds_last_update_timestamp_seconds", "Unix time of the last accepted xDS update per resource type", &["type"])?,
            resources: gauge_vec("oxidecar_xds_resources", "xDS resources held per type", &["type"])?,
            ignored_fields: counter_vec("oxidecar_xds_ignored_fields_total", "Envoy fields oxidecar skips as harmless, by resource type and field", &["type", "field"])?,
            snapshots,
        })
    }
}
