//! Retry decisions as pure logic: which outcomes a policy retries, and the back-off before the next
//! attempt (exponential with full jitter, as Envoy does).

use std::time::Duration;

use oxidecar_xds::model::{RetryOn, RetryPolicy};
use rand::Rng;

/// What an attempt ended with, as far as retries are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The connection could not be established.
    ConnectFailure,
    /// The connection broke, or the attempt timed out, before a response.
    Reset,
    /// The upstream refused the HTTP/2 stream.
    RefusedStream,
    /// A response with this HTTP status and, for gRPC, this `grpc-status`.
    Response { status: u16, grpc_status: Option<u32> },
}

/// Whether `policy` retries an attempt that ended with `attempt` (budgets and counts aside).
pub fn retriable(policy: &RetryPolicy, attempt: Attempt) -> bool {
    policy.retry_on.iter().any(|on| match (on, attempt) {
        (RetryOn::FiveXx, Attempt::Response { status, .. }) => status >= 500,
        (RetryOn::GatewayError, Attempt::Response { status, .. }) => matches!(status, 502..=504),
        (RetryOn::RetriableStatusCodes, Attempt::Response { status, .. }) => policy.retriable_status_codes.contains(&status),
        (RetryOn::FiveXx | RetryOn::GatewayError | RetryOn::Reset, Attempt::Reset | Attempt::ConnectFailure) => true,
        (RetryOn::ConnectFailure, Attempt::ConnectFailure) => true,
        (RetryOn::RefusedStream | RetryOn::FiveXx, Attempt::RefusedStream) => true,
        (grpc, Attempt::Response { grpc_status: Some(code), .. }) => grpc_code(*grpc) == Some(code),
        _ => false,
    })
}

/// Whether `on` is one of the gRPC status conditions.
pub fn is_grpc_condition(on: RetryOn) -> bool {
    grpc_code(on).is_some()
}

fn grpc_code(on: RetryOn) -> Option<u32> {
    match on {
        RetryOn::Cancelled => Some(1),
        RetryOn::DeadlineExceeded => Some(4),
        RetryOn::ResourceExhausted => Some(8),
        RetryOn::Internal => Some(13),
        RetryOn::Unavailable => Some(14),
        _ => None,
    }
}

/// The pause before retry number `retry` (1-based): uniform in `0..min(base × 2^(retry-1), 10 × base)`.
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let base = policy.base_interval;
    if base.is_zero() {
        return Duration::ZERO;
    }
    let cap = base.saturating_mul(10);
    let upper = base.saturating_mul(1u32 << retry.saturating_sub(1).min(16)).min(cap);
    let nanos = rand::rng().random_range(0..=upper.as_nanos().min(u128::from(u64::MAX)) as u64);
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy {
            num_retries: 2,
            retry_on: on.to_vec(),
            retriable_status_codes: vec![409],
            per_try_timeout: None,
            base_interval: Duration::from_millis(25),
            retry_non_idempotent: false,
        }
    }
    fn status(s: u16) -> Attempt {
        Attempt::Response { status: s, grpc_status: None }
    }

    #[test]
    fn conditions_follow_envoys_meanings() {
        let p = policy(&[RetryOn::FiveXx]);
        assert!(retriable(&p, status(500)) && retriable(&p, status(503)) && retriable(&p, Attempt::Reset));
        assert!(retriable(&p, Attempt::ConnectFailure) && !retriable(&p, status(429)) && !retriable(&p, status(200)));
        let p = policy(&[RetryOn::GatewayError]);
        assert!(retriable(&p, status(502)) && !retriable(&p, status(500)) && retriable(&p, Attempt::Reset));
        let p = policy(&[RetryOn::ConnectFailure]);
        assert!(retriable(&p, Attempt::ConnectFailure) && !retriable(&p, Attempt::Reset) && !retriable(&p, status(503)));
        let p = policy(&[RetryOn::RetriableStatusCodes]);
        assert!(retriable(&p, status(409)) && !retriable(&p, status(503)));
        let p = policy(&[RetryOn::Unavailable, RetryOn::Cancelled]);
        assert!(retriable(&p, Attempt::Response { status: 200, grpc_status: Some(14) }));
        assert!(retriable(&p, Attempt::Response { status: 200, grpc_status: Some(1) }));
        assert!(!retriable(&p, Attempt::Response { status: 200, grpc_status: Some(13) }));
        assert!(retriable(&policy(&[RetryOn::RefusedStream]), Attempt::RefusedStream));
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let p = policy(&[RetryOn::FiveXx]);
        for _ in 0..200 {
            assert!(backoff(&p, 1) <= Duration::from_millis(25));
            assert!(backoff(&p, 3) <= Duration::from_millis(100));
            assert!(backoff(&p, 12) <= Duration::from_millis(250));
        }
        let spread: std::collections::HashSet<u128> = (0..50).map(|_| backoff(&p, 2).as_micros()).collect();
        assert!(spread.len() > 10, "jittered");
    }
}
