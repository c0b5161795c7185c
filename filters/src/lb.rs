//! Load balancers over a cluster's endpoints: weighted round robin and least request (power of two
//! choices). The proxy supplies each endpoint's active-request count and whether it may be used.

use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxidecar_xds::model::LbPolicy;

use crate::hash::{Maglev, Ring};

/// Longest precomputed round-robin schedule; beyond it weights are scaled down proportionally.
const MAX_SCHEDULE: u64 = 4096;

/// Picks an endpoint index for each request.
#[derive(Debug)]
pub enum LoadBalancer {
    /// A smooth weighted schedule (nginx's interleaving), walked by an atomic cursor.
    RoundRobin { schedule: Vec<usize>, cursor: AtomicUsize },
    /// Two random weighted candidates; the one with fewer active requests per weight wins.
    LeastRequest { weights: Vec<u32> },
    /// Consistent hashing; requests without a key get a random endpoint (as in Envoy).
    RingHash(Ring),
    Maglev(Maglev),
}

impl LoadBalancer {
    /// `ids` name the endpoints stably (addresses), for consistent hashing across sidecars.
    pub fn new(policy: LbPolicy, weights: &[u32], ids: &[String]) -> Self {
        match policy {
            LbPolicy::RingHash => LoadBalancer::RingHash(Ring::new(ids, weights)),
            LbPolicy::Maglev => LoadBalancer::Maglev(Maglev::new(ids, weights)),
            LbPolicy::RoundRobin => LoadBalancer::RoundRobin {
                schedule: smooth_schedule(weights),
                cursor: AtomicUsize::new(rand::rng().random_range(0..weights.len().max(1))),
            },
            LbPolicy::LeastRequest => LoadBalancer::LeastRequest { weights: weights.to_vec() },
        }
    }

    /// Picks an endpoint for which `usable` holds (not ejected, not already tried), using
    /// `active(i)` as the load of endpoint `i`. `None` when no endpoint is usable.
    pub fn pick(&self, key: Option<u64>, usable: impl Fn(usize) -> bool, active: impl Fn(usize) -> u64) -> Option<usize> {
        let key = key.unwrap_or_else(|| rand::rng().random());
        match self {
            LoadBalancer::RingHash(ring) => ring.pick(key, usable),
            LoadBalancer::Maglev(table) => table.pick(key, usable),
            LoadBalancer::RoundRobin { schedule, cursor } => {
                if schedule.is_empty() {
                    return None;
                }
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                (0..schedule.len()).map(|k| schedule[(start + k) % schedule.len()]).find(|&i| usable(i))
            }
            LoadBalancer::LeastRequest { weights } => {
                let n = weights.len();
                if n == 0 {
                    return None;
                }
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let b = rng.random_range(0..n);
                let load = |i: usize| (active(i) + 1) as f64 / f64::from(weights[i].max(1));
                let best = match (usable(a), usable(b)) {
                    (true, true) => Some(if load(b) < load(a) { b } else { a }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => None,
                };
                // Both random candidates unusable: scan for the least loaded usable endpoint.
                best.or_else(|| {
                    (0..n).filter(|&i| usable(i)).min_by(|&x, &y| load(x).total_cmp(&load(y)))
                })
            }
        }
    }
}

/// A weighted round-robin order where heavy endpoints are spread out, not bunched.
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let scale = |w: u32| -> i64 {
        if total <= MAX_SCHEDULE {
            i64::from(w)
        } else {
            ((u64::from(w) * MAX_SCHEDULE) / total).max(1) as i64
        }
    };
    let weights: Vec<i64> = weights.iter().map(|w| scale(*w)).collect();
    let sum: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) = current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).expect("non-empty");
        current[best] -= sum;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_follows_weights_and_interleaves() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        let lb = LoadBalancer::new(LbPolicy::RoundRobin, &[1, 1, 1], &[]);
        let picks: Vec<usize> = (0..6).map(|_| lb.pick(None, |_| true, |_| 0).expect("pick")).collect();
        for i in 0..3 {
            assert_eq!(picks.iter().filter(|p| **p == i).count(), 2, "{picks:?}");
        }
    }

    #[test]
    fn round_robin_skips_unusable_endpoints() {
        let lb = LoadBalancer::new(LbPolicy::RoundRobin, &[1, 1, 1], &[]);
        for _ in 0..10 {
            assert_eq!(lb.pick(None, |i| i == 2, |_| 0), Some(2));
        }
        assert_eq!(lb.pick(None, |_| false, |_| 0), None);
    }

    #[test]
    fn least_request_prefers_idle_endpoints() {
        let lb = LoadBalancer::new(LbPolicy::LeastRequest, &[1, 1], &[]);
        let mut to_idle = 0;
        for _ in 0..1000 {
            if lb.pick(None, |_| true, |i| if i == 0 { 50 } else { 0 }) == Some(1) {
                to_idle += 1;
            }
        }
        // Endpoint 1 loses only when both random candidates are endpoint 0 (about 1 in 4).
        assert!(to_idle > 650, "idle endpoint got {to_idle} of 1000");
        assert_eq!(lb.pick(None, |i| i == 0, |_| 0), Some(0));
        assert_eq!(lb.pick(None, |_| false, |_| 0), None);
    }

    #[test]
    fn huge_weights_are_scaled_not_expanded() {
        let s = smooth_schedule(&[1_000_000, 1]);
        assert!(s.len() <= MAX_SCHEDULE as usize + 1);
        assert!(s.contains(&1));
    }
}
