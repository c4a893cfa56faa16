//! Weighted random: Dubbo's default balancer, and the tie-break of the others.

use super::warmup::Weigher;
use super::{LoadBalance, Tried};
use crate::Request;
use crate::client::{Provider, Providers};

/// Picks a provider at random, each with a chance proportional to its effective weight
/// ([`super::effective_weight`]: its weight, ramped up while it warms up); a retry draws
/// again among the providers not yet tried. When every remaining weight is zero the draw
/// is uniform.
#[derive(Debug, Default, Clone, Copy)]
pub struct Random {
    _private: (),
}

impl LoadBalance for Random {
    fn select(&self, providers: &Providers, _request: &Request, tried: &Tried) -> Option<usize> {
        if tried.is_empty() && providers.settled() {
            return by_static_weight(providers);
        }
        draw(providers, tried)
    }
}

/// A weighted random pick among every provider of a list in which nobody warms up: from
/// the list's precomputed weights, so no pass over the providers (uniform when the weights
/// are equal, a binary search otherwise).
fn by_static_weight(providers: &Providers) -> Option<usize> {
    if providers.is_empty() {
        return None;
    }
    let total = providers.total_weight();
    if providers.uniform() || total == 0 {
        return Some(fastrand::usize(..providers.len()));
    }
    providers.by_weight(fastrand::u64(..total))
}

/// A weighted random pick among the untried providers.
pub(super) fn draw(providers: &[Provider], tried: &Tried) -> Option<usize> {
    // The first attempt of a call has tried nothing: its loop skips the check.
    if tried.is_empty() {
        draw_any(providers)
    } else {
        draw_among(providers, |index| !tried.contains(index))
    }
}

/// [`draw`] among every provider: the first attempt of every call, so its loop does the
/// least it can (a sum, and whether all weights are equal).
fn draw_any(providers: &[Provider]) -> Option<usize> {
    let (first, rest) = providers.split_first()?;
    let mut weigher = Weigher::default();
    let first_weight = weigher.weight(first);
    let mut total = u64::from(first_weight);
    let mut differ = 0;
    for provider in rest {
        let weight = weigher.weight(provider);
        total += u64::from(weight);
        differ |= weight ^ first_weight;
    }
    // Equal weights (zero included): uniform, with no second pass.
    if differ == 0 {
        return Some(fastrand::usize(..providers.len()));
    }
    let mut point = fastrand::u64(..total);
    for (index, provider) in providers.iter().enumerate() {
        let weight = u64::from(weigher.weight(provider));
        if point < weight {
            return Some(index);
        }
        point -= weight;
    }
    // Only reachable if weights changed between the passes, which they do not.
    Some(0)
}

fn draw_among(providers: &[Provider], is_candidate: impl Fn(usize) -> bool) -> Option<usize> {
    let mut weigher = Weigher::default();
    let mut tally = Tally::default();
    for (index, provider) in providers.iter().enumerate() {
        if is_candidate(index) {
            tally.add(index, weigher.weight(provider));
        }
    }
    tally.draw(providers, &mut weigher, is_candidate)
}

/// What a first pass over the candidates of a weighted draw learnt, so that the draw
/// itself needs no allocation and, in the common case of equal weights, no second pass.
#[derive(Debug)]
struct Tally {
    count: usize,
    first: usize,
    total: u64,
    lightest: u32,
    heaviest: u32,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            count: 0,
            first: 0,
            total: 0,
            lightest: u32::MAX,
            heaviest: 0,
        }
    }
}

impl Tally {
    /// Counts candidate `index`, of effective weight `weight`.
    #[inline]
    fn add(&mut self, index: usize, weight: u32) {
        if self.count == 0 {
            self.first = index;
        }
        self.count += 1;
        self.total += u64::from(weight);
        self.lightest = self.lightest.min(weight);
        self.heaviest = self.heaviest.max(weight);
    }

    /// Draws one of the counted candidates, by weight (uniformly when their weights are
    /// equal, zero included). `is_candidate` must tell the counted indices again, in the
    /// same order: a second pass walks them when the draw needs it.
    ///
    /// When the second pass no longer finds the drawn candidate (what `is_candidate` reads
    /// moved in between, as an in-flight count does under load), the first candidate
    /// counted is the answer: it was a candidate, and the odds only shift by one draw.
    fn draw(
        &self,
        providers: &[Provider],
        weigher: &mut Weigher,
        is_candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self.count {
            0 => return None,
            1 => return Some(self.first),
            _ => {}
        }
        let mut candidates = (0..providers.len()).filter(|index| is_candidate(*index));
        if self.lightest == self.heaviest {
            let nth = fastrand::usize(..self.count);
            if self.count == providers.len() {
                // Every provider is a candidate: the nth candidate is provider nth.
                return Some(nth);
            }
            return Some(candidates.nth(nth).unwrap_or(self.first));
        }
        let mut point = fastrand::u64(..self.total);
        for index in candidates {
            let weight = u64::from(weigher.weight(&providers[index]));
            if point < weight {
                return Some(index);
            }
            point -= weight;
        }
        Some(self.first)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::super::tests::{counts, request, weighted};
    use super::*;

    fn shares(providers: &Providers, picks: u32) -> Vec<f64> {
        let counts = counts(&Random::default(), providers, &Tried::default(), picks);
        assert_eq!(
            counts.iter().sum::<u32>(),
            picks,
            "always a pick: {counts:?}"
        );
        counts
            .iter()
            .map(|count| f64::from(*count) / f64::from(picks))
            .collect()
    }

    #[test]
    fn shares_follow_weights_within_two_percent() {
        fastrand::seed(7);
        let weights = [100, 300, 0, 600];
        let shares = shares(&weighted(&weights), 100_000);
        for (share, weight) in shares.iter().zip(weights) {
            let expected = f64::from(weight) / 1000.0;
            assert!((share - expected).abs() < 0.02, "{shares:?}");
        }
        assert_eq!(
            shares[2], 0.0,
            "weight 0 is never picked while others can be"
        );
    }

    #[test]
    fn equal_weights_draw_uniformly_and_all_zero_too() {
        fastrand::seed(11);
        for weights in [[100, 100, 100, 100], [0, 0, 0, 0]] {
            let shares = shares(&weighted(&weights), 40_000);
            assert!(shares.iter().all(|s| (s - 0.25).abs() < 0.02), "{shares:?}");
        }
    }

    #[test]
    fn a_provider_warming_up_gets_proportionally_fewer_picks() {
        fastrand::seed(3);
        let now = SystemTime::now();
        let mut providers = weighted(&[100, 100]).to_vec();
        // A quarter into its warm-up: effective weight 25 against 100.
        providers[0] = providers[0]
            .clone()
            .with_start(now - Duration::from_secs(150));
        let providers = Providers::from(providers);
        let shares = shares(&providers, 100_000);
        assert!((shares[0] - 0.2).abs() < 0.02, "{shares:?}");
    }

    #[test]
    fn a_retry_skips_what_was_tried() {
        fastrand::seed(5);
        let providers = weighted(&[100, 1, 100]);
        let request = request();
        let tried = Tried {
            indices: vec![0, 2],
        };
        for _ in 0..100 {
            assert_eq!(
                Random::default().select(&providers, &request, &tried),
                Some(1)
            );
        }
        let tried = Tried {
            indices: vec![0, 1, 2],
        };
        assert_eq!(Random::default().select(&providers, &request, &tried), None);
    }
}
