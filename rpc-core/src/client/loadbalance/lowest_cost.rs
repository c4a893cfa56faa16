//! The cheapest untried provider by some live measure, ties broken by weighted random: the
//! shape of least-active and shortest-response.

use std::cell::RefCell;

use super::Tried;
use super::warmup::Weigher;
use crate::client::{Provider, Providers};

thread_local! {
    /// The ties of one pick: `(index, running weight sum)`. Kept per thread so a pick is
    /// one pass that allocates nothing once the buffer has grown to the list's size.
    static TIES: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// The untried provider of lowest `cost`; among equal costs, a weighted random one (by
/// effective weight), so idle providers share the load as their weights say.
///
/// With mixed weights (or a retry), one pass reads each provider's cost once and notes the
/// ties of the lowest cost seen so far with their running weight sum; the draw is then a
/// binary search over the ties.
pub(super) fn lowest_cost(
    providers: &Providers,
    tried: &Tried,
    cost: impl Fn(&Provider) -> u64,
) -> Option<usize> {
    // Equal weights and nobody warming up: ties are drawn uniformly, with no weight read.
    let weighed = !(providers.uniform() && providers.settled());
    if !weighed && tried.is_empty() {
        return lowest_uniform(providers, cost);
    }
    // Two copies of the loop: the first attempt of a call has tried nothing, and its loop
    // then skips the check.
    let scan = |ties: &mut Vec<(u32, u64)>| match tried.is_empty() {
        true => lowest_among(providers, ties, weighed, |_| true, &cost),
        false => lowest_among(
            providers,
            ties,
            weighed,
            |index| !tried.contains(index),
            &cost,
        ),
    };
    TIES.with(|ties| match ties.try_borrow_mut() {
        Ok(mut ties) => scan(&mut ties),
        // Only a `cost` that picks again on this thread gets here; it gets a buffer of its own.
        Err(_) => scan(&mut Vec::new()),
    })
}

fn lowest_among(
    providers: &[Provider],
    ties: &mut Vec<(u32, u64)>,
    weighed: bool,
    is_candidate: impl Fn(usize) -> bool,
    cost: impl Fn(&Provider) -> u64,
) -> Option<usize> {
    ties.clear();
    let mut weigher = Weigher::default();
    let mut lowest = u64::MAX;
    let mut total = 0u64;
    for (index, provider) in providers.iter().enumerate() {
        if !is_candidate(index) {
            continue;
        }
        let this = cost(provider);
        if this > lowest {
            continue;
        }
        if this < lowest {
            lowest = this;
            ties.clear();
            total = 0;
        }
        if weighed {
            total += u64::from(weigher.weight(provider));
        }
        // Lists longer than u32::MAX providers do not exist; the cast cannot truncate.
        ties.push((index as u32, total));
    }
    let picked = match total {
        // Equal weights, or every tie weighs nothing: uniformly.
        0 => ties.get(fastrand::usize(..ties.len().max(1)))?,
        _ => {
            let point = fastrand::u64(..total);
            let at = ties.partition_point(|&(_, sum)| sum <= point);
            ties.get(at)?
        }
    };
    Some(picked.0 as usize)
}

/// [`lowest_cost`] over every provider when all weigh the same: one pass reading only the
/// costs and counting the ties, then a walk to the drawn tie. Cheaper than noting the ties
/// when most providers tie, as idle ones do.
fn lowest_uniform(providers: &[Provider], cost: impl Fn(&Provider) -> u64) -> Option<usize> {
    let mut lowest = u64::MAX;
    let mut ties = 0usize;
    for provider in providers {
        let this = cost(provider);
        if this < lowest {
            lowest = this;
            ties = 1;
        } else if this == lowest {
            ties += 1;
        }
    }
    if ties == 0 {
        return None;
    }
    let mut skip = fastrand::usize(..ties);
    let mut last = None;
    for (index, provider) in providers.iter().enumerate() {
        if cost(provider) == lowest {
            if skip == 0 {
                return Some(index);
            }
            skip -= 1;
            last = Some(index);
        }
    }
    // The costs moved between the passes (calls started or ended): one of the lowest seen
    // on the way, or the first provider, is as good an answer.
    last.or(Some(0))
}

#[cfg(test)]
mod tests {
    use super::super::tests::weighted;
    use super::*;

    #[test]
    fn ties_of_weight_zero_are_drawn_uniformly_and_none_is_none() {
        fastrand::seed(7);
        let providers = weighted(&[0, 0, 5]);
        providers[2].stats.set_in_flight(1);
        let mut seen = [0u32; 3];
        for _ in 0..1000 {
            let picked = lowest_cost(&providers, &Tried::default(), |p| {
                p.stats.in_flight() as u64
            });
            seen[picked.expect("a provider")] += 1;
        }
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
    fn a_cost_that_picks_again_gets_its_own_buffer() {
        let providers = weighted(&[1, 2, 3]);
        let picked = lowest_cost(&providers, &Tried::default(), |provider| {
            let inner = lowest_cost(&providers, &Tried::default(), |p| u64::from(p.weight));
            u64::from(provider.weight) + inner.map_or(0, |i| i as u64)
        });
        assert_eq!(picked, Some(0));
    }
}
