//! Consistent hashing for load balancing: Envoy's ring hash (Ketama-style) and Maglev, both
//! weighted, over xxHash64 so every sidecar maps the same key to the same endpoint.

use xxhash_rust::xxh64::xxh64;

/// Envoy's default minimum ring size.
const MIN_RING_SIZE: u64 = 1024;
/// Largest ring we build (Envoy's default maximum is 8M; sidecar clusters are small).
const MAX_RING_SIZE: u64 = 1 << 16;
/// Envoy's default Maglev table size (a prime).
pub const MAGLEV_TABLE_SIZE: usize = 65537;

/// Hashes a request key (header value, cookie, source IP).
pub fn key_hash(key: &[u8]) -> u64 {
    xxh64(key, 0)
}

/// A ring of endpoint replicas, each endpoint appearing in proportion to its weight.
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// `ids` name the endpoints stably (their addresses), so rings agree across sidecars.
    pub fn new(ids: &[String], weights: &[u32]) -> Self {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return Self { points: Vec::new() };
        }
        let size = (MIN_RING_SIZE.max(ids.len() as u64 * 16)).min(MAX_RING_SIZE);
        let mut points = Vec::with_capacity(size as usize + ids.len());
        for (i, (id, w)) in ids.iter().zip(weights).enumerate() {
            let replicas = ((size * u64::from(*w)) / total).max(1);
            for r in 0..replicas {
                points.push((xxh64(format!("{id}_{r}").as_bytes(), 0), i));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first usable endpoint clockwise from `hash`.
    pub fn pick(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(h, _)| *h < hash);
        (0..self.points.len()).map(|k| self.points[(start + k) % self.points.len()].1).find(|&i| usable(i))
    }
}

/// A Maglev lookup table: near-perfect balance, minimal disruption when endpoints change.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<usize>,
}

impl Maglev {
    pub fn new(ids: &[String], weights: &[u32]) -> Self {
        Self::with_size(ids, weights, MAGLEV_TABLE_SIZE)
    }

    fn with_size(ids: &[String], weights: &[u32], size: usize) -> Self {
        let n = ids.len();
        let max_weight = weights.iter().copied().max().unwrap_or(0);
        if n == 0 || max_weight == 0 {
            return Self { table: Vec::new() };
        }
        let m = size as u64;
        let perm: Vec<(u64, u64)> = ids
            .iter()
            .map(|id| (xxh64(id.as_bytes(), 0) % m, xxh64(id.as_bytes(), 1) % (m - 1) + 1))
            .collect();
        let mut next = vec![0u64; n];
        let mut taken = vec![0u64; n];
        let mut table = vec![usize::MAX; size];
        let mut filled = 0;
        // Weighted Maglev: in round r, endpoint i takes a slot while it has fewer than r·wᵢ/w_max.
        let mut round: u64 = 0;
        while filled < size {
            round += 1;
            for i in 0..n {
                if taken[i] * u64::from(max_weight) >= round * u64::from(weights[i]) {
                    continue;
                }
                taken[i] += 1;
                let (offset, skip) = perm[i];
                loop {
                    let slot = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[slot] == usize::MAX {
                        table[slot] = i;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    break;
                }
            }
        }
        Self { table }
    }

    /// The endpoint for `hash`, or the next usable one in table order.
    pub fn pick(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let start = (hash % self.table.len() as u64) as usize;
        (0..self.table.len()).map(|k| self.table[(start + k) % self.table.len()]).find(|&i| usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    fn shares(pick: impl Fn(u64) -> usize, n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        let keys = 20_000;
        for k in 0..keys {
            counts[pick(key_hash(format!("user-{k}").as_bytes()))] += 1;
        }
        counts.iter().map(|c| *c as f64 / keys as f64).collect()
    }

    #[test]
    fn ring_is_consistent_weighted_and_stable() {
        let ring = Ring::new(&ids(3), &[1, 1, 2]);
        let h = key_hash(b"alice");
        assert_eq!(ring.pick(h, |_| true), ring.pick(h, |_| true));
        let s = shares(|h| ring.pick(h, |_| true).expect("pick"), 3);
        assert!((0.40..0.60).contains(&s[2]), "weight 2 gets about half: {s:?}");
        // Removing endpoint 0 only moves the keys that were on it.
        let moved = (0..2000)
            .map(|k| key_hash(format!("k{k}").as_bytes()))
            .filter(|h| {
                let before = ring.pick(*h, |_| true).expect("pick");
                before != 0 && ring.pick(*h, |i| i != 0) != Some(before)
            })
            .count();
        assert_eq!(moved, 0);
    }

    #[test]
    fn maglev_balances_by_weight_and_disrupts_little() {
        let table = Maglev::with_size(&ids(4), &[1, 1, 1, 1], 4099);
        let s = shares(|h| table.pick(h, |_| true).expect("pick"), 4);
        for share in &s {
            assert!((0.22..0.28).contains(share), "{s:?}");
        }
        let weighted = Maglev::with_size(&ids(2), &[3, 1], 4099);
        let s = shares(|h| weighted.pick(h, |_| true).expect("pick"), 2);
        assert!((0.70..0.80).contains(&s[0]), "{s:?}");
        let fewer = Maglev::with_size(&ids(3), &[1, 1, 1], 4099);
        let changed = (0..4099u64).filter(|h| table.pick(*h, |_| true) != fewer.pick(*h, |_| true) && table.pick(*h, |_| true) != Some(3)).count();
        assert!(changed < 4099 / 8, "rebuilding without one endpoint moves few other keys: {changed}");
        assert_eq!(table.pick(7, |_| false), None);
    }
}
