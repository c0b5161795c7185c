//! The HTTP half of a listener: Pingora `ProxyHttp` hooks that route each request, admit it past
//! the cluster's circuit breaker, pick an endpoint, retry per policy and record Istio metrics.
//! Local replies carry `x-oxidecar-reason` and an Envoy-style response flag (`NR`, `UF`, `UO`, ...).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use oxidecar_filters::breaker::{Occupancy, PendingOverflow};
use oxidecar_filters::outlier::Outcome;
use oxidecar_filters::route::{Action, CompiledRoute};
use oxidecar_filters::retry::{self, Attempt};
use oxidecar_xds::model::{ClusterKind, Protocol, TrafficDirection, UpstreamProtocol};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::SocketDigest;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

mod ctx;
pub mod exchange;
pub mod mirror;
mod record;
mod reply;
mod span;

use ctx::{Admitted, RequestCtx, replayable};
use reply::*;

use crate::shared::{InFlight, Shared};
use crate::tables::{ChainAction, ClusterState, Tables};
use crate::tls::socket::info_of;
use crate::tls::connect::EndpointConnect;
use crate::tls::upstream::Carrying;

/// Header naming why the proxy answered instead of the upstream.
pub const REASON_HEADER: &str = "x-oxidecar-reason";
/// Concurrent HTTP/2 streams per pooled upstream connection (the circuit breakers count the same).
const MAX_H2_STREAMS: usize = oxidecar_filters::breaker::STREAMS_PER_CONNECTION as usize;

/// The `ProxyHttp` of one listener.
pub struct MeshHttp {
    pub listener: Arc<str>,
    pub shared: Arc<Shared>,
}


/// Which `max_connection_duration` window now falls in: part of the pool key, so a new window
/// opens new connections and the old ones close once idle.
fn connection_epoch(max: std::time::Duration) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_millis() / max.as_millis().max(1)) as u64
}

/// Whether a request is gRPC (by its content type).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A Pingora peer for endpoint `addr` of `cluster`: protocol, connect timeout, pool key and, when
/// the endpoint takes mesh mTLS, the connector (the bool says so). `Err`: mTLS without a
/// workload certificate.
pub(crate) fn endpoint_peer(shared: &Shared, cluster: &ClusterState, addr: SocketAddr, endpoint_tls: bool, h2: bool) -> Result<(HttpPeer, bool), String> {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(cluster.connect_timeout);
    if h2 {
        peer.options.set_http_version(2, 2);
        peer.options.max_h2_streams = MAX_H2_STREAMS;
    } else {
        peer.options.set_http_version(1, 1);
    }
    // Pool keys: connections older than the cluster's max duration are not reused.
    let epoch = cluster.max_connection_duration.map_or(0, connection_epoch);
    let (true, Some(tls)) = (endpoint_tls, &cluster.tls) else {
        peer.group_key = epoch;
        return Ok((peer, false));
    };
    let options = peer.options.clone();
    let carrying = if h2 { Carrying::H2 } else { Carrying::Http1 };
    let connector = tls.connector(&shared.tls, carrying, cluster.connect_timeout).map_err(|e| format!("cluster {}: mTLS: {e}", cluster.name))?;
    // Pingora sees a plaintext peer at 0.0.0.0 (see tls::connect::EndpointConnect); the
    // endpoint, identity generation, protocol and age window make up the pool key.
    let mut peer = HttpPeer::new(SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port()), false, tls.sni_str().to_string());
    peer.options = options;
    let mut key = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(addr, connector.generation, carrying as u8, epoch), &mut key);
    peer.group_key = std::hash::Hasher::finish(&key);
    peer.options.custom_l4 = Some(Arc::new(EndpointConnect { mesh: connector, target: addr }));
    Ok((peer, true))
}

/// The app's own path for `/v1.0/invoke/{app-id}/method/{method...}`: `/{method...}`.
fn app_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1.0/invoke/")?;
    let (_app, rest) = rest.split_once('/')?;
    let method = rest.strip_prefix("method")?;
    method.starts_with('/').then_some(method)
}

