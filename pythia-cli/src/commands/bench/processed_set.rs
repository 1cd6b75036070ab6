//! Which numbered messages a worker process handled: an atomic bitmap while it runs (one
//! `fetch_or` per message, no Redis traffic, so counting does not slow the drain it measures),
//! sent to the orchestrator as ranges, where the ranges of all processes are merged to count the
//! distinct messages.

use std::sync::atomic::{AtomicU64, Ordering};

/// A set of message numbers below a fixed bound, safe to mark from many threads.
#[derive(Debug)]
pub(crate) struct SeenBitmap {
    words: Vec<AtomicU64>,
    len: u64,
}

impl SeenBitmap {
    /// An empty set of the numbers `0..len`.
    pub(crate) fn new(len: u64) -> Self {
        Self {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    /// Adds `i`; false when it is out of bounds.
    pub(crate) fn mark(&self, i: u64) -> bool {
        if i >= self.len {
            return false;
        }
        self.words[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::Relaxed);
        true
    }

    /// The set as sorted, disjoint half-open ranges `[start, end)`: a few per fetched batch,
    /// since a batch is a run of consecutive numbers.
    pub(crate) fn ranges(&self) -> Vec<[u64; 2]> {
        let mut out: Vec<[u64; 2]> = Vec::new();
        for (w, word) in self.words.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let i = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                match out.last_mut() {
                    Some(last) if last[1] == i => last[1] = i + 1,
                    _ => out.push([i, i + 1]),
                }
            }
        }
        out
    }
}

/// How many distinct numbers the union of several processes' ranges holds.
pub(crate) fn distinct<'a>(sets: impl IntoIterator<Item = &'a [[u64; 2]]>) -> u64 {
    let mut all: Vec<[u64; 2]> = sets.into_iter().flatten().copied().collect();
    all.sort_unstable();
    let mut total = 0;
    let mut covered_to = 0;
    for [start, end] in all {
        let start = start.max(covered_to);
        if end > start {
            total += end - start;
            covered_to = end;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_consecutive_numbers_across_words() {
        let s = SeenBitmap::new(200);
        for i in (0..10).chain(60..130).chain([199]) {
            assert!(s.mark(i));
        }
        assert!(!s.mark(200));
        assert_eq!(s.ranges(), [[0, 10], [60, 130], [199, 200]]);
        assert!(SeenBitmap::new(0).ranges().is_empty());
    }

    #[test]
    fn distinct_counts_overlaps_once() {
        let a: &[[u64; 2]] = &[[0, 10], [20, 30]];
        let b: &[[u64; 2]] = &[[5, 25], [40, 41]];
        assert_eq!(distinct([a, b]), 31);
        assert_eq!(distinct([a, a]), 20);
        assert_eq!(distinct([&[][..]]), 0);
    }
}
