//! Spans for runtime API calls: the runtime reports each call (with the app's headers, which
//! carry its trace context) and the proxy turns it into a server span on the same exporter.

use std::sync::Arc;
use std::time::SystemTime;

use oxidecar_runtime_apis::{CallSpan, CallTracer};

use super::Hop;
use super::export::{Attr, FinishedSpan, Kind};
use crate::shared::Shared;

/// The [`CallTracer`] the runtime is given.
pub struct RuntimeTracer(pub Arc<Shared>);

impl std::fmt::Debug for RuntimeTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeTracer")
    }
}

struct RuntimeSpan {
    shared: Arc<Shared>,
    hop: Hop,
    protocol: &'static str,
    method: String,
}

impl CallTracer for RuntimeTracer {
    fn start(&self, protocol: &'static str, method: &str, headers: &http::HeaderMap) -> Option<Box<dyn CallSpan>> {
        let tables = self.0.tables.load();
        let settings = &tables.snapshot.telemetry.tracing;
        settings.otlp.as_ref()?;
        let hop = Hop::begin(headers, settings.sampling);
        hop.sampled.then(|| Box::new(RuntimeSpan { shared: self.0.clone(), hop, protocol, method: method.to_string() }) as Box<dyn CallSpan>)
    }
}

impl CallSpan for RuntimeSpan {
    fn end(self: Box<Self>, status: &str) {
        let error = match self.protocol {
            "grpc" => status != "0",
            _ => status.starts_with('5'),
        };
        let status_attr = match self.protocol {
            "grpc" => ("rpc.grpc.status_code", Attr::Int(status.parse().unwrap_or(2))),
            _ => ("http.response.status_code", Attr::Int(status.parse().unwrap_or(0))),
        };
        self.shared.trace.record(FinishedSpan {
            trace_id: self.hop.trace_id,
            span_id: self.hop.span_id,
            parent: self.hop.parent,
            tracestate: self.hop.tracestate.clone(),
            name: format!("runtime/{}", self.method),
            kind: Kind::Server,
            start: self.hop.start,
            end: SystemTime::now(),
            attributes: vec![
                ("rpc.system", Attr::Str("dapr".into())),
                ("rpc.method", Attr::Str(self.method.clone())),
                ("runtime.protocol", Attr::Str(self.protocol.into())),
                status_attr,
            ],
            error,
        });
    }
}
