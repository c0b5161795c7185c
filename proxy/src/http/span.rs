//! Tracing on the HTTP path: join or start the trace when the request arrives, pass the context
//! to the upstream with this hop's span id, and export the hop's span when the request ends.

use std::time::SystemTime;

use http::HeaderValue;
use oxidecar_xds::model::TrafficDirection;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::MeshHttp;
use super::ctx::{Admitted, RequestCtx};
use crate::trace::export::{Attr, FinishedSpan, Kind};
use crate::trace::{self, Hop};

impl MeshHttp {
    /// Joins the request's trace (or starts one) and makes sure it has an `x-request-id`.
    pub(super) fn begin_trace(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let sampling = ctx.tables.snapshot.telemetry.tracing.sampling;
        let req = session.req_header_mut();
        ctx.hop = Some(Hop::begin(&req.headers, sampling));
        if !req.headers.contains_key(trace::REQUEST_ID)
            && let Ok(id) = HeaderValue::from_str(&trace::new_request_id())
        {
            let _ = req.insert_header(trace::REQUEST_ID, id);
        }
    }

    /// The next hop's context: our span is its parent.
    pub(super) fn inject_trace(&self, upstream: &mut RequestHeader, ctx: &RequestCtx) {
        let Some(hop) = &ctx.hop else { return };
        let mut set = Vec::with_capacity(6);
        let mut remove = Vec::new();
        hop.inject(|k, v| set.push((k, v)), |k| remove.push(k));
        for k in remove {
            upstream.remove_header(k);
        }
        for (k, v) in set {
            let _ = upstream.insert_header(k, v);
        }
    }

    /// Exports this hop's span when the trace is sampled and a collector is configured.
    pub(super) fn finish_span(&self, session: &Session, ctx: &RequestCtx, direction: TrafficDirection, status: u16, flags: &str) {
        let Some(hop) = &ctx.hop else { return };
        if !hop.sampled || ctx.tables.snapshot.telemetry.tracing.otlp.is_none() {
            return;
        }
        let req = session.req_header();
        let authority = req.uri.authority().map(|a| a.as_str()).or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok())).unwrap_or("-");
        let node = &ctx.tables.snapshot.node;
        let mut attributes = vec![
            ("http.request.method", Attr::Str(req.method.as_str().to_string())),
            ("url.path", Attr::Str(req.uri.path().to_string())),
            ("server.address", Attr::Str(authority.to_string())),
            ("http.response.status_code", Attr::Int(i64::from(status))),
            ("response_flags", Attr::Str(flags.to_string())),
            ("network.protocol.version", Attr::Str(if session.is_http2() { "2" } else { "1.1" }.to_string())),
            ("listener", Attr::Str(self.listener.to_string())),
            ("istio.canonical_service", Attr::Str(node.canonical_service_name().to_string())),
            ("istio.namespace", Attr::Str(node.namespace_name().to_string())),
        ];
        if let Some(Admitted(c)) = &ctx.cluster {
            attributes.push(("upstream_cluster", Attr::Str(c.name.to_string())));
            if let Some(i) = ctx.tried.last() {
                attributes.push(("upstream_address", Attr::Str(c.endpoints[*i].address.to_string())));
            }
        }
        if let Some(id) = req.headers.get(trace::REQUEST_ID).and_then(|v| v.to_str().ok()) {
            attributes.push(("guid:x-request-id", Attr::Str(id.to_string())));
        }
        if let Some(lane) = &ctx.lane {
            attributes.push(("lane", Attr::Str(lane.clone())));
        }
        if let Some(g) = ctx.grpc_status.as_deref().and_then(|g| g.parse::<i64>().ok()) {
            attributes.push(("rpc.grpc.status_code", Attr::Int(g)));
        }
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        self.shared.trace.record(FinishedSpan {
            trace_id: hop.trace_id,
            span_id: hop.span_id,
            parent: hop.parent,
            tracestate: hop.tracestate.clone(),
            name: format!("{host}{}", if direction == TrafficDirection::Inbound { " inbound" } else { "" }),
            kind: match direction {
                TrafficDirection::Outbound => Kind::Client,
                TrafficDirection::Inbound => Kind::Server,
            },
            start: hop.start,
            end: SystemTime::now(),
            attributes,
            error: status >= 500 || status == 0,
        });
    }
}