/// The request's authority: the URI's (HTTP/2, absolute form) or the Host header.
pub(crate) fn authority(req: &RequestHeader) -> &str {
    req.uri.authority().map(|a| a.as_str()).or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok())).unwrap_or("")
}

/// The scheme the client used: `x-forwarded-proto` when a front proxy set it, else whether this
/// connection was TLS.
fn request_scheme(req: &RequestHeader, tls: bool) -> &'static str {
    match req.headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(b"https") => "https",
        Some(b"http") => "http",
        _ if tls => "https",
        _ => "http",
    }
}

/// The connection's local address and, when it was redirected, its original destination.
pub fn connection_addrs(digest: Option<&SocketDigest>) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let Some(sd) = digest else { return (None, None) };
    let local = sd.local_addr().and_then(|a| a.as_inet()).copied().map(crate::original_dst::canonical);
    let original = sd.original_dst().and_then(|a| a.as_inet()).copied().filter(|o| Some(*o) != local);
    (local, original)
}

impl MeshHttp {
    /// The request's lane: its header or baggage, else the lane its trace was last seen in. A lane
    /// seen with a trace id is remembered for the calls the app makes while handling it.
    fn find_lane(&self, session: &Session, ctx: &mut RequestCtx) {
        let headers = &session.req_header().headers;
        let trace = oxidecar_filters::lane::trace_id(headers);
        let now = Instant::now();
        if let Some(lane) = oxidecar_filters::lane::request_lane(&ctx.tables.snapshot.lanes, headers) {
            if let Some(trace) = trace {
                self.shared.lanes.remember(trace, lane, now);
            }
            ctx.lane = Some(lane.to_owned());
        } else if let Some(lane) = trace.and_then(|t| self.shared.lanes.lane_of(t, now)) {
            ctx.lane = Some(lane);
            ctx.lane_remembered = true;
        }
    }

    /// The local runtime, when this request is a service invocation arriving on an inbound listener.
    /// Where an invocation arriving on an inbound listener goes, and whether that is the app itself.
    fn invocation_target(&self, session: &Session, tables: &Tables) -> Option<(Arc<ClusterState>, bool)> {
        let runtime = tables.runtime.as_ref()?;
        let req = session.req_header();
        if self.direction(tables) != TrafficDirection::Inbound || !req.headers.contains_key(&crate::invoke::INVOKED_HEADER) {
            return None;
        }
        if !req.uri.path().starts_with("/v1.0/invoke/") {
            // A gRPC call a peer's runtime proxied (`dapr-app-id`): to the gRPC app as it is.
            return runtime.grpc_app.as_ref().filter(|_| is_grpc(&req.headers)).map(|app| (app.clone(), true));
        }
        Some(match &runtime.http_app {
            Some(app) if app_path(req.uri.path()).is_some() => (app.clone(), true),
            _ => (runtime.cluster.clone(), false),
        })
    }

