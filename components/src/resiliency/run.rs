//! Runs one operation under a target's policies, the way Dapr nests them: the retry policy around
//! the circuit breaker around the timeout around each attempt. A timed-out attempt is a failure
//! (retried, counted by the breaker); an open breaker ends the operation at once, without retrying.

use std::future::Future;
use std::time::{Duration, Instant};

use super::TargetPolicy;
use super::breaker::Refused;
use super::retry::RetryPolicy;

/// What an attempt's result means for the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target worked (including answers that are the caller's problem, like not found):
    /// a success for the breaker, returned as it is.
    Fine,
    /// The target failed: counted by the breaker, retried when `retriable` and the policy allows.
    Failed { retriable: bool },
}

/// Why the operation ended without the operation's own result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop<E> {
    /// The last attempt failed with this error.
    Failed(E),
    /// The last attempt ran past the timeout policy.
    TimedOut { policy: String, after: Duration },
    /// The circuit breaker let no call through.
    Open { breaker: String, reason: Refused },
}

enum Attempt<T, E> {
    Done(Result<T, E>),
    TimedOut,
}

/// Runs `op` (called once per attempt) under `policy`; `judge` says what each result means (it
/// sees the retry policy, for its status-code filters).
pub async fn run<T, E, F, Fut>(policy: &TargetPolicy, mut op: F, judge: impl Fn(&Result<T, E>, Option<&RetryPolicy>) -> Verdict) -> Result<T, Stop<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let retry = policy.retry.as_ref();
    let mut retries = 0u32;
    let mut wait = None;
    loop {
        let ticket = match &policy.breaker {
            Some(b) => match b.admit(Instant::now()) {
                Ok(t) => Some(t),
                Err(reason) => return Err(Stop::Open { breaker: b.policy().name.clone(), reason }),
            },
            None => None,
        };
        let attempt = match &policy.timeout {
            Some((_, limit)) => match tokio::time::timeout(*limit, op()).await {
                Ok(r) => Attempt::Done(r),
                Err(_) => Attempt::TimedOut,
            },
            None => Attempt::Done(op().await),
        };
        let verdict = match &attempt {
            Attempt::Done(r) => judge(r, retry),
            Attempt::TimedOut => Verdict::Failed { retriable: true },
        };
        if let (Some(b), Some(t)) = (&policy.breaker, ticket) {
            b.finish(t, verdict == Verdict::Fine, Instant::now());
        }
        let again = verdict == (Verdict::Failed { retriable: true }) && retry.is_some_and(|r| r.allows(retries + 1));
        if !again {
            return match attempt {
                Attempt::Done(Ok(v)) => Ok(v),
                Attempt::Done(Err(e)) => Err(Stop::Failed(e)),
                Attempt::TimedOut => {
                    let (name, after) = policy.timeout.clone().unwrap_or_default();
                    Err(Stop::TimedOut { policy: name, after })
                }
            };
        }
        retries += 1;
        let next = retry.map(|r| r.next_wait(wait, rand::random::<f64>())).unwrap_or_default();
        wait = Some(next);
        tracing::debug!(retry = retries, wait = ?next, "resiliency: retrying");
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resiliency::breaker::{BreakerPolicy, CircuitBreaker, Trip};
    use crate::resiliency::retry::Backoff;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn judge(r: &Result<u32, &'static str>, _: Option<&RetryPolicy>) -> Verdict {
        match r {
            Ok(_) => Verdict::Fine,
            Err(e) => Verdict::Failed { retriable: *e != "permanent" },
        }
    }

    fn retry(max: Option<u32>) -> RetryPolicy {
        RetryPolicy { name: "r".into(), backoff: Backoff::Constant(Duration::from_millis(1)), max_retries: max, http_status_codes: None, grpc_status_codes: None }
    }

    async fn flaky(calls: &AtomicU32, failures: u32) -> Result<u32, &'static str> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= failures { Err("flaky") } else { Ok(n) }
    }

    #[tokio::test]
    async fn retries_until_success_or_the_limit() {
        let calls = AtomicU32::new(0);
        let p = TargetPolicy { retry: Some(retry(Some(3))), ..Default::default() };
        assert_eq!(run(&p, || flaky(&calls, 2), judge).await, Ok(3));
        let calls = AtomicU32::new(0);
        assert_eq!(run(&p, || flaky(&calls, 10), judge).await, Err(Stop::Failed("flaky")));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
        let calls = AtomicU32::new(0);
        let permanent = run(&p, || async { calls.fetch_add(1, Ordering::SeqCst); Err::<u32, _>("permanent") }, judge).await;
        assert_eq!(permanent, Err(Stop::Failed("permanent")));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
    }

    #[tokio::test]
    async fn a_timeout_cuts_each_attempt() {
        let p = TargetPolicy { timeout: Some(("quick".into(), Duration::from_millis(20))), ..Default::default() };
        let started = Instant::now();
        let r = run(&p, || async { tokio::time::sleep(Duration::from_secs(30)).await; Ok::<u32, &str>(1) }, judge).await;
        assert_eq!(r, Err(Stop::TimedOut { policy: "quick".into(), after: Duration::from_millis(20) }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_open_breaker_fails_fast_without_calling() {
        let trip = Trip::parse("consecutiveFailures >= 2").expect("trip");
        let breaker = CircuitBreaker::new(BreakerPolicy { name: "cb".into(), max_requests: 1, interval: Duration::ZERO, timeout: Duration::from_secs(60), trip }, Instant::now());
        let p = TargetPolicy { retry: Some(retry(None)), breaker: Some(Arc::new(breaker)), ..Default::default() };
        let calls = AtomicU32::new(0);
        let r = run(&p, || flaky(&calls, 100), judge).await;
        assert!(matches!(r, Err(Stop::Open { ref breaker, reason: Refused::Open }) if breaker == "cb"), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "retries stop once the breaker opens");
        let r = run(&p, || flaky(&calls, 100), judge).await;
        assert!(matches!(r, Err(Stop::Open { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "an open breaker does not call");
    }
}
