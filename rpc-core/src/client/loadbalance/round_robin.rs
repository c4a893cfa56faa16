//! Smooth weighted round robin (nginx's): providers in turn, each as often as its weight
//! says, interleaved rather than in bursts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::warmup::Weigher;
use super::{LoadBalance, Tried, same_addresses};
use crate::Request;
use crate::client::{Provider, Providers};

/// Takes the providers in turn, each in proportion to its effective weight
/// ([`super::effective_weight`]), spread out: weights 5:1:1 give `a a b a c a a`, not
/// `a a a a a b c`. A retry takes the best provider not yet tried.
///
/// Each pick adds every untried provider's weight to its running score, takes the highest
/// score and subtracts the total weight from it (nginx's smooth weighted round robin).
/// Scores are kept per provider address, so they survive changes of the provider list: a
/// provider that stays keeps its place in the rotation, a new one starts at zero, and a
/// gone one is forgotten. Providers of weight zero are picked only when every untried
/// provider has weight zero, and then in plain rotation.
///
/// While no provider warms up, the order is a fixed period computed once per provider list
/// ([`Providers::round_robin_schedule`]), and a first attempt takes the next entry of it
/// with one atomic increment (with equal weights the period is plain rotation). Retries,
/// warm-ups and periods too long to keep take the scores, which move together: those picks
/// take a lock and one pass over the list.
#[derive(Debug, Default)]
pub struct RoundRobin {
    state: Mutex<Rotation>,
    /// Position in the plain rotation of equal weights or in the list's schedule.
    turn: AtomicUsize,
}

/// The running scores, in the order of the provider list they were last used with.
#[derive(Debug, Default)]
struct Rotation {
    addresses: Vec<Arc<str>>,
    scores: Vec<i64>,
    /// Where the plain rotation of weightless providers goes on.
    next: usize,
}

impl Rotation {
    /// Lines the scores up with `providers`, keeping each remaining address's score.
    fn follow(&mut self, providers: &[Provider]) {
        let previous: HashMap<&str, i64> = self
            .addresses
            .iter()
            .map(|address| &**address)
            .zip(self.scores.iter().copied())
            .collect();
        let scores = providers
            .iter()
            .map(|provider| previous.get(&*provider.address).copied().unwrap_or(0))
            .collect();
        self.scores = scores;
        self.addresses = providers.iter().map(|p| p.address.clone()).collect();
    }

    /// One turn of smooth weighted round robin among the candidates of positive weight;
    /// `None` when there is none.
    fn turn(
        &mut self,
        providers: &[Provider],
        is_candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut weigher = Weigher::default();
        let mut total: i64 = 0;
        let (mut best, mut top) = (usize::MAX, i64::MIN);
        for (index, (provider, score)) in providers.iter().zip(&mut self.scores).enumerate() {
            if !is_candidate(index) {
                continue;
            }
            let weight = i64::from(weigher.weight(provider));
            *score += weight;
            total += weight;
            // Strictly greater: the first of equal scores wins, which is what makes 5:1:1
            // come out as `a a b a c a a`. Weightless providers never win here. Which
            // provider leads moves around the list from pick to pick, so a branch would
            // mispredict: select without one.
            let leads = weight > 0 && *score > top;
            best = std::hint::select_unpredictable(leads, index, best);
            top = std::hint::select_unpredictable(leads, *score, top);
        }
        let score = self.scores.get_mut(best)?;
        *score -= total;
        Some(best)
    }
}

impl LoadBalance for RoundRobin {
    fn select(&self, providers: &Providers, _request: &Request, tried: &Tried) -> Option<usize> {
        if tried.is_empty() && providers.settled() && !providers.is_empty() {
            if providers.uniform() {
                return Some(self.turn.fetch_add(1, Ordering::Relaxed) % providers.len());
            }
            if let Some(schedule) = providers.round_robin_schedule() {
                let at = self.turn.fetch_add(1, Ordering::Relaxed) % schedule.len();
                return schedule.get(at).map(|&index| index as usize);
            }
        }
        let mut rotation = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !same_addresses(&rotation.addresses, providers) {
            rotation.follow(providers);
        }
        let best = if tried.is_empty() {
            rotation.turn(providers, |_| true)
        } else {
            rotation.turn(providers, |index| !tried.contains(index))
        };
        if best.is_some() {
            return best;
        }
        // Every untried provider weighs nothing: take them in plain rotation.
        let count = providers.len();
        let start = rotation.next;
        let index = (0..count)
            .map(|step| start.wrapping_add(step) % count)
            .find(|index| !tried.contains(*index))?;
        rotation.next = index.wrapping_add(1);
        Some(index)
    }
}

/// Longest period [`smooth_schedule`] keeps: 64 Ki picks (256 KiB).
const SCHEDULE_LIMIT: u64 = 1 << 16;

