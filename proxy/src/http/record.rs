//! The access log record of one HTTP request, built from the session and the request's state.

use oxidecar_xds::model::{AccessLogFormat, ClusterKind, TrafficDirection};
use pingora::proxy::Session;

use super::MeshHttp;
use super::ctx::{Admitted, RequestCtx};
use crate::accesslog::{Entry, start_time};

/// What `logging` already decided about the request.
pub(super) struct Outcome<'a> {
    pub direction: TrafficDirection,
    pub status: u16,
    pub flags: &'a str,
    pub served_lane: Option<&'a str>,
}

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok())
}

impl MeshHttp {
    /// Writes the request's access log line, when the config asks for one.
    pub(super) fn access_log(&self, session: &Session, ctx: &RequestCtx, outcome: &Outcome<'_>) {
        let settings = &ctx.tables.snapshot.telemetry.access_log;
        if settings.format == AccessLogFormat::Off {
            return;
        }
        let req = session.req_header();
        let authority = req.uri.authority().map(|a| a.as_str()).or_else(|| header(session, "host"));
        let cluster = ctx.cluster.as_ref().map(|Admitted(c)| c);
        let upstream_host = cluster.and_then(|c| match c.kind {
            ClusterKind::OriginalDst | ClusterKind::OriginalDstLoopback => ctx.original_dst.map(|a| c.kind.passthrough_address(a).to_string()),
            ClusterKind::Blackhole => None,
            ClusterKind::Static | ClusterKind::Eds | ClusterKind::StrictDns | ClusterKind::LogicalDns => ctx.tried.last().map(|i| c.endpoints[*i].address.to_string()),
        });
        let traceparent = header(session, "traceparent");
        let trace_id = ctx.hop.as_ref().map(|h| h.trace_id_hex());
        let entry = Entry {
            start_time: start_time(ctx.start.elapsed()),
            kind: "http",
            listener: &self.listener,
            direction: match outcome.direction {
                TrafficDirection::Outbound => "outbound",
                TrafficDirection::Inbound => "inbound",
            },
            method: Some(req.method.as_str()),
            authority,
            path: req.uri.path_and_query().map(|p| p.as_str()),
            protocol: if session.is_http2() { "HTTP/2" } else { "HTTP/1.1" },
            response_code: outcome.status,
            response_flags: outcome.flags,
            route_name: ctx.route.as_ref().map(|r| &*r.name),
            upstream_cluster: cluster.map(|c| &*c.name),
            upstream_host,
            duration: ctx.start.elapsed().as_millis() as u64,
            upstream_service_time: ctx.upstream_service_time.map(|d| d.as_millis() as u64),
            bytes_received: session.body_bytes_read() as u64,
            bytes_sent: session.body_bytes_sent() as u64,
            downstream_remote_address: session.client_addr().map(|a| a.to_string()),
            x_forwarded_for: header(session, "x-forwarded-for"),
            user_agent: header(session, "user-agent"),
            request_id: header(session, "x-request-id"),
            trace_id: trace_id.as_deref(),
            traceparent,
            lane: ctx.lane.as_deref(),
            served_lane: outcome.served_lane,
            downstream_peer_principal: ctx.conn.as_ref().and_then(|c| c.peer_identity.as_deref()),
            upstream_peer_principal: ctx.upstream_identity.as_deref(),
            retries: ctx.retries,
        };
        self.shared.access_log.log(settings, &entry);
    }
}
