//! Dapr's circuit breaker: closed → open when the `trip` expression holds over the counts of the
//! current window; open → half-open after `timeout`; half-open lets `max_requests` calls through and
//! closes after that many successes in a row, or opens again at the first failure. In the closed
//! state the counts restart every `interval` (never when it is zero). Time is passed in, so the
//! state machine is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Dapr's defaults.
pub const DEFAULT_MAX_REQUESTS: u32 = 1;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TRIP: &str = "consecutiveFailures > 5";

/// The counts a trip expression can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub total_successes: u64,
    pub total_failures: u64,
    pub consecutive_successes: u64,
    pub consecutive_failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Requests,
    TotalSuccesses,
    TotalFailures,
    ConsecutiveSuccesses,
    ConsecutiveFailures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

/// A trip condition: comparisons of a count with a number, joined by `&&` (binding tighter) and
/// `||` — the part of CEL Dapr's trip expressions use, like `consecutiveFailures > 5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    /// Alternatives (`||`) of conjunctions (`&&`).
    any: Vec<Vec<(Field, Cmp, u64)>>,
    text: String,
}

impl Trip {
    pub fn parse(text: &str) -> Result<Trip, String> {
        let mut any = Vec::new();
        for alternative in text.split("||") {
            let mut all = Vec::new();
            for term in alternative.split("&&") {
                all.push(parse_comparison(term.trim()).map_err(|m| format!("{text:?}: {m}"))?);
            }
            any.push(all);
        }
        Ok(Trip { any, text: text.to_string() })
    }

    pub fn holds(&self, c: &Counts) -> bool {
        self.any.iter().any(|all| {
            all.iter().all(|(field, cmp, n)| {
                let v = match field {
                    Field::Requests => c.requests,
                    Field::TotalSuccesses => c.total_successes,
                    Field::TotalFailures => c.total_failures,
                    Field::ConsecutiveSuccesses => c.consecutive_successes,
                    Field::ConsecutiveFailures => c.consecutive_failures,
                };
                match cmp {
                    Cmp::Gt => v > *n,
                    Cmp::Ge => v >= *n,
                    Cmp::Lt => v < *n,
                    Cmp::Le => v <= *n,
                    Cmp::Eq => v == *n,
                    Cmp::Ne => v != *n,
                }
            })
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn parse_comparison(term: &str) -> Result<(Field, Cmp, u64), String> {
    const OPS: [(&str, Cmp); 6] = [(">=", Cmp::Ge), ("<=", Cmp::Le), ("==", Cmp::Eq), ("!=", Cmp::Ne), (">", Cmp::Gt), ("<", Cmp::Lt)];
    let Some((at, op, cmp)) = OPS.iter().filter_map(|(op, cmp)| term.find(op).map(|at| (at, *op, *cmp))).min_by_key(|(at, op, _)| (*at, usize::MAX - op.len()))
    else {
        return Err(format!("{term:?} is not a comparison like consecutiveFailures > 5"));
    };
    let (name, number) = (term[..at].trim(), term[at + op.len()..].trim());
    let field = match name {
        "requests" => Field::Requests,
        "totalSuccesses" => Field::TotalSuccesses,
        "totalFailures" => Field::TotalFailures,
        "consecutiveSuccesses" => Field::ConsecutiveSuccesses,
        "consecutiveFailures" => Field::ConsecutiveFailures,
        other => {
            return Err(format!(
                "unknown count {other:?} (requests, totalSuccesses, totalFailures, consecutiveSuccesses, consecutiveFailures)"
            ));
        }
    };
    let n = number.parse::<u64>().map_err(|_| format!("{number:?} after {op} is not a whole number"))?;
    Ok((field, cmp, n))
}

/// A breaker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub name: String,
    pub max_requests: u32,
    /// Closed-state count window; zero: counts never restart while closed.
    pub interval: Duration,
    /// How long the breaker stays open.
    pub timeout: Duration,
    pub trip: Trip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

/// Why a call was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Open: failing fast until the timeout passes.
    Open,
    /// Half-open and `max_requests` trial calls are already under way.
    TooManyRequests,
}

#[derive(Debug)]
struct Inner {
    state: State,
    counts: Counts,
    /// Bumped on every state change and window restart; results of calls admitted under an older
    /// generation are ignored.
    generation: u64,
    /// Closed: when the window restarts; open: when it turns half-open.
    until: Option<Instant>,
}

/// One breaker instance (per target app or component).
#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
}

/// Admission of one call; report its outcome with [`CircuitBreaker::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy, now: Instant) -> Self {
        let until = (!policy.interval.is_zero()).then(|| now + policy.interval);
        Self { policy, inner: Mutex::new(Inner { state: State::Closed, counts: Counts::default(), generation: 0, until }) }
    }

    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counts inconsistent in a harmful way.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state at `now` (open turns half-open once its timeout passed).
    pub fn state(&self, now: Instant) -> State {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        inner.state
    }

    fn to_state(&self, inner: &mut Inner, state: State, now: Instant) {
        inner.state = state;
        inner.generation += 1;
        inner.counts = Counts::default();
        inner.until = match state {
            State::Closed => (!self.policy.interval.is_zero()).then(|| now + self.policy.interval),
            State::Open => Some(now + self.policy.timeout),
            State::HalfOpen => None,
        };
    }

