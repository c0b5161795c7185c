//! A component's `inbound` Resiliency policies (`targets.components.<name>.inbound`) around each
//! delivery from that component to the app: a pub/sub message (`OnTopicEvent`, or the POST to the
//! subscriber's route) or an input binding event. The policy machinery is
//! `oxidecar_components::resiliency`; this module says what counts as a failed delivery and what
//! becomes of a message once the policies are done with it.

use std::fmt::Display;
use std::future::Future;

use oxidecar_components::resiliency::breaker::Refused;
use oxidecar_components::resiliency::retry::RetryPolicy;
use oxidecar_components::resiliency::{Stop, TargetPolicy, Verdict as PolicyVerdict, run};

use crate::app::{BindingRefused, Failure, Verdict};

/// What a failed delivery means for the policies: always a failure for the circuit breaker;
/// retried unless the retry policy's `matching` lists codes and this one is not among them. A
/// `RETRY` answer and an unreachable app are always retried (they carry no code to match, the
/// unreachable app counting as gRPC `UNAVAILABLE` when gRPC codes are listed).
pub(crate) fn judge(failure: &Failure, retry: Option<&RetryPolicy>) -> PolicyVerdict {
    let listed = |set: Option<&oxidecar_components::resiliency::retry::CodeSet>, code: u16| {
        set.is_none_or(|s| s.contains(code))
    };
    let grpc_codes = retry.and_then(|r| r.grpc_status_codes.as_ref());
    let retriable = match failure {
        Failure::AskedRetry => true,
        Failure::Http(status) => listed(
            retry.and_then(|r| r.http_status_codes.as_ref()),
            status.as_u16(),
        ),
        Failure::Grpc(code) => listed(grpc_codes, *code as u16),
        Failure::Unreachable => listed(grpc_codes, tonic::Code::Unavailable as u16),
    };
    PolicyVerdict::Failed { retriable }
}

/// How a delivery ended under an inbound policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The app accepted the message.
    Delivered,
    /// The app said `DROP` (or the HTTP app has no such route, 404): never retried.
    Dropped,
    /// Every attempt the policies allowed failed; the text says how the last one did.
    Failed(String),
    /// The circuit breaker let no attempt through: the app was not called.
    Refused(String),
}

/// What to tell the broker about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Acknowledge: the message is done with.
    Ack,
    /// Publish it to the subscription's dead-letter topic, then acknowledge.
    DeadLetter,
    /// Leave it with the broker, which redelivers it on its own terms.
    Nack,
}

impl Settled {
    /// The message's fate: dropped and failed messages go to the dead-letter topic when the
    /// subscription has one; a failed message without one goes back to the broker, and so does
    /// one the breaker kept from the app, which never got a chance to see it.
    pub(crate) fn disposition(&self, has_dead_letter_topic: bool) -> Disposition {
        match self {
            Settled::Delivered => Disposition::Ack,
            Settled::Dropped if has_dead_letter_topic => Disposition::DeadLetter,
            Settled::Dropped => Disposition::Ack,
            Settled::Failed(_) if has_dead_letter_topic => Disposition::DeadLetter,
            Settled::Failed(_) => Disposition::Nack,
            Settled::Refused(_) => Disposition::Nack,
        }
    }

    /// The delivery-metrics outcome.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Settled::Delivered => "delivered",
            Settled::Dropped => "dropped",
            Settled::Failed(_) => "failed",
            Settled::Refused(_) => "refused",
        }
    }
}

/// Why the policies stopped, and whether the breaker kept the app from being called at all.
fn stopped<E: Display>(stop: Stop<E>) -> (bool, String) {
    match stop {
        Stop::Failed(e) => (false, e.to_string()),
        Stop::TimedOut { policy, after } => (
            false,
            format!("timeout policy {policy:?} cut the delivery after {after:?}"),
        ),
        Stop::Open {
            breaker,
            reason: Refused::Open,
        } => (true, format!("circuit breaker {breaker:?} is open")),
        Stop::Open {
            breaker,
            reason: Refused::TooManyRequests,
        } => (
            true,
            format!(
                "circuit breaker {breaker:?} is half-open and its trial deliveries are under way"
            ),
        ),
    }
}

