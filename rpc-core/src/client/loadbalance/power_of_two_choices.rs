//! Power of two choices: two providers at random, the less loaded of them.

use super::{LoadBalance, Tried};
use crate::Request;
use crate::client::Providers;

/// Draws two distinct untried providers at random and takes the cheaper: cost is the
/// peak-sensitive latency ([`crate::client::ProviderStats::peak_latency_us`]) times the
/// calls in flight plus this one (Finagle's and Linkerd's "P2C + peak EWMA").
///
/// Comparing two random providers instead of all of them keeps a pick O(1) and avoids the
/// herd that "always the best" causes among many consumers, while still steering away from
/// a slow or busy provider: one slow answer marks it at once. When either of the two has
/// not answered yet, latency says nothing about it, and their calls in flight decide.
/// Weights and warm-up are not used: measured latency is what steers.
#[derive(Debug, Default, Clone, Copy)]
pub struct PowerOfTwoChoices {
    _private: (),
}

impl LoadBalance for PowerOfTwoChoices {
    fn select(&self, providers: &Providers, _request: &Request, tried: &Tried) -> Option<usize> {
        let (first, second) = if tried.is_empty() {
            match providers.len() {
                0 => return None,
                1 => return Some(0),
                count => two_of(count),
            }
        } else {
            let untried = || (0..providers.len()).filter(|index| !tried.contains(*index));
            match untried().count() {
                0 => return None,
                1 => return untried().next(),
                count => {
                    let (first, second) = two_of(count);
                    let first = untried().nth(first)?;
                    let second = untried().nth(second)?;
                    (first, second)
                }
            }
        };
        let (a, b) = (&providers[first].stats, &providers[second].stats);
        // Calls in flight plus this one: an idle provider still costs its latency.
        let load = |in_flight: usize| (in_flight as u64).saturating_add(1);
        let (a_in_flight, b_in_flight) = (load(a.in_flight()), load(b.in_flight()));
        let (a_latency, b_latency) = (a.peak_latency_us(), b.peak_latency_us());
        let second_is_cheaper = if a_latency == 0 || b_latency == 0 {
            b_in_flight < a_in_flight
        } else {
            b_latency.saturating_mul(b_in_flight) < a_latency.saturating_mul(a_in_flight)
        };
        Some(if second_is_cheaper { second } else { first })
    }
}

/// Two distinct positions in `0..count` (`count >= 2`), uniformly.
fn two_of(count: usize) -> (usize, usize) {
    let first = fastrand::usize(..count);
    let second = fastrand::usize(..count - 1);
    (first, if second >= first { second + 1 } else { second })
}

#[cfg(test)]
mod tests {
    use super::super::tests::weighted;
    use super::*;

    fn counts(providers: &Providers, tried: &Tried, picks: u32) -> Vec<u32> {
        super::super::tests::counts(&PowerOfTwoChoices::default(), providers, tried, picks)
    }

    #[test]
    fn two_of_gives_distinct_positions_evenly() {
        fastrand::seed(8);
        let mut seen = [[0u32; 3]; 3];
        for _ in 0..30_000 {
            let (a, b) = two_of(3);
            assert_ne!(a, b);
            seen[a][b] += 1;
        }
        for (a, row) in seen.iter().enumerate() {
            for (b, count) in row.iter().enumerate() {
                assert!(a == b || (4_500..5_500).contains(count), "{seen:?}");
            }
        }
    }

    #[test]
    fn avoids_a_provider_whose_latency_became_high() {
        fastrand::seed(9);
        let providers = weighted(&[100, 100, 100]);
        for provider in providers.iter() {
            for _ in 0..20 {
                provider.stats.observe_latency(1_000);
            }
        }
        // Provider 1 was as fast as the others; one answer of 50 ms marks it slow at once.
        providers[1].stats.observe_latency(50_000);
        let counts = counts(&providers, &Tried::default(), 30_000);
        assert_eq!(counts[1], 0, "it loses every comparison: {counts:?}");
        assert!(counts[0] > 13_000 && counts[2] > 13_000, "{counts:?}");
    }

    #[test]
    fn without_latency_yet_the_calls_in_flight_decide() {
        fastrand::seed(10);
        let providers = weighted(&[100, 100]);
        providers[0].stats.observe_latency(1_000);
        providers[1].stats.set_in_flight(2);
        assert_eq!(counts(&providers, &Tried::default(), 1_000), [1_000, 0]);
    }

    #[test]
    fn a_retry_draws_among_the_untried() {
        fastrand::seed(12);
        let providers = weighted(&[100, 100, 100, 100]);
        let tried = Tried {
            indices: vec![0, 2],
        };
        let spread = counts(&providers, &tried, 1_000);
        assert_eq!(spread[0] + spread[2], 0, "{spread:?}");
        assert!(spread[1] > 300 && spread[3] > 300, "{spread:?}");
        let tried = Tried {
            indices: vec![0, 1, 2],
        };
        assert_eq!(counts(&providers, &tried, 10), [0, 0, 0, 10]);
    }
}
