//! A latency histogram of atomics: log-linear buckets, recorded without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::slot::Writer;

/// Sub-buckets per power of two: a value is placed within 1/8 (12.5 %) of itself.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values at or above 2^MAX_EXP microseconds (about 12 days) share the last bucket.
const MAX_EXP: u32 = 40;
/// Number of buckets: the first `SUB` hold 0..SUB exactly, then `SUB` per power of two.
pub(crate) const BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;

/// Microsecond latencies in log-linear buckets (HdrHistogram's layout with three bits of
/// precision), plus their sum and maximum. Recording is two or three relaxed atomic
/// operations; readers see a consistent enough picture for monitoring.
///
/// Inline, and the sum and maximum first: in a [`super::Shard`] they share a cache line
/// with the other counters every call writes.
#[repr(C)]
pub(crate) struct Histogram {
    sum: AtomicU64,
    max: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    pub(crate) fn record(&self, writer: Writer, micros: u64) {
        writer.add(&self.buckets[index(micros)], 1);
        writer.add(&self.sum, micros);
        writer.max(&self.max, micros);
    }

    /// A copy of the counts.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

/// The bucket of `micros`.
fn index(micros: u64) -> usize {
    if micros < SUB as u64 {
        return micros as usize;
    }
    let exp = (63 - micros.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// The smallest value of bucket `index`; the bucket holds values below `lower(index + 1)`.
pub(crate) fn lower(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let exp = (index / SUB) as u32 + SUB_BITS - 1;
    let sub = (index % SUB) as u64;
    (SUB as u64 + sub) << (exp - SUB_BITS)
}

/// Counts of a [`Histogram`] at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct HistogramSnapshot {
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: u64,
    pub(crate) max: u64,
}

impl HistogramSnapshot {
    /// Adds `other`'s samples (another shard of the same method).
    pub(crate) fn merge(&mut self, other: &HistogramSnapshot) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (count, n) in self.counts.iter_mut().zip(&other.counts) {
            *count += n;
        }
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which a fraction `q` of the samples fall: the middle of the bucket
    /// holding that rank, never above the largest value seen. 0 without samples.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        if rank >= count {
            return self.max;
        }
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = (lower(index), lower(index + 1));
                return (low + (high - low) / 2)
                    .min(self.max)
                    .max(low.min(self.max));
            }
        }
        self.max
    }

    /// Samples at or below `micros` (exact when `micros + 1` starts a bucket).
    pub(crate) fn count_below(&self, micros: u64) -> u64 {
        let end = index(micros.saturating_add(1));
        self.counts[..end.min(self.counts.len())].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_within_an_eighth() {
        for i in 0..BUCKETS - 1 {
            assert!(lower(i) < lower(i + 1), "bucket {i}");
            assert_eq!(index(lower(i)), i);
            assert_eq!(index(lower(i + 1) - 1), i);
            let width = lower(i + 1) - lower(i);
            assert!(width * 8 <= lower(i).max(8), "bucket {i} too wide");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_land_near_the_true_values() {
        let h = Histogram::new();
        for micros in 1..=10_000u64 {
            h.record(Writer::of(crate::stats::slot::OWNED), micros);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 10_000);
        assert_eq!(s.max, 10_000);
        for (q, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.9, 9_000.0)] {
            let got = s.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.125, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.quantile(1.0), 10_000);
        assert_eq!(s.count_below(1023), 1023);
    }

    #[test]
    fn an_empty_histogram_reports_zero() {
        let s = Histogram::new().snapshot();
        assert_eq!((s.count(), s.quantile(0.99), s.max), (0, 0, 0));
    }
}
