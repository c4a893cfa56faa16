//! The cheapest untried provider by some live measure, ties broken by weighted random: the
//! shape of least-active and shortest-response.

use std::cell::RefCell;
use std::sync::Arc;

use super::Tried;
use super::warmup::Weigher;
use crate::client::{ProviderStats, Providers};

/// Lists up to this long note their ties in a buffer on the stack (512 bytes).
const STACK: usize = 128;

thread_local! {
    /// The ties of one pick over a longer list, kept per thread so such a pick allocates
    /// nothing once the buffer has grown to the list's size.
    static TIES: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The untried provider of lowest `cost`; among equal costs, a weighted random one (by
/// effective weight), so idle providers share the load as their weights say.
///
/// One pass reads each provider's cost once, through [`Providers`]' contiguous side array
/// of statistics (8-byte strides, not whole providers), and notes the indices of the
/// lowest cost seen so far; the draw then looks at the ties only. With equal weights it
/// reads no weight at all; when every provider ties (idle ones do) on a settled list, it
/// is the list's precomputed weight search.
pub(super) fn lowest_cost(
    providers: &Providers,
    tried: &Tried,
    cost: impl Fn(&ProviderStats) -> u64,
) -> Option<usize> {
    let len = providers.stats().len();
    if len <= STACK {
        return pick(providers, tried, &mut [0u32; STACK], &cost);
    }
    TIES.with(|ties| match ties.try_borrow_mut() {
        Ok(mut ties) => {
            ties.resize(len, 0);
            pick(providers, tried, &mut ties, &cost)
        }
        // Only a `cost` that picks again on this thread gets here; it gets a buffer of its own.
        Err(_) => pick(providers, tried, &mut vec![0; len], &cost),
    })
}

/// [`lowest_cost`] with `ties` at least as long as the list.
fn pick(
    providers: &Providers,
    tried: &Tried,
    ties: &mut [u32],
    cost: &impl Fn(&ProviderStats) -> u64,
) -> Option<usize> {
    let stats = providers.stats();
    // Two copies of the loop: the first attempt of a call has tried nothing, and its loop
    // then skips the check.
    let count = match tried.is_empty() {
        true => note_lowest(stats, ties, |_| true, cost),
        false => note_lowest(stats, ties, |index| !tried.contains(index), cost),
    };
    let ties = ties.get(..count)?;
    let settled = providers.settled();
    if providers.uniform() && settled {
        // Equal weights and nobody warming up: uniformly, with no weight read.
        return draw_uniform(ties);
    }
    if count == stats.len() && settled {
        // Every provider ties: the static weights' running sums answer in O(log n).
        return match providers.total_weight() {
            0 => draw_uniform(ties),
            total => providers.by_weight(fastrand::u64(..total)),
        };
    }
    let weights = providers.weights();
    let mut weigher = Weigher::default();
    // The weigher reads the clock once per pick, so both walks see the same weights.
    let mut weight = |index: u32| -> u64 {
        let index = index as usize;
        match settled {
            true => weights.get(index).copied().map_or(0, u64::from),
            false => providers
                .get(index)
                .map_or(0, |provider| u64::from(weigher.weight(provider))),
        }
    };
    let total: u64 = ties.iter().map(|&index| weight(index)).sum();
    if total == 0 {
        // Every tie weighs nothing: uniformly.
        return draw_uniform(ties);
    }
    let mut point = fastrand::u64(..total);
    for &index in ties {
        let this = weight(index);
        if point < this {
            return Some(index as usize);
        }
        point -= this;
    }
    ties.last().map(|&index| index as usize)
}

/// Writes to the front of `ties` the indices of the candidates of lowest cost, and
/// answers how many there are.
#[inline(always)]
fn note_lowest(
    stats: &[Arc<ProviderStats>],
    ties: &mut [u32],
    is_candidate: impl Fn(usize) -> bool,
    cost: &impl Fn(&ProviderStats) -> u64,
) -> usize {
    let mut lowest = u64::MAX;
    let mut count = 0;
    for (index, stats) in stats.iter().enumerate() {
        if !is_candidate(index) {
            continue;
        }
        let this = cost(stats);
        if this < lowest {
            lowest = this;
            count = 0;
        }
        if this == lowest {
            if let Some(slot) = ties.get_mut(count) {
                // Lists longer than u32::MAX providers do not exist; the cast cannot truncate.
                *slot = index as u32;
            }
            count += 1;
        }
    }
    count.min(ties.len())
}

fn draw_uniform(ties: &[u32]) -> Option<usize> {
    match ties.len() {
        0 => None,
        len => ties
            .get(fastrand::usize(..len))
            .map(|&index| index as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::weighted;
    use super::*;
    use std::time::{Duration, SystemTime};

    /// How many of `picks` went to each provider, by in-flight count.
    fn shares(providers: &Providers, tried: &Tried, picks: u32) -> Vec<u32> {
        let mut seen = vec![0u32; providers.len()];
        for _ in 0..picks {
            let picked = lowest_cost(providers, tried, |s| s.in_flight() as u64);
            seen[picked.expect("a provider")] += 1;
        }
        seen
    }

    #[test]
    fn ties_of_weight_zero_are_drawn_uniformly_and_none_is_none() {
        fastrand::seed(7);
        let providers = weighted(&[0, 0, 5]);
        providers[2].stats.set_in_flight(1);
        let seen = shares(&providers, &Tried::default(), 1000);
        assert_eq!(seen[2], 0, "{seen:?}");
        assert!(seen[0] > 400 && seen[1] > 400, "{seen:?}");
        let tried = Tried {
            indices: vec![0, 1, 2],
        };
        assert_eq!(lowest_cost(&providers, &tried, |_| 0), None);
        assert_eq!(
            lowest_cost(&Providers::default(), &Tried::default(), |_| 0),
            None
        );
    }

    #[test]
    fn only_the_ties_of_the_lowest_cost_are_drawn() {
        fastrand::seed(8);
        // The lowest cost shows up after higher ones were noted as ties.
        let providers = weighted(&[1, 1, 1, 1, 1]);
        for (index, in_flight) in [5, 5, 1, 5, 1].into_iter().enumerate() {
            providers[index].stats.set_in_flight(in_flight);
        }
        let seen = shares(&providers, &Tried::default(), 10_000);
        assert_eq!([seen[0], seen[1], seen[3]], [0, 0, 0], "{seen:?}");
        assert!(seen[2].abs_diff(5_000) < 300, "{seen:?}");
        let seen = shares(&providers, &Tried { indices: vec![4] }, 100);
        assert_eq!(seen[2], 100, "{seen:?}");
    }

    #[test]
    fn when_every_provider_ties_the_draw_follows_the_weights() {
        fastrand::seed(9);
        let providers = weighted(&[100, 300, 0]);
        let seen = shares(&providers, &Tried::default(), 100_000);
        assert_eq!(seen[2], 0, "{seen:?}");
        let share = f64::from(seen[1]) / 100_000.0;
        assert!((share - 0.75).abs() < 0.02, "{seen:?}");
    }

    #[test]
    fn equal_weights_still_ramp_while_warming_up() {
        fastrand::seed(10);
        let list: Vec<_> = weighted(&[100, 100]).iter().cloned().collect();
        let warming = list[0]
            .clone()
            .with_start(SystemTime::now() - Duration::from_secs(60));
        let providers = Providers::new(vec![warming, list[1].clone()]);
        assert!(providers.uniform() && !providers.settled());
        let seen = shares(&providers, &Tried::default(), 100_000);
        // Effective weights 10 and 100.
        let share = f64::from(seen[0]) / 100_000.0;
        assert!((share - 10.0 / 110.0).abs() < 0.01, "{seen:?}");
    }

    #[test]
    fn a_list_longer_than_the_stack_buffer_skips_tried_and_follows_weights() {
        fastrand::seed(11);
        let len = STACK + 72;
        let mut weights = vec![1u32; len];
        weights[len - 1] = 3;
        let providers = weighted(&weights);
        for provider in &providers[..len - 2] {
            provider.stats.set_in_flight(1);
        }
        let seen = shares(&providers, &Tried::default(), 40_000);
        assert_eq!(seen[..len - 2].iter().sum::<u32>(), 0);
        let share = f64::from(seen[len - 1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{seen:?}");
        let tried = Tried {
            indices: vec![len - 1],
        };
        assert_eq!(shares(&providers, &tried, 100)[len - 2], 100);
    }

    #[test]
    fn a_cost_that_picks_again_gets_its_own_buffer() {
        // Long enough for the per-thread buffer, which the inner pick finds borrowed.
        let providers = weighted(&[1; STACK + 1]);
        for provider in providers
            .iter()
            .filter(|p| !p.address.ends_with(".7:20880"))
        {
            provider.stats.set_in_flight(1);
        }
        let picked = lowest_cost(&providers, &Tried::default(), |stats| {
            let inner = lowest_cost(&providers, &Tried::default(), |s| s.in_flight() as u64);
            stats.in_flight() as u64 * 1000 + inner.map_or(0, |i| i as u64)
        });
        assert_eq!(picked, Some(7));
    }
}
