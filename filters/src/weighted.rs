//! A random pick among weighted choices (weighted clusters of a route or TCP proxy).

use rand::Rng;

/// Choices with cumulative weights, so a pick is one random number and a binary search.
#[derive(Debug, Clone)]
pub struct WeightedChoice<T> {
    items: Vec<(u64, T)>,
    total: u64,
}

impl<T: Clone> WeightedChoice<T> {
    /// Items with weight 0 are never picked. `None` if no item has weight.
    pub fn new(items: impl IntoIterator<Item = (T, u32)>) -> Option<Self> {
        let mut total = 0u64;
        let mut cumulative = Vec::new();
        for (item, weight) in items {
            if weight == 0 {
                continue;
            }
            total += u64::from(weight);
            cumulative.push((total, item));
        }
        (total > 0).then_some(Self { items: cumulative, total })
    }

    pub fn pick(&self) -> &T {
        self.pick_at(rand::rng().random_range(0..self.total))
    }

    /// The item owning point `x` in `0..total` (deterministic, for tests and hashing).
    pub fn pick_at(&self, x: u64) -> &T {
        let i = self.items.partition_point(|(upto, _)| *upto <= x);
        &self.items[i.min(self.items.len() - 1)].1
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Every item that can be picked.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, item)| item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_weights() {
        let w = WeightedChoice::new([("a", 20), ("b", 0), ("c", 80)]).expect("weights");
        assert_eq!(w.total(), 100);
        assert_eq!(*w.pick_at(0), "a");
        assert_eq!(*w.pick_at(19), "a");
        assert_eq!(*w.pick_at(20), "c");
        assert_eq!(*w.pick_at(99), "c");
        let n = 20_000;
        let a = (0..n).filter(|_| *w.pick() == "a").count() as f64 / n as f64;
        assert!((0.17..0.23).contains(&a), "a got {a}");
        assert!(WeightedChoice::new([("x", 0)]).is_none());
    }
}
