//! OTLP/gRPC span export: finished spans go through a bounded queue to one task on the control
//! runtime, which sends them in batches to the collector the current config names. A full queue
//! or a failed export drops spans (counted in `oxidecar_trace_spans_total{result}`), never blocks
//! a request.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use oxidecar_xds::model::Node;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// Spans waiting for export before new ones are dropped.
const QUEUE_SPANS: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Str(String),
    Int(i64),
}

/// What a span is to its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A hop that received the request (inbound listener, runtime API call).
    Server,
    /// A hop that sends the request on (outbound listener).
    Client,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub tracestate: Option<String>,
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Attr)>,
    pub error: bool,
}

/// The data plane's side of the exporter.
pub struct Tracer {
    tx: mpsc::Sender<FinishedSpan>,
    rx: Mutex<Option<mpsc::Receiver<FinishedSpan>>>,
    spans: prometheus::IntCounterVec,
}

impl Tracer {
    pub fn new(spans: prometheus::IntCounterVec) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_SPANS);
        Self { tx, rx: Mutex::new(Some(rx)), spans }
    }

    /// Queues a span for export; drops it when the queue is full.
    pub fn record(&self, span: FinishedSpan) {
        if self.tx.try_send(span).is_err() {
            self.spans.with_label_values(&["dropped"]).inc();
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn kv(key: &str, value: Attr) -> KeyValue {
    let value = match value {
        Attr::Str(s) => any_value::Value::StringValue(s),
        Attr::Int(i) => any_value::Value::IntValue(i),
    };
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn to_otlp(s: FinishedSpan) -> Span {
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        trace_state: s.tracestate.unwrap_or_default(),
        name: s.name,
        kind: match s.kind {
            Kind::Server => span::SpanKind::Server as i32,
            Kind::Client => span::SpanKind::Client as i32,
        },
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s.attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: Some(Status {
            code: if s.error { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
            message: String::new(),
        }),
        ..Span::default()
    }
}

/// `service.name` and the workload's attributes, as Istio's sidecars report them.
fn resource(node: &Node, service_name: Option<&str>) -> Resource {
    let name = service_name.map_or_else(|| format!("{}.{}", node.canonical_service_name(), node.namespace_name()), str::to_owned);
    Resource {
        attributes: vec![
            kv("service.name", Attr::Str(name)),
            kv("service.version", Attr::Str(node.canonical_revision_name().to_string())),
            kv("k8s.namespace.name", Attr::Str(node.namespace_name().to_string())),
            kv("k8s.workload.name", Attr::Str(node.workload_name().to_string())),
            kv("istio.mesh_id", Attr::Str(node.mesh_name().to_string())),
            kv("istio.cluster_id", Attr::Str(node.cluster_name().to_string())),
        ],
        ..Resource::default()
    }
}

/// Sends the batch to the configured collector (or discards it when none is configured).
async fn export(shared: &Shared, client: &mut Option<(String, TraceServiceClient<tonic::transport::Channel>)>, batch: Vec<FinishedSpan>) {
    let tables = shared.tables.load();
    let settings = &tables.snapshot.telemetry.tracing;
    let Some(otlp) = &settings.otlp else { return };
    let n = batch.len() as u64;
    if client.as_ref().is_none_or(|(endpoint, _)| *endpoint != otlp.endpoint) {
        match tonic::transport::Endpoint::from_shared(otlp.endpoint.clone()) {
            Ok(e) => *client = Some((otlp.endpoint.clone(), TraceServiceClient::new(e.connect_timeout(otlp.timeout).connect_lazy()))),
            Err(e) => {
                tracing::warn!(endpoint = %otlp.endpoint, error = %e, "bad OTLP endpoint; spans dropped");
                shared.trace.spans.with_label_values(&["failed"]).inc_by(n);
                return;
            }
        }
    }
    let Some((_, c)) = client.as_mut() else { return };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(&tables.snapshot.node, settings.service_name.as_deref())),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "oxidecar".into(), version: env!("CARGO_PKG_VERSION").into(), ..Default::default() }),
                spans: batch.into_iter().map(to_otlp).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    match tokio::time::timeout(otlp.timeout, c.export(request)).await {
        Ok(Ok(_)) => shared.trace.spans.with_label_values(&["exported"]).inc_by(n),
        Ok(Err(status)) => {
            tracing::debug!(endpoint = %otlp.endpoint, %status, spans = n, "OTLP export failed");
            shared.trace.spans.with_label_values(&["failed"]).inc_by(n);
        }
        Err(_) => {
            tracing::debug!(endpoint = %otlp.endpoint, spans = n, "OTLP export timed out");
            shared.trace.spans.with_label_values(&["failed"]).inc_by(n);
        }
    }
}

/// The exporter task: exports what is queued whenever the queue runs empty or a batch is full,
/// until `stop`, then flushes.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let Some(mut rx) = shared.trace.rx.lock().ok().and_then(|mut r| r.take()) else { return };
    let mut client = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            got = rx.recv() => match got {
                Some(span) => {
                    batch.push(span);
                    false
                }
                None => true,
            },
            _ = stop.cancelled() => true,
        };
        while batch.len() < BATCH
            && let Ok(span) = rx.try_recv()
        {
            batch.push(span);
        }
        let full = batch.len() >= BATCH;
        let idle = rx.is_empty();
        if !batch.is_empty() && (full || idle || stopping) {
            export(&shared, &mut client, std::mem::take(&mut batch)).await;
        }
        if stopping {
            return;
        }
    }
}
