//! Local replies: what the proxy answers itself (no route, overflow, upstream down, timeout), with
//! `x-oxidecar-reason` and an Envoy-style response flag; gRPC callers get a grpc-status instead.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::REASON_HEADER;

/// A local reply: status, response flag and reason.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) flags: &'static str,
    pub(super) reason: &'static str,
}

pub(super) const NO_ROUTE: Reply = Reply { status: 404, flags: "NR", reason: "no route matched" };
pub(super) const OVERFLOW: Reply = Reply { status: 503, flags: "UO", reason: "upstream overflow: circuit breaker max_requests reached" };
pub(super) const PENDING_OVERFLOW: Reply = Reply {
    status: 503,
    flags: "UO",
    reason: "upstream overflow: circuit breaker max_pending_requests reached (all max_connections in use)",
};
pub(super) const NO_HEALTHY: Reply = Reply { status: 503, flags: "UH", reason: "no healthy upstream" };
pub(super) const NO_ORIGINAL_DST: Reply = Reply { status: 503, flags: "UH", reason: "no original destination for passthrough" };
pub(super) const BLACKHOLE: Reply = Reply { status: 502, flags: "UH", reason: "destination is not a known service (BlackHoleCluster)" };
pub(super) const CONNECT_FAILURE: Reply = Reply { status: 503, flags: "UF", reason: "upstream connect error" };
pub(super) const RETRIES_EXHAUSTED: Reply = Reply { status: 503, flags: "URX,UF", reason: "upstream connect error, retries exhausted" };
pub(super) const TLS_FAILURE: Reply = Reply { status: 503, flags: "UF", reason: "upstream connect error: mTLS handshake failed (peer identity or certificate refused)" };
pub(super) const TLS_NOT_READY: Reply = Reply { status: 503, flags: "UF", reason: "mTLS to this cluster needs the workload certificate, which is not loaded" };
pub(super) const TIMEOUT: Reply = Reply { status: 504, flags: "UT", reason: "upstream request timeout" };
pub(super) const RESET: Reply = Reply { status: 503, flags: "UC", reason: "upstream reset before response" };

pub(super) async fn write_reply(session: &mut Session, reply: Reply, grpc: bool, close: bool) {
    let result = if grpc {
        // gRPC clients read the outcome from grpc-status, as Envoy's local replies do.
        let code = match reply.status {
            404 => "12",
            504 => "4",
            _ => "14",
        };
        let mut resp = match ResponseHeader::build(200, Some(4)) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "cannot build reply"),
        };
        let _ = resp.insert_header("content-type", "application/grpc");
        let _ = resp.insert_header("grpc-status", code);
        let _ = resp.insert_header("grpc-message", reply.reason);
        let _ = resp.insert_header(REASON_HEADER, reply.reason);
        match session.write_response_header(Box::new(resp), true).await {
            Ok(()) => session.write_response_body(None, true).await,
            Err(e) => Err(e),
        }
    } else {
        let body = Bytes::from(format!("{}\n", reply.reason));
        let mut resp = match ResponseHeader::build(reply.status, Some(4)) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "cannot build reply"),
        };
        let _ = resp.insert_header("content-type", "text/plain");
        let _ = resp.insert_header("content-length", body.len().to_string());
        let _ = resp.insert_header(REASON_HEADER, reply.reason);
        if close {
            // Pingora writes `connection: close` for HTTP/1 once keep-alive is off.
            session.set_keepalive(None);
        }
        match session.write_response_header(Box::new(resp), false).await {
            Ok(()) => session.write_response_body(Some(body), true).await,
            Err(e) => Err(e),
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream gone before the local reply");
    }
}

/// Writes a response the route itself defines (redirect or direct response): `status`, an optional
/// `location` and body, then the route's response header edits.
pub(super) async fn write_answer(
    session: &mut Session,
    route: &oxidecar_filters::route::CompiledRoute,
    status: u16,
    location: Option<&str>,
    body: Option<&Bytes>,
) {
    let mut resp = match ResponseHeader::build(status, Some(4)) {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "cannot build reply"),
    };
    if let Some(l) = location
        && let Err(e) = resp.insert_header(http::header::LOCATION, l)
    {
        tracing::debug!(error = %e, location = l, "redirect location is not a header value");
    }
    if body.is_some() {
        let _ = resp.insert_header(http::header::CONTENT_TYPE, "text/plain");
    }
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.map_or(0, Bytes::len).to_string());
    for name in &route.response_headers_to_remove {
        resp.remove_header(name);
    }
    for (name, value) in &route.response_headers_to_add {
        let _ = resp.insert_header(name.clone(), value.clone());
    }
    let end = body.is_none();
    let mut result = session.write_response_header(Box::new(resp), end).await;
    if let (Ok(()), Some(b)) = (&result, body) {
        result = session.write_response_body(Some(b.clone()), true).await;
    }
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream gone before the route's answer");
    }
}