/// One period of smooth weighted round robin over the static weights of `providers`,
/// starting from zero scores: after it the scores are all zero again, so repeating it is
/// exactly what the running scores would give. Weights are first divided by their greatest
/// common divisor (100:200 is 1:2, a period of 3). `None` when the period would be longer
/// than [`SCHEDULE_LIMIT`], when building it would take too long, or when no provider has
/// a positive weight (the scores' path handles those).
pub(crate) fn smooth_schedule(providers: &[Provider]) -> Option<Box<[u32]>> {
    let divisor = providers.iter().fold(0u32, |g, p| gcd(g, p.weight));
    if divisor == 0 || u32::try_from(providers.len()).is_err() {
        return None;
    }
    let weights: Vec<i64> = providers
        .iter()
        .map(|p| i64::from(p.weight / divisor))
        .collect();
    let period: i64 = weights.iter().sum();
    let period_len = u64::try_from(period).ok()?;
    // Building costs a pass per entry: keep it to a few milliseconds.
    let work = period_len.saturating_mul(providers.len() as u64);
    if period_len > SCHEDULE_LIMIT || work > 1 << 24 {
        return None;
    }
    let mut scores = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(period_len as usize);
    for _ in 0..period {
        let (mut best, mut top) = (0usize, i64::MIN);
        for (index, (score, weight)) in scores.iter_mut().zip(&weights).enumerate() {
            *score += weight;
            // The same rule as `Rotation::turn`: strictly greater, positive weights only.
            if *weight > 0 && *score > top {
                (best, top) = (index, *score);
            }
        }
        scores[best] -= period;
        schedule.push(best as u32);
    }
    Some(schedule.into_boxed_slice())
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::tests::{request, weighted};
    use super::*;

    fn sequence(balancer: &RoundRobin, providers: &Providers, picks: usize) -> String {
        let request = request();
        (0..picks)
            .map(
                |_| match balancer.select(providers, &request, &Tried::default()) {
                    Some(index) => char::from(b'a' + index as u8),
                    None => '-',
                },
            )
            .collect()
    }

    #[test]
    fn weights_5_1_1_interleave_as_nginx_does() {
        let providers = weighted(&[5, 1, 1]);
        let balancer = RoundRobin::default();
        assert_eq!(sequence(&balancer, &providers, 7), "aabacaa");
        assert_eq!(sequence(&balancer, &providers, 7), "aabacaa", "and again");
    }

    #[test]
    fn the_schedule_is_what_the_scores_give() {
        for weights in [
            &[5, 1, 1][..],
            &[100, 200, 300],
            &[3, 0, 2, 7],
            &[1, 2, 3, 4, 5, 6],
        ] {
            let providers = weighted(weights);
            let schedule = providers.round_robin_schedule().expect("short period");
            let divisor = weights.iter().fold(0, |g, &w| gcd(g, w));
            let period: u32 = weights.iter().map(|w| w / divisor).sum();
            assert_eq!(schedule.len(), period as usize, "{weights:?}");
            // The scores' path, driven by a retry that tried nothing real (index past the
            // end), gives the same order from zero scores.
            let balancer = RoundRobin::default();
            let request = request();
            let ghost = Tried {
                indices: vec![usize::MAX],
            };
            let by_scores: Vec<u32> = (0..2 * schedule.len())
                .filter_map(|_| balancer.select(&providers, &request, &ghost))
                .map(|i| i as u32)
                .collect();
            assert_eq!(by_scores[..schedule.len()], *schedule, "{weights:?}");
            assert_eq!(by_scores[schedule.len()..], *schedule, "{weights:?}");
        }
        assert!(weighted(&[0, 0]).round_robin_schedule().is_none());
        let long: Vec<u32> = (0..300).map(|i| 1000 + i).collect();
        assert!(weighted(&long).round_robin_schedule().is_none(), "too long");
    }

    #[test]
    fn equal_weights_take_turns() {
        let providers = weighted(&[100, 100, 100]);
        assert_eq!(sequence(&RoundRobin::default(), &providers, 6), "abcabc");
    }

    #[test]
    fn weightless_providers_wait_until_nothing_else_is_left() {
        let providers = weighted(&[0, 1, 0]);
        let balancer = RoundRobin::default();
        assert_eq!(sequence(&balancer, &providers, 3), "bbb");
        let request = request();
        let tried = Tried { indices: vec![1] };
        let picks: Vec<_> = (0..4)
            .map(|_| balancer.select(&providers, &request, &tried))
            .collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
        let all_zero = weighted(&[0, 0]);
        assert_eq!(sequence(&RoundRobin::default(), &all_zero, 3), "aba");
    }

    #[test]
    fn a_retry_takes_the_best_untried() {
        let providers = weighted(&[5, 1, 1]);
        let balancer = RoundRobin::default();
        let request = request();
        let tried = Tried { indices: vec![0] };
        assert_eq!(balancer.select(&providers, &request, &tried), Some(1));
        let tried = Tried {
            indices: vec![0, 1, 2],
        };
        assert_eq!(balancer.select(&providers, &request, &tried), None);
    }

    #[test]
    fn scores_follow_addresses_across_list_changes() {
        let all = weighted(&[5, 1, 1]);
        let balancer = RoundRobin::default();
        // Picks that tried nothing real take the scores' path, as retries do.
        let ghost = Tried {
            indices: vec![usize::MAX],
        };
        let request = request();
        let picks: Vec<_> = (0..3)
            .map(|_| balancer.select(&all, &request, &ghost))
            .collect();
        assert_eq!(picks, [Some(0), Some(0), Some(1)]);
        // The list is rebuilt in another order, with `b` gone and a new `d`.
        let d = weighted(&[1, 1, 1, 1])[3].clone();
        let changed = Providers::from(vec![all[2].clone(), d, all[0].clone()]);
        {
            let rotation = balancer.state.lock().unwrap_or_else(|p| p.into_inner());
            assert_eq!(rotation.scores, [1, -4, 3]);
        }
        let picked = balancer.select(&changed, &request, &ghost);
        let rotation = balancer.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(rotation.addresses.len(), 3, "the gone provider is dropped");
        // c 3, d 0 (new), a 1; plus weights 1, 1, 5: c 4, d 1, a 6, and a wins.
        assert_eq!(picked, Some(2));
        assert_eq!(rotation.scores, [4, 1, 6 - 7]);
    }
}