    fn advance(&self, inner: &mut Inner, now: Instant) {
        match (inner.state, inner.until) {
            (State::Closed, Some(until)) if now >= until => {
                inner.generation += 1;
                inner.counts = Counts::default();
                inner.until = Some(now + self.policy.interval);
            }
            (State::Open, Some(until)) if now >= until => self.to_state(inner, State::HalfOpen, now),
            _ => {}
        }
    }

    /// Lets a call through, or refuses it.
    pub fn admit(&self, now: Instant) -> Result<Ticket, Refused> {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        match inner.state {
            State::Open => return Err(Refused::Open),
            State::HalfOpen if inner.counts.requests >= u64::from(self.policy.max_requests) => return Err(Refused::TooManyRequests),
            _ => {}
        }
        inner.counts.requests += 1;
        Ok(Ticket { generation: inner.generation })
    }

    /// Records how an admitted call ended.
    pub fn finish(&self, ticket: Ticket, success: bool, now: Instant) {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        if ticket.generation != inner.generation {
            return;
        }
        let c = &mut inner.counts;
        if success {
            c.total_successes += 1;
            c.consecutive_successes += 1;
            c.consecutive_failures = 0;
            if inner.state == State::HalfOpen && inner.counts.consecutive_successes >= u64::from(self.policy.max_requests) {
                self.to_state(&mut inner, State::Closed, now);
            }
        } else {
            c.total_failures += 1;
            c.consecutive_failures += 1;
            c.consecutive_successes = 0;
            let trips = match inner.state {
                State::Closed => self.policy.trip.holds(&inner.counts),
                State::HalfOpen => true,
                State::Open => false,
            };
            if trips {
                tracing::info!(breaker = %self.policy.name, trip = self.policy.trip.as_str(), "circuit breaker opened");
                self.to_state(&mut inner, State::Open, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(trip: &str, interval: Duration) -> (CircuitBreaker, Instant) {
        let now = Instant::now();
        let policy = BreakerPolicy { name: "cb".into(), max_requests: 2, interval, timeout: Duration::from_secs(10), trip: Trip::parse(trip).expect("trip") };
        (CircuitBreaker::new(policy, now), now)
    }

    fn call(b: &CircuitBreaker, ok: bool, now: Instant) -> Result<(), Refused> {
        let t = b.admit(now)?;
        b.finish(t, ok, now);
        Ok(())
    }

    #[test]
    fn trip_expressions() {
        let t = Trip::parse("consecutiveFailures >= 3").expect("parse");
        assert!(!t.holds(&Counts { consecutive_failures: 2, ..Default::default() }));
        assert!(t.holds(&Counts { consecutive_failures: 3, ..Default::default() }));
        let t = Trip::parse("requests > 10 && totalFailures > 5 || consecutiveFailures>2").expect("parse");
        assert!(t.holds(&Counts { consecutive_failures: 3, ..Default::default() }));
        assert!(t.holds(&Counts { requests: 11, total_failures: 6, ..Default::default() }));
        assert!(!t.holds(&Counts { requests: 11, total_failures: 5, ..Default::default() }));
        assert!(Trip::parse("consecutiveFailure > 5").unwrap_err().contains("unknown count \"consecutiveFailure\""));
        assert!(Trip::parse("consecutiveFailures > five").unwrap_err().contains("not a whole number"));
        assert!(Trip::parse("consecutiveFailures").unwrap_err().contains("not a comparison"));
    }

    #[test]
    fn opens_fails_fast_half_opens_and_closes() {
        let (b, t0) = breaker("consecutiveFailures >= 3", Duration::ZERO);
        for _ in 0..2 {
            call(&b, false, t0).expect("closed");
        }
        call(&b, true, t0).expect("closed");
        for _ in 0..3 {
            call(&b, false, t0).expect("closed");
        }
        assert_eq!(b.state(t0), State::Open);
        assert_eq!(call(&b, true, t0 + Duration::from_secs(9)), Err(Refused::Open));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), State::HalfOpen);
        // Two trial calls at once at most.
        let a = b.admit(t1).expect("trial 1");
        let c = b.admit(t1).expect("trial 2");
        assert_eq!(b.admit(t1).map(|_| ()), Err(Refused::TooManyRequests));
        b.finish(a, true, t1);
        assert_eq!(b.state(t1), State::HalfOpen, "one success of max_requests 2");
        b.finish(c, true, t1);
        assert_eq!(b.state(t1), State::Closed);
    }

    #[test]
    fn a_half_open_failure_opens_again() {
        let (b, t0) = breaker("consecutiveFailures > 0", Duration::ZERO);
        call(&b, false, t0).expect("closed");
        let t1 = t0 + Duration::from_secs(10);
        call(&b, false, t1).expect("half-open trial");
        assert_eq!(b.state(t1), State::Open);
        assert_eq!(b.state(t1 + Duration::from_secs(10)), State::HalfOpen);
    }

    #[test]
    fn the_interval_restarts_closed_counts_and_stale_results_are_ignored() {
        let (b, t0) = breaker("totalFailures >= 2", Duration::from_secs(1));
        call(&b, false, t0).expect("closed");
        let late = b.admit(t0).expect("closed");
        let t1 = t0 + Duration::from_secs(1);
        call(&b, false, t1).expect("closed");
        b.finish(late, false, t1);
        assert_eq!(b.state(t1), State::Closed, "one failure per window, and the stale one is not counted");
        call(&b, false, t1).expect("closed");
        assert_eq!(b.state(t1), State::Open);
    }
}
