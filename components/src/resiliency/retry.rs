//! Dapr's retry policies: constant or exponential back-off, a retry limit (none when `maxRetries`
//! is -1) and optional status-code filters (`"429,500-599"`).

use std::time::Duration;

/// Dapr's defaults.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(60);
/// First wait of the exponential policy, and how it grows: each wait is the previous one × 1.5,
/// randomised by ±50%, capped at `maxInterval`.
pub const EXPONENTIAL_INITIAL: Duration = Duration::from_millis(500);
const EXPONENTIAL_FACTOR: f64 = 1.5;
const EXPONENTIAL_JITTER: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    Constant(Duration),
    Exponential { max_interval: Duration },
}

/// A set of status codes from Dapr's `"429,500-599"` syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSet(Vec<(u16, u16)>);

impl CodeSet {
    /// Parses a list of codes and inclusive ranges, each within `valid`.
    pub fn parse(text: &str, valid: std::ops::RangeInclusive<u16>) -> Result<CodeSet, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let number = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|c| valid.contains(c))
                    .ok_or_else(|| format!("{s:?} in {text:?} is not a code from {} to {}", valid.start(), valid.end()))
            };
            let range = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(part)?, number(part)?),
            };
            if range.0 > range.1 {
                return Err(format!("range {part:?} in {text:?} runs backwards"));
            }
            ranges.push(range);
        }
        Ok(CodeSet(ranges))
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&code))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub name: String,
    pub backoff: Backoff,
    /// `None`: retry until something else (timeout, breaker, success) ends it.
    pub max_retries: Option<u32>,
    /// When set, only these HTTP statuses of an app's answer are retried.
    pub http_status_codes: Option<CodeSet>,
    /// When set, only these gRPC codes are retried.
    pub grpc_status_codes: Option<CodeSet>,
}

impl RetryPolicy {
    /// Whether retry number `retry` (1 for the first) is allowed.
    pub fn allows(&self, retry: u32) -> bool {
        self.max_retries.is_none_or(|max| retry <= max)
    }

    /// The wait before the next retry, given the previous wait (`None` before the first retry).
    /// `random` is uniform in [0, 1).
    pub fn next_wait(&self, previous: Option<Duration>, random: f64) -> Duration {
        match &self.backoff {
            Backoff::Constant(d) => *d,
            Backoff::Exponential { max_interval } => {
                let base = match previous {
                    None => EXPONENTIAL_INITIAL,
                    Some(p) => p.mul_f64(EXPONENTIAL_FACTOR),
                };
                let jittered = base.mul_f64(1.0 - EXPONENTIAL_JITTER + 2.0 * EXPONENTIAL_JITTER * random.clamp(0.0, 1.0));
                jittered.min(*max_interval)
            }
        }
    }

    /// Whether an HTTP answer with `status` is retried: the listed codes when `matching` names
    /// some, else every 5xx.
    pub fn retries_http(&self, status: u16) -> bool {
        match &self.http_status_codes {
            Some(set) => set.contains(status),
            None => status >= 500,
        }
    }

    /// Whether an error with gRPC `code` is retried: the listed codes when `matching` names some,
    /// else every code the caller considers transient.
    pub fn retries_grpc(&self, code: u16, transient: bool) -> bool {
        match &self.grpc_status_codes {
            Some(set) => set.contains(code),
            None => transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, max_retries: Option<u32>) -> RetryPolicy {
        RetryPolicy { name: "r".into(), backoff, max_retries, http_status_codes: None, grpc_status_codes: None }
    }

    #[test]
    fn code_sets() {
        let s = CodeSet::parse("429, 500-503", 100..=599).expect("parse");
        assert!(s.contains(429) && s.contains(500) && s.contains(503));
        assert!(!s.contains(504) && !s.contains(404));
        assert!(CodeSet::parse("600", 100..=599).unwrap_err().contains("not a code from 100 to 599"));
        assert!(CodeSet::parse("503-500", 100..=599).unwrap_err().contains("backwards"));
        assert!(CodeSet::parse("1-4,x", 0..=16).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn limits_and_waits() {
        let p = policy(Backoff::Constant(Duration::from_millis(100)), Some(2));
        assert!(p.allows(1) && p.allows(2) && !p.allows(3));
        assert_eq!(p.next_wait(Some(Duration::from_secs(9)), 0.9), Duration::from_millis(100));
        assert!(policy(Backoff::Constant(Duration::ZERO), None).allows(1_000_000));
        let e = policy(Backoff::Exponential { max_interval: Duration::from_secs(1) }, None);
        assert_eq!(e.next_wait(None, 0.5), EXPONENTIAL_INITIAL);
        assert_eq!(e.next_wait(None, 0.0), EXPONENTIAL_INITIAL / 2);
        assert_eq!(e.next_wait(Some(Duration::from_millis(400)), 0.5), Duration::from_millis(600));
        assert_eq!(e.next_wait(Some(Duration::from_secs(5)), 0.5), Duration::from_secs(1), "capped at maxInterval");
    }

    #[test]
    fn status_matching() {
        let mut p = policy(Backoff::Constant(Duration::ZERO), None);
        assert!(p.retries_http(503) && !p.retries_http(404));
        assert!(p.retries_grpc(14, true) && !p.retries_grpc(3, false));
        p.http_status_codes = Some(CodeSet::parse("429", 100..=599).expect("parse"));
        p.grpc_status_codes = Some(CodeSet::parse("4", 0..=16).expect("parse"));
        assert!(p.retries_http(429) && !p.retries_http(503));
        assert!(p.retries_grpc(4, false) && !p.retries_grpc(14, true));
    }
}