    /// Takes the attempt's share of the cluster's `max_connections` (a whole connection for
    /// HTTP/1, one stream for HTTP/2), waiting as pending (up to the route deadline) when none is
    /// free; a full pending queue is an immediate 503 `UO`.
    async fn admit_connection(&self, cluster: &ClusterState, h2: bool, ctx: &mut RequestCtx) -> Result<()> {
        let occupancy = if h2 { Occupancy::Stream } else { Occupancy::Connection };
        let gate = &cluster.stats.gate;
        let limits = cluster.gate_limits();
        let admitted = match gate.try_acquire(occupancy, limits) {
            Some(permit) => Ok(permit),
            None => match ctx.deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), gate.acquire(occupancy, limits)).await {
                    Ok(admitted) => admitted,
                    Err(_) => {
                        ctx.reply = Some(TIMEOUT);
                        return Err(Error::explain(ErrorType::HTTPStatus(504), TIMEOUT.reason));
                    }
                },
                None => gate.acquire(occupancy, limits).await,
            },
        };
        match admitted {
            Ok(permit) => {
                ctx.connection = Some(permit);
                Ok(())
            }
            Err(PendingOverflow) => {
                tracing::debug!(cluster = %cluster.name, "max_connections in use and max_pending_requests waiting: 503 UO");
                ctx.reply = Some(PENDING_OVERFLOW);
                Err(Error::explain(ErrorType::HTTPStatus(503), PENDING_OVERFLOW.reason))
            }
        }
    }

    fn direction(&self, tables: &Tables) -> TrafficDirection {
        tables.listeners.get(&*self.listener).map_or(TrafficDirection::Outbound, |l| l.direction)
    }

    /// Finds the route for the request; `Err` is the local reply to send instead.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> Result<Arc<CompiledRoute>, Reply> {
        let req = session.req_header();
        let authority = authority(req);
        let (local, original) = connection_addrs(session.digest().and_then(|d| d.socket_digest.as_deref()));
        ctx.original_dst = original;
        let port = original.or(local).map_or(0, |a| a.port());
        let listener = ctx.tables.listeners.get(&*self.listener).ok_or(NO_ROUTE)?;
        // The chain the listener picked for this connection, when it had to choose by sniffing.
        let picked = ctx.conn.as_ref().and_then(|c| c.chain.as_deref()).and_then(|name| listener.chain_named(name));
        let routes = picked
            .into_iter()
            .chain(listener.candidates(original.or(local).map(|a| a.ip()), port).filter(|c| c.protocol == Protocol::Http))
            .find_map(|c| match &c.action {
                ChainAction::Http { routes } => Some(routes),
                ChainAction::Tcp { .. } => None,
            })
            .ok_or(NO_ROUTE)?;
        routes.find(authority, req.uri.path(), &req.headers).cloned().ok_or_else(|| {
            tracing::info!(listener = %self.listener, authority, path = req.uri.path(), "no route matched: 404 NR");
            NO_ROUTE
        })
    }
}

#[async_trait]
impl ProxyHttp for MeshHttp {
    type CTX = RequestCtx;

    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {
        // No response compression in a sidecar: the app decides its encoding. Leaving Pingora's
        // default module out saves its per-request setup.
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            tables: self.shared.tables.load_full(),
            _in_flight: InFlight::new(&self.shared),
            start: Instant::now(),
            grpc: false,
            original_dst: None,
            route: None,
            cluster: None,
            endpoint: None,
            connection: None,
            tried: Vec::new(),
            retries: 0,
            retrying_on_status: false,
            deadline: None,
            reply: None,
            grpc_status: None,
            to_runtime: false,
            to_app: false,
            lane: None,
            lane_remembered: false,
            hash_key: None,
            upstream_sent: None,
            upstream_service_time: None,
            peer: None,
            conn: None,
            upstream_identity: None,
            upstream_tls: false,
            hop: None,
            mirror: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.conn = session.digest().and_then(|d| info_of(d.proxy_digest.as_deref())).cloned();
        ctx.grpc = is_grpc(&session.req_header().headers);
        self.find_lane(session, ctx);
        self.begin_trace(session, ctx);
        self.read_request_metadata(session, ctx, self.direction(&ctx.tables));
        if let Some((target, to_app)) = self.invocation_target(session, &ctx.tables) {
            // Service invocation from a peer sidecar: to the HTTP app directly, or through the
            // local runtime (which speaks OnInvoke to a gRPC app).
            target.stats.rq_active.fetch_add(1, Ordering::Relaxed);
            ctx.cluster = Some(Admitted(target));
            ctx.to_app = to_app;
            ctx.to_runtime = !to_app;
            return Ok(false);
        }
        let route = match self.route(session, ctx) {
            Ok(r) => r,
            Err(reply) => {
                ctx.reply = Some(reply);
                write_reply(session, reply, ctx.grpc, false).await;
                return Ok(true);
            }
        };
        let destination = match &route.action {
            Action::Forward(d) => d,
            Action::Redirect(r) => {
                let req = session.req_header();
                let tls = ctx.conn.as_ref().is_some_and(|c| c.tls);
                let location = r.location(request_scheme(req, tls), authority(req), req.uri.path_and_query().map_or("/", |p| p.as_str()));
                write_answer(session, &route, r.status, Some(&location), None).await;
                ctx.route = Some(route);
                return Ok(true);
            }
            Action::Direct { status, body } => {
                write_answer(session, &route, *status, None, body.as_ref()).await;
                ctx.route = Some(route);
                return Ok(true);
            }
        };
        let cluster = ctx.tables.cluster(destination.pick()).clone();
        let cluster_kind = cluster.kind;
        let active = cluster.stats.rq_active.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(cluster);
        if active >= u64::from(admitted.0.circuit_breakers.max_requests) {
            admitted.0.stats.upstream_rq_pending_overflow.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(cluster = %admitted.0.name, "circuit breaker open: 503 UO");
            ctx.reply = Some(OVERFLOW);
            ctx.cluster = Some(admitted);
            write_reply(session, OVERFLOW, ctx.grpc, false).await;
            return Ok(true);
        }
        ctx.cluster = Some(admitted);
        if cluster_kind == ClusterKind::Blackhole {
            // REGISTRY_ONLY: the destination is not a known service.
            ctx.reply = Some(BLACKHOLE);
            write_reply(session, BLACKHOLE, ctx.grpc, false).await;
            return Ok(true);
        }
        ctx.deadline = route.timeout.map(|t| ctx.start + t);
        if !route.hash_policy.is_empty() {
            let source_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
            ctx.hash_key = route.hash_key(&session.req_header().headers, source_ip);
        }
        if route.retry_policy.is_some() {
            // Keep up to 64 KiB of the request body so an attempt can be replayed.
            session.as_mut().enable_retry_buffering();
        }
        if !route.mirrors.is_empty() {
            ctx.mirror = mirror::MirrorCopy::sample(&route, &ctx.tables, session.req_header(), ctx.lane.as_deref());
            // Without a body, the body filter may never run (HTTP/2 END_STREAM on the headers).
            if session.as_mut().is_body_empty()
                && let Some(copy) = ctx.mirror.take()
            {
                self.shared.mirrors.send(&self.shared, copy);
            }
        }
        ctx.route = Some(route);
        Ok(false)
    }

