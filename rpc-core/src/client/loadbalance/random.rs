//! Weighted random: Dubbo's default balancer.

use super::{LoadBalance, Tried};
use crate::Request;
use crate::client::Provider;

/// Picks a provider at random, each with a chance proportional to its weight; a retry
/// draws again among the providers not yet tried. When every remaining weight is zero the
/// draw is uniform.
#[derive(Debug, Default, Clone, Copy)]
pub struct Random {
    _private: (),
}

impl LoadBalance for Random {
    fn select(&self, providers: &[Provider], _request: &Request, tried: &Tried) -> Option<usize> {
        let candidates = || (0..providers.len()).filter(|index| !tried.contains(*index));
        let total: u64 = candidates().map(|i| u64::from(providers[i].weight)).sum();
        if total == 0 {
            let count = candidates().count();
            return (count > 0).then(|| candidates().nth(fastrand::usize(..count)))?;
        }
        let mut point = fastrand::u64(..total);
        for index in candidates() {
            let weight = u64::from(providers[index].weight);
            if point < weight {
                return Some(index);
            }
            point -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{providers, request};
    use super::*;

    #[test]
    fn shares_follow_weights() {
        let weights = [100, 300, 0];
        let providers: Vec<_> = providers(3)
            .into_iter()
            .zip(weights)
            .map(|(p, w)| p.with_weight(w))
            .collect();
        let request = request();
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            let index = Random::default().select(&providers, &request, &Tried::default());
            counts[index.unwrap_or(2)] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 is never picked while others can be");
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{counts:?}");
    }

    #[test]
    fn a_retry_skips_what_was_tried() {
        let providers = providers(2);
        let request = request();
        let tried = Tried { indices: vec![0] };
        for _ in 0..100 {
            assert_eq!(
                Random::default().select(&providers, &request, &tried),
                Some(1)
            );
        }
    }
}
