//! State shared by every listener and the control plane: the current tables, metrics and the
//! drain/readiness switches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use arc_swap::ArcSwap;
use oxidecar_filters::lane::LaneMemory;

use crate::metrics::Metrics;
use crate::tables::Tables;
use crate::tls::TlsContext;

/// Readiness and in-flight work, for `/ready` and the SIGTERM drain.
#[derive(Debug, Default)]
pub struct Drain {
    ready: AtomicBool,
    /// False while the first config from xDS is awaited.
    config_pending: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicI64,
    /// Set by `/drain_listeners`: 1 = inbound listeners refuse new connections, 2 = all do.
    closed: std::sync::atomic::AtomicU8,
}

impl Drain {
    /// With xDS: not ready until the first complete config is in force.
    pub fn set_config_pending(&self) {
        self.config_pending.store(true, Ordering::SeqCst);
    }
    pub fn set_config_ready(&self) {
        self.config_pending.store(false, Ordering::SeqCst);
    }
    pub fn config_ready(&self) -> bool {
        !self.config_pending.load(Ordering::SeqCst)
    }
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
    /// Ready means: listeners accept and no drain has started.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst) && self.config_ready()
    }
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    /// Makes the listeners (or only the inbound ones) close new connections at once.
    pub fn close_listeners(&self, inbound_only: bool) {
        self.closed.fetch_max(if inbound_only { 1 } else { 2 }, Ordering::SeqCst);
    }
    /// Whether a listener of this direction must refuse new connections.
    pub fn refuses(&self, direction: oxidecar_xds::model::TrafficDirection) -> bool {
        match self.closed.load(Ordering::Relaxed) {
            0 => false,
            1 => direction == oxidecar_xds::model::TrafficDirection::Inbound,
            _ => true,
        }
    }
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Counts one request or TCP connection as in flight until dropped.
pub struct InFlight(Arc<Shared>);

impl InFlight {
    pub fn new(shared: &Arc<Shared>) -> Self {
        shared.drain.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.drain.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a trace stays associated with its lane, and how many traces are remembered.
const LANE_MEMORY_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const LANE_MEMORY_MAX: usize = 100_000;

pub struct Shared {
    pub tables: ArcSwap<Tables>,
    pub metrics: Metrics,
    pub drain: Drain,
    /// Trace id → lane of requests seen, so follow-up calls in the same trace keep the lane.
    pub lanes: LaneMemory,
    /// Where access log lines go (per the current config's `telemetry.access_log`).
    pub access_log: crate::accesslog::AccessLogger,
    /// This node's encoded metadata-exchange headers, re-encoded when the node changes.
    pub node_headers: arc_swap::ArcSwapOption<crate::http::exchange::NodeHeaders>,
    /// Workload identity and TLS configs for mesh mTLS.
    pub tls: Arc<TlsContext>,
    /// Finished spans on their way to the OTLP exporter.
    pub trace: crate::trace::export::Tracer,
    /// Copies of requests for mirror clusters, in flight.
    pub mirrors: crate::http::mirror::Mirrors,
}

impl Shared {
    pub fn new(tables: Tables, metrics: Metrics, tls: Arc<TlsContext>) -> Arc<Self> {
        Arc::new(Self {
            tls,
            tables: ArcSwap::from_pointee(tables),
            access_log: crate::accesslog::AccessLogger::new(metrics.access_log_dropped.clone()),
            node_headers: Default::default(),
            trace: crate::trace::export::Tracer::new(metrics.trace_spans.clone()),
            metrics,
            drain: Drain::default(),
            lanes: LaneMemory::new(LANE_MEMORY_TTL, LANE_MEMORY_MAX),
            mirrors: Default::default(),
        })
    }
}