    async fn request_body_filter(&self, _session: &mut Session, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(copy) = &mut ctx.mirror {
            if let Some(chunk) = body {
                copy.push(chunk);
            }
            if end_of_stream && let Some(copy) = ctx.mirror.take() {
                self.shared.mirrors.send(&self.shared, copy);
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(Admitted(cluster)) = &ctx.cluster else {
            return Err(Error::explain(ErrorType::InternalError, "no cluster chosen"));
        };
        let cluster = cluster.clone();
        if ctx.retries > 0
            && let Some(policy) = ctx.retry_policy() {
                let mut pause = retry::backoff(policy, ctx.retries);
                if let Some(d) = ctx.deadline {
                    pause = pause.min(d.saturating_duration_since(Instant::now()));
                }
                tokio::time::sleep(pause).await;
            }
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            ctx.reply = Some(TIMEOUT);
            return Err(Error::explain(ErrorType::HTTPStatus(504), TIMEOUT.reason));
        }
        let h2 = match cluster.protocol {
            UpstreamProtocol::H2 => true,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Auto => session.is_http2(),
        };
        self.admit_connection(&cluster, h2, ctx).await?;
        let mut endpoint_tls = false;
        let addr = match cluster.kind {
            ClusterKind::Blackhole => {
                ctx.reply = Some(BLACKHOLE);
                return Err(Error::explain(ErrorType::HTTPStatus(BLACKHOLE.status), BLACKHOLE.reason));
            }
            ClusterKind::OriginalDst | ClusterKind::OriginalDstLoopback => match ctx.original_dst {
                Some(a) => cluster.kind.passthrough_address(a),
                None => {
                    ctx.reply = Some(NO_ORIGINAL_DST);
                    return Err(Error::explain(ErrorType::HTTPStatus(503), NO_ORIGINAL_DST.reason));
                }
            },
            ClusterKind::Static | ClusterKind::Eds | ClusterKind::StrictDns | ClusterKind::LogicalDns => {
                // A retry prefers an endpoint not tried yet, but may reuse one when all were tried.
                let lane = ctx.lane.as_deref();
                let key = ctx.hash_key;
                let picked =
                    cluster.pick(&ctx.tried, lane, key).or_else(|| (ctx.retries > 0).then(|| cluster.pick(&[], lane, key)).flatten());
                let Some(i) = picked else {
                    ctx.reply = Some(if ctx.retries > 0 { RETRIES_EXHAUSTED } else { NO_HEALTHY });
                    return Err(Error::explain(ErrorType::HTTPStatus(503), NO_HEALTHY.reason));
                };
                ctx.tried.push(i);
                ctx.endpoint = Some(i);
                let stats = &cluster.endpoints[i].stats;
                stats.rq_active.fetch_add(1, Ordering::Relaxed);
                stats.rq_total.fetch_add(1, Ordering::Relaxed);
                endpoint_tls = cluster.endpoints[i].tls;
                cluster.endpoints[i].address
            }
        };
        let (mut peer, tls) = endpoint_peer(&self.shared, &cluster, addr, endpoint_tls, h2).map_err(|e| {
            ctx.reply = Some(TLS_NOT_READY);
            Error::explain(ErrorType::HTTPStatus(503), e)
        })?;
        ctx.upstream_tls = tls;
        let per_try = ctx.retry_policy().and_then(|p| p.per_try_timeout);
        let remaining = ctx.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        peer.options.read_timeout = match (per_try, remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_identity = digest.and_then(|d| info_of(d.proxy_digest.as_deref())).and_then(|i| i.peer_identity.clone());
        Ok(())
    }

    fn fail_to_connect(&self, session: &mut Session, peer: &HttpPeer, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
        if let (Some(i), Some(Admitted(cluster))) = (ctx.endpoint, &ctx.cluster) {
            cluster.endpoints[i].stats.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
            cluster.record(i, Outcome::LocalFailure);
        }
        ctx.release_endpoint(true);
        tracing::debug!(peer = %peer, error = %e, "upstream connect failed");
        let replay = replayable(session, ctx.retry_policy(), true, ctx.grpc);
        if ctx.may_retry(Attempt::ConnectFailure, replay) {
            ctx.start_retry();
            e.set_retry(true);
        } else {
            e.set_retry(false);
            ctx.reply = Some(if ctx.retries > 0 {
                RETRIES_EXHAUSTED
            } else if e.etype() == &ErrorType::TLSHandshakeFailure {
                TLS_FAILURE
            } else {
                CONNECT_FAILURE
            });
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if std::mem::take(&mut ctx.retrying_on_status) {
            // upstream_response_filter already counted this attempt and decided to retry.
            e.set_retry(true);
            return e;
        }
        if let (Some(i), Some(Admitted(cluster))) = (ctx.endpoint, &ctx.cluster) {
            // A reset or a timeout after connecting: a gateway error for outlier detection.
            cluster.record(i, Outcome::LocalFailure);
        }
        ctx.release_endpoint(true);
        let attempt = if e.etype() == &ErrorType::H2Error && e.to_string().contains("REFUSED_STREAM") {
            Attempt::RefusedStream
        } else {
            Attempt::Reset
        };
        let replay = replayable(session, ctx.retry_policy(), attempt == Attempt::RefusedStream, ctx.grpc);
        if session.response_written().is_none() && ctx.may_retry(attempt, replay) {
            ctx.start_retry();
            e.set_retry(true);
        } else if !replay {
            e.set_retry(false);
        } else {
            // A stale pooled connection closed under us: retry once on a fresh one.
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        if !resp.status.is_informational() {
            ctx.upstream_service_time = ctx.upstream_sent.map(|t| t.elapsed());
        }
        let status = resp.status.as_u16();
        let grpc_status = if ctx.grpc {
            resp.headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok())
        } else {
            None
        };
        let failed = status >= 500 || grpc_status.is_some_and(|c| c != 0) || ctx.retry_policy().is_some_and(|p| p.retriable_status_codes.contains(&status));
        if !failed || resp.status.is_informational() {
            return Ok(());
        }
        let replay = replayable(session, ctx.retry_policy(), false, ctx.grpc);
        if !ctx.may_retry(Attempt::Response { status, grpc_status }, replay) {
            return Ok(());
        }
        // Nothing has reached the client yet: drop this answer and try again.
        if let (Some(i), Some(Admitted(cluster))) = (ctx.endpoint, &ctx.cluster) {
            cluster.record(i, Outcome::Status(status));
        }
        ctx.release_endpoint(true);
        ctx.start_retry();
        ctx.retrying_on_status = true;
        tracing::debug!(status, ?grpc_status, retries = ctx.retries, "retrying after the upstream's answer");
        let mut e = Error::explain(ErrorType::HTTPStatus(status), "upstream answer retried");
        e.set_retry(true);
        Err(e)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        self.write_request_metadata(upstream, ctx, self.direction(&ctx.tables))?;
        self.inject_trace(upstream, ctx);
        if ctx.lane_remembered
            && let Some(lane) = ctx.lane.as_deref().and_then(|l| http::HeaderValue::from_str(l).ok()) {
                upstream.insert_header(ctx.tables.snapshot.lanes.header.clone(), lane)?;
            }
        if ctx.to_app {
            // `/v1.0/invoke/{app}/method/{m}` becomes the app's `/{m}`; a proxied gRPC path stays.
            if let Some(path) = app_path(upstream.uri.path()) {
                let uri = match upstream.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path.to_string(),
                };
                let uri = uri.parse::<http::Uri>().map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, format!("invoke path: {e}")))?;
                upstream.set_uri(uri);
            }
            upstream.remove_header(&crate::invoke::INVOKED_HEADER);
        }
        if ctx.to_runtime
            && let Some(token) = ctx.tables.runtime.as_ref().and_then(|r| r.api_token.clone()) {
                upstream.insert_header("dapr-api-token", token)?;
            }
        if let Some(route) = &ctx.route {
            for name in &route.request_headers_to_remove {
                upstream.remove_header(name);
            }
            for (name, value) in &route.request_headers_to_add {
                upstream.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }

    async fn response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        self.exchange_response_metadata(resp, ctx, self.direction(&ctx.tables))?;
        if let Some(route) = &ctx.route {
            for name in &route.response_headers_to_remove {
                resp.remove_header(name);
            }
            for (name, value) in &route.response_headers_to_add {
                resp.insert_header(name.clone(), value.clone())?;
            }
        }
        if ctx.grpc {
            ctx.grpc_status = resp.headers.get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_owned);
        }
        Ok(())
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Bytes>> {
        if let Some(v) = trailers.get("grpc-status").and_then(|v| v.to_str().ok()) {
            ctx.grpc_status = Some(v.to_owned());
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let reply = ctx.reply.or_else(|| match (e.esource(), e.etype()) {
            (_, ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectError | ErrorType::ConnectNoRoute) => {
                Some(CONNECT_FAILURE)
            }
            (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => Some(TIMEOUT),
            (ErrorSource::Upstream, _) => Some(RESET),
            (ErrorSource::Downstream, _) => None,
            (_, ErrorType::HTTPStatus(code)) => Some(Reply { status: *code, flags: "-", reason: "local reply" }),
            _ => Some(Reply { status: 500, flags: "-", reason: "internal proxy error" }),
        });
        let code = match reply {
            Some(reply) if session.response_written().is_none() => {
                ctx.reply = Some(reply);
                // Pingora closes the downstream after a failure past peer selection, so say so:
                // clients must not send the next request on this connection.
                write_reply(session, reply, ctx.grpc, true).await;
                reply.status
            }
            Some(reply) => {
                ctx.reply = Some(reply);
                0
            }
            None => {
                ctx.reply = Some(Reply { status: 0, flags: "DC", reason: "downstream connection terminated" });
                0
            }
        };
        if code >= 500 {
            tracing::debug!(listener = %self.listener, error = %e, status = code, "request failed");
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Failures are counted in metrics and logged by us at debug; Pingora's error line per
        // failed request would flood the log when an upstream is down.
        true
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        error: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        // Retries are counted per endpoint (`/clusters` cx_connect_fail, rq_error) and in
        // istio_requests_total; keep one debug line instead of a warning per retried request.
        tracing::debug!(retries = ctx.retries, error = %error, "retrying on another endpoint");
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.release_endpoint(false);
        let tables = ctx.tables.clone();
        let direction = self.direction(&tables);
        let status = match (session.response_written(), ctx.reply) {
            (_, Some(reply)) if reply.status != 0 => reply.status,
            (Some(resp), _) => resp.status.as_u16(),
            _ => 0,
        };
        let status_code = http::StatusCode::from_u16(status).ok();
        let code = status_code.as_ref().map_or("0", |s| s.as_str());
        if ctx.reply.is_none() && status != 0 {
            // The upstream answered: its status feeds outlier detection.
            if let (Some(i), Some(Admitted(cluster))) = (ctx.tried.last(), &ctx.cluster) {
                if status >= 500 {
                    cluster.endpoints[*i].stats.rq_error.fetch_add(1, Ordering::Relaxed);
                }
                if !cluster.kind.is_original_dst() && cluster.kind != ClusterKind::Blackhole {
                    cluster.record(*i, Outcome::Status(status));
                }
            }
        }
        let retries_exhausted =
            status >= 500 && ctx.retries > 0 && ctx.retry_policy().is_some_and(|p| ctx.retries >= p.num_retries);
        let flags = ctx.reply.map_or(if retries_exhausted { "URX" } else { "-" }, |r| r.flags);
        let service = ctx.cluster.as_ref().map_or("unknown", |Admitted(c)| &*c.service);
        let my_id = self.shared.tls.spiffe_id();
        let istio = exchange::request_labels(ctx, direction, code, flags, my_id.as_deref());
        let labels = istio.values(&self.shared.metrics.label_bounds, &tables.snapshot.telemetry.metrics);
        let m = &self.shared.metrics;
        m.requests_total.with_label_values(&labels).inc();
        let served_lane = match (&ctx.cluster, ctx.lane.as_deref()) {
            (Some(Admitted(c)), lane) => c.served_lane(lane),
            (None, _) => None,
        };
        if let Some(lane) = ctx.lane.as_deref() {
            m.lane_requests.with_label_values(&[direction.reporter(), service, lane, served_lane.unwrap_or("base")]).inc();
        }
        m.request_duration_ms.with_label_values(&labels).observe(ctx.start.elapsed().as_secs_f64() * 1000.0);
        m.request_bytes.with_label_values(&labels).observe(session.body_bytes_read() as f64);
        m.response_bytes.with_label_values(&labels).observe(session.body_bytes_sent() as f64);
        let req = session.req_header();
        tracing::debug!(
            target: "access",
            listener = %self.listener,
            method = %req.method,
            path = req.uri.path(),
            status,
            flags,
            route = ctx.route.as_ref().map(|r| &*r.name),
            lane = ctx.lane.as_deref(),
            served_lane,
            peer = ctx.conn.as_ref().and_then(|c| c.peer_identity.as_deref()),
            sni = ctx.conn.as_ref().and_then(|c| c.sni.as_deref()),
            tls_resumed = ctx.conn.as_ref().is_some_and(|c| c.resumed),
            upstream = ?ctx.tried.last().and_then(|i| ctx.cluster.as_ref().map(|c| c.0.endpoints[*i].address)),
            duration_ms = ctx.start.elapsed().as_millis() as u64,
        );
        self.access_log(session, ctx, &record::Outcome { direction, status, flags, served_lane });
        self.finish_span(session, ctx, direction, status, flags);
    }
}

#[cfg(test)]
mod tests {
    use super::app_path;

    #[test]
    fn invoke_paths_map_to_the_apps_own_path() {
        assert_eq!(app_path("/v1.0/invoke/orders/method/neworder"), Some("/neworder"));
        assert_eq!(app_path("/v1.0/invoke/orders/method/api/v2/items"), Some("/api/v2/items"));
        assert_eq!(app_path("/v1.0/invoke/orders/method"), None);
        assert_eq!(app_path("/v1.0/invoke/orders/methodx/a"), None);
        assert_eq!(app_path("/v1.0/state/x"), None);
    }
}