/// Delivers one pub/sub message under `policy`: `attempt` makes one delivery (called again for
/// each retry, each cut by the timeout and admitted by the breaker).
pub(crate) async fn deliver_event<F, Fut>(policy: &TargetPolicy, mut attempt: F) -> Settled
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Verdict>,
{
    let op = || {
        let delivery = attempt();
        async move {
            match delivery.await {
                Verdict::Success => Ok(true),
                Verdict::Drop => Ok(false),
                Verdict::Retry(failure) => Err(failure),
            }
        }
    };
    let judged = |r: &Result<bool, Failure>, retry: Option<&RetryPolicy>| match r {
        Ok(_) => PolicyVerdict::Fine,
        Err(failure) => judge(failure, retry),
    };
    match run(policy, op, judged).await {
        Ok(true) => Settled::Delivered,
        Ok(false) => Settled::Dropped,
        Err(stop) => match stopped(stop) {
            (true, why) => Settled::Refused(why),
            (false, why) => Settled::Failed(why),
        },
    }
}

impl Display for BindingRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Delivers one input binding event under `policy`; `Err` says why the app did not get it.
pub(crate) async fn deliver_binding<F, Fut>(policy: &TargetPolicy, attempt: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), BindingRefused>>,
{
    let judged = |r: &Result<(), BindingRefused>, retry: Option<&RetryPolicy>| match r {
        Ok(()) => PolicyVerdict::Fine,
        Err(refused) => judge(&refused.failure, retry),
    };
    run(policy, attempt, judged)
        .await
        .map_err(|stop| stopped(stop).1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use http::StatusCode;
    use oxidecar_components::resiliency::breaker::{BreakerPolicy, CircuitBreaker, Trip};
    use oxidecar_components::resiliency::retry::{Backoff, CodeSet};
    use tonic::Code;

    use super::*;

    fn retry(max: u32) -> RetryPolicy {
        RetryPolicy {
            name: "r".into(),
            backoff: Backoff::Constant(Duration::from_millis(1)),
            max_retries: Some(max),
            http_status_codes: None,
            grpc_status_codes: None,
        }
    }

    /// An app answering `script` in turn (the last answer repeats); counts its calls.
    fn app(
        script: Vec<Verdict>,
        calls: &AtomicU32,
    ) -> impl FnMut() -> std::future::Ready<Verdict> + '_ {
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            std::future::ready(script[n.min(script.len() - 1)])
        }
    }

    #[test]
    fn what_a_failed_delivery_means() {
        let failed = |retriable| PolicyVerdict::Failed { retriable };
        assert_eq!(judge(&Failure::AskedRetry, None), failed(true));
        assert_eq!(
            judge(&Failure::Http(StatusCode::BAD_REQUEST), None),
            failed(true),
            "without matching every failure is retried"
        );
        let mut r = retry(3);
        r.http_status_codes = Some(CodeSet::parse("500-599", 100..=599).expect("codes"));
        r.grpc_status_codes = Some(CodeSet::parse("14", 0..=16).expect("codes"));
        assert_eq!(
            judge(&Failure::Http(StatusCode::BAD_REQUEST), Some(&r)),
            failed(false)
        );
        assert_eq!(
            judge(&Failure::Http(StatusCode::SERVICE_UNAVAILABLE), Some(&r)),
            failed(true)
        );
        assert_eq!(
            judge(&Failure::Grpc(Code::Internal), Some(&r)),
            failed(false)
        );
        assert_eq!(
            judge(&Failure::Grpc(Code::Unavailable), Some(&r)),
            failed(true)
        );
        assert_eq!(
            judge(&Failure::Unreachable, Some(&r)),
            failed(true),
            "counts as UNAVAILABLE"
        );
        assert_eq!(
            judge(&Failure::AskedRetry, Some(&r)),
            failed(true),
            "RETRY has no code to filter"
        );
    }

    #[test]
    fn what_becomes_of_the_message() {
        use Disposition::*;
        let failed = Settled::Failed("x".into());
        let refused = Settled::Refused("x".into());
        assert_eq!(
            [
                Settled::Delivered,
                Settled::Dropped,
                failed.clone(),
                refused.clone()
            ]
            .map(|s| s.disposition(false)),
            [Ack, Ack, Nack, Nack]
        );
        assert_eq!(
            [Settled::Delivered, Settled::Dropped, failed, refused].map(|s| s.disposition(true)),
            [Ack, DeadLetter, DeadLetter, Nack]
        );
    }

    #[tokio::test]
    async fn retries_until_the_app_takes_it_and_never_retries_a_drop() {
        let policy = TargetPolicy {
            retry: Some(retry(5)),
            ..Default::default()
        };
        let calls = AtomicU32::new(0);
        let script = vec![
            Verdict::Retry(Failure::AskedRetry),
            Verdict::Retry(Failure::Http(StatusCode::INTERNAL_SERVER_ERROR)),
            Verdict::Success,
        ];
        assert_eq!(
            deliver_event(&policy, app(script, &calls)).await,
            Settled::Delivered
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        assert_eq!(
            deliver_event(&policy, app(vec![Verdict::Drop], &calls)).await,
            Settled::Dropped
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let settled = deliver_event(
            &policy,
            app(vec![Verdict::Retry(Failure::Grpc(Code::Unknown))], &calls),
        )
        .await;
        assert_eq!(
            settled,
            Settled::Failed("the app's gRPC call failed with Unknown".into())
        );
        assert_eq!(calls.load(Ordering::SeqCst), 6, "one try and five retries");
    }

    #[tokio::test]
    async fn a_timeout_cuts_a_slow_delivery() {
        let policy = TargetPolicy {
            timeout: Some(("quick".into(), Duration::from_millis(20))),
            retry: Some(retry(2)),
            ..Default::default()
        };
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let settled = deliver_event(&policy, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Verdict::Success
            }
        })
        .await;
        assert!(
            matches!(&settled, Settled::Failed(why) if why.contains("timeout policy \"quick\"")),
            "{settled:?}"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "each attempt cut, then retried"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_open_breaker_keeps_messages_from_the_app() {
        let trip = Trip::parse("consecutiveFailures >= 2").expect("trip");
        let breaker = CircuitBreaker::new(
            BreakerPolicy {
                name: "cb".into(),
                max_requests: 1,
                interval: Duration::ZERO,
                timeout: Duration::from_secs(60),
                trip,
            },
            Instant::now(),
        );
        let policy = TargetPolicy {
            breaker: Some(Arc::new(breaker)),
            ..Default::default()
        };
        let calls = AtomicU32::new(0);
        for _ in 0..2 {
            let settled = deliver_event(
                &policy,
                app(vec![Verdict::Retry(Failure::AskedRetry)], &calls),
            )
            .await;
            assert!(matches!(settled, Settled::Failed(_)), "{settled:?}");
        }
        let settled = deliver_event(&policy, app(vec![Verdict::Success], &calls)).await;
        assert_eq!(
            settled,
            Settled::Refused("circuit breaker \"cb\" is open".into())
        );
        assert_eq!(
            settled.disposition(true),
            Disposition::Nack,
            "not dead-lettered: the app never saw it"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the app was not called while open"
        );
        let refused = deliver_binding(&policy, || async { Ok(()) }).await;
        assert_eq!(refused, Err("circuit breaker \"cb\" is open".to_string()));
    }

    #[tokio::test]
    async fn binding_events_are_retried() {
        let policy = TargetPolicy {
            retry: Some(retry(3)),
            ..Default::default()
        };
        let calls = AtomicU32::new(0);
        let r = deliver_binding(&policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(BindingRefused {
                        failure: Failure::Http(StatusCode::BAD_GATEWAY),
                        message: "no".into(),
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let r = deliver_binding(&policy, || async {
            Err(BindingRefused {
                failure: Failure::AskedRetry,
                message: "input binding \"cron\": refused".into(),
            })
        })
        .await;
        assert_eq!(r, Err("input binding \"cron\": refused".to_string()));
    }
}
