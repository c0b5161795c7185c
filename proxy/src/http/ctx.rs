//! Per-request state of the HTTP proxy and the retry bookkeeping that goes with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use oxidecar_filters::retry::{self, Attempt};
use oxidecar_filters::route::CompiledRoute;
use oxidecar_xds::model::RetryPolicy;
use pingora::proxy::Session;

use super::reply::Reply;
use crate::shared::InFlight;
use crate::tables::{ClusterState, Tables};
use crate::tls::socket::ConnInfo;

/// Per-request state, dropped when the request ends (releasing in-flight and admission counts).
pub struct RequestCtx {
    pub(super) tables: Arc<Tables>,
    pub(super) _in_flight: InFlight,
    pub(super) start: Instant,
    pub(super) grpc: bool,
    pub(super) original_dst: Option<SocketAddr>,
    pub(super) route: Option<Arc<CompiledRoute>>,
    pub(super) cluster: Option<Admitted>,
    /// Endpoint of the current attempt, counted in its `rq_active`.
    pub(super) endpoint: Option<usize>,
    /// The current attempt's share of the cluster's `max_connections`, released with the endpoint.
    pub(super) connection: Option<oxidecar_filters::breaker::Permit>,
    pub(super) tried: Vec<usize>,
    /// Retries made so far; each holds one of the cluster's `max_retries` slots until the end.
    pub(super) retries: u32,
    /// Set when a response status triggered a retry, for `error_while_proxy` to pass it on.
    pub(super) retrying_on_status: bool,
    /// The route timeout's deadline across all attempts.
    pub(super) deadline: Option<Instant>,
    pub(super) reply: Option<Reply>,
    pub(super) grpc_status: Option<String>,
    /// A service invocation from a peer sidecar, handed to the local runtime.
    pub(super) to_runtime: bool,
    /// A service invocation from a peer sidecar, delivered straight to the local HTTP app.
    pub(super) to_app: bool,
    /// The request's lane, and whether it came from trace memory (then it is added as a header).
    pub(super) lane: Option<String>,
    pub(super) lane_remembered: bool,
    /// Consistent-hash key from the route's hash policy.
    pub(super) hash_key: Option<u64>,
    /// When the current attempt's request headers went upstream, and how long the upstream took
    /// to answer (the access log's `upstream_service_time`).
    pub(super) upstream_sent: Option<Instant>,
    pub(super) upstream_service_time: Option<std::time::Duration>,
    /// What the peer sidecar said about itself (Istio metadata exchange), for the metric labels.
    pub(super) peer: Option<crate::peer::PeerInfo>,
    /// What the listener learned about the downstream connection (chain, peer identity).
    pub(super) conn: Option<ConnInfo>,
    /// The upstream peer's verified identity, when the attempt went over mesh mTLS.
    pub(super) upstream_identity: Option<Arc<str>>,
    pub(super) upstream_tls: bool,
    /// This hop's place in the request's trace.
    pub(super) hop: Option<crate::trace::Hop>,
    /// The copy collected for the route's mirrors, sent once the request body is complete.
    pub(super) mirror: Option<super::mirror::MirrorCopy>,
}

/// A request counted against its cluster's `max_requests` until dropped.
pub(super) struct Admitted(pub(super) Arc<ClusterState>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.stats.rq_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestCtx {
    pub(super) fn release_endpoint(&mut self, failed: bool) {
        self.connection = None;
        if let (Some(i), Some(Admitted(cluster))) = (self.endpoint.take(), &self.cluster) {
            let stats = &cluster.endpoints[i].stats;
            stats.rq_active.fetch_sub(1, Ordering::Relaxed);
            if failed {
                stats.rq_error.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.route.as_ref().and_then(|r| r.retry_policy.as_ref())
    }

    /// Whether the route's policy, the retry count, the cluster's `max_retries` budget and the
    /// deadline allow another attempt after `attempt`. `replayable`: the request can be sent again.
    pub(super) fn may_retry(&self, attempt: Attempt, replayable: bool) -> bool {
        let Some(policy) = self.retry_policy() else { return false };
        let Some(Admitted(cluster)) = &self.cluster else { return false };
        replayable
            && retry::retriable(policy, attempt)
            && self.retries < policy.num_retries
            && cluster.stats.rq_retry_active.load(Ordering::Relaxed) < u64::from(cluster.circuit_breakers.max_retries)
            && self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// Counts a retry against the cluster's `max_retries` until the request ends.
    pub(super) fn start_retry(&mut self) {
        self.retries += 1;
        if let Some(copy) = &mut self.mirror {
            copy.restart();
        }
        if let Some(Admitted(cluster)) = &self.cluster {
            cluster.stats.rq_retry_active.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the request can be sent again: its body is still in Pingora's 64 KiB replay buffer and,
/// unless nothing reached the upstream yet, its method is idempotent or the policy allows it. Every
/// gRPC call is a POST: a policy naming gRPC status conditions allows replaying gRPC calls.
pub(super) fn replayable(session: &Session, policy: Option<&RetryPolicy>, nothing_sent: bool, grpc: bool) -> bool {
    let allowed = |p: &RetryPolicy| p.retry_non_idempotent || (grpc && p.retry_on.iter().any(|on| retry::is_grpc_condition(*on)));
    let idempotent = session.req_header().method.is_idempotent() || policy.is_some_and(allowed);
    !session.as_ref().retry_buffer_truncated() && (nothing_sent || idempotent)
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        self.release_endpoint(false);
        if let Some(Admitted(cluster)) = &self.cluster {
            cluster.stats.rq_retry_active.fetch_sub(u64::from(self.retries), Ordering::Relaxed);
        }
    }
}

