//! Passive health (Envoy's outlier detection): an endpoint that fails `consecutive_5xx` times in a
//! row (or `consecutive_gateway_errors` times with 502/503/504 or a connect failure) is ejected from
//! load balancing for `base_ejection_time` × the number of times it was ejected, capped at
//! [`MAX_EJECTION_TIME`]. At most `max_ejection_percent` of the endpoints are ejected at once, but
//! always at least one (as in Envoy). Ejections end on their own when their time is up.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxidecar_xds::model::OutlierDetection;

/// Envoy's default `max_ejection_time`.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// What one attempt to an endpoint ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The attempt succeeded without an HTTP status (a TCP connection was established).
    Success,
    /// A response with this status.
    Status(u16),
    /// No response: connect failure, reset or timeout (a gateway error).
    LocalFailure,
}

#[derive(Debug, Default)]
struct EndpointHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    times_ejected: AtomicU32,
    /// Milliseconds since the detector's epoch until which the endpoint is ejected (0: never).
    ejected_until_ms: AtomicU64,
}

/// Outlier state of one cluster's endpoints.
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierDetection,
    epoch: Instant,
    endpoints: Vec<EndpointHealth>,
}

impl OutlierDetector {
    pub fn new(config: OutlierDetection, endpoints: usize) -> Self {
        Self { config, epoch: Instant::now(), endpoints: (0..endpoints).map(|_| EndpointHealth::default()).collect() }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Whether endpoint `i` is ejected at `now`.
    pub fn is_ejected(&self, i: usize, now: Instant) -> bool {
        self.endpoints.get(i).is_some_and(|e| e.ejected_until_ms.load(Ordering::Relaxed) > self.now_ms(now))
    }

    /// How many endpoints are ejected at `now`.
    pub fn ejected_count(&self, now: Instant) -> usize {
        (0..self.endpoints.len()).filter(|i| self.is_ejected(*i, now)).count()
    }

    /// Records an attempt's outcome; returns the ejection time when this outcome ejected the endpoint.
    pub fn record(&self, i: usize, outcome: Outcome, now: Instant) -> Option<Duration> {
        let e = self.endpoints.get(i)?;
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Success => (false, false),
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if !is_5xx {
            e.consecutive_5xx.store(0, Ordering::Relaxed);
            e.consecutive_gateway.store(0, Ordering::Relaxed);
            return None;
        }
        let n5xx = e.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let ngw = if is_gateway {
            e.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            e.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let tripped = (self.config.consecutive_5xx > 0 && n5xx >= self.config.consecutive_5xx)
            || (self.config.consecutive_gateway_errors > 0 && ngw >= self.config.consecutive_gateway_errors);
        if !tripped || self.is_ejected(i, now) || !self.may_eject_one_more(now) {
            return None;
        }
        e.consecutive_5xx.store(0, Ordering::Relaxed);
        e.consecutive_gateway.store(0, Ordering::Relaxed);
        let times = e.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = self.config.base_ejection_time.saturating_mul(times).min(MAX_EJECTION_TIME.max(self.config.base_ejection_time));
        e.ejected_until_ms.store(self.now_ms(now) + duration.as_millis() as u64, Ordering::Relaxed);
        Some(duration)
    }

    fn may_eject_one_more(&self, now: Instant) -> bool {
        let ejected = self.ejected_count(now);
        // Envoy ejects at least one host whatever the percentage says.
        ejected == 0 || (ejected + 1) * 100 <= self.endpoints.len() * self.config.max_ejection_percent as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(n: usize, max_percent: u32) -> OutlierDetector {
        OutlierDetector::new(
            OutlierDetection {
                consecutive_5xx: 3,
                consecutive_gateway_errors: 2,
                base_ejection_time: Duration::from_secs(10),
                max_ejection_percent: max_percent,
            },
            n,
        )
    }

    #[test]
    fn consecutive_5xx_eject_and_success_resets_the_streak() {
        let d = detector(2, 100);
        let t = Instant::now();
        assert_eq!(d.record(0, Outcome::Status(500), t), None);
        assert_eq!(d.record(0, Outcome::Status(500), t), None);
        assert_eq!(d.record(0, Outcome::Status(200), t), None, "a success breaks the streak");
        assert_eq!(d.record(0, Outcome::Status(500), t), None);
        assert_eq!(d.record(0, Outcome::Status(500), t), None);
        assert_eq!(d.record(0, Outcome::Status(500), t), Some(Duration::from_secs(10)));
        assert!(d.is_ejected(0, t + Duration::from_secs(9)));
        assert!(!d.is_ejected(0, t + Duration::from_secs(11)), "returns when the time is up");
        assert!(!d.is_ejected(1, t));
    }

    #[test]
    fn gateway_errors_trip_sooner_and_ejection_time_grows() {
        let d = detector(2, 100);
        let t = Instant::now();
        assert_eq!(d.record(1, Outcome::LocalFailure, t), None);
        assert_eq!(d.record(1, Outcome::Status(503), t), Some(Duration::from_secs(10)));
        let later = t + Duration::from_secs(11);
        assert_eq!(d.record(1, Outcome::Status(502), later), None);
        assert_eq!(d.record(1, Outcome::Status(504), later), Some(Duration::from_secs(20)), "second ejection lasts twice as long");
    }

    #[test]
    fn max_ejection_percent_caps_ejections_but_allows_one() {
        let d = detector(4, 10);
        let t = Instant::now();
        for _ in 0..2 {
            d.record(0, Outcome::LocalFailure, t);
            d.record(1, Outcome::LocalFailure, t);
        }
        assert!(d.is_ejected(0, t), "at least one host is ejected even under 10%");
        assert!(!d.is_ejected(1, t), "a second would exceed 10% of 4");
        assert_eq!(d.ejected_count(t), 1);
    }
}
