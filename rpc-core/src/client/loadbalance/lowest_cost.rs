//! The cheapest untried provider by some live measure, ties broken by weighted random: the
//! shape of least-active and shortest-response.

use super::Tried;
use super::random::Tally;
use super::warmup::Weigher;
use crate::client::{Provider, Providers};

/// The untried provider of lowest `cost`; among equal costs, a weighted random one (by
/// effective weight), so idle providers share the load as their weights say.
///
/// `cost` reads live statistics, so it is called twice per provider at most and may see
/// them move in between; that only shifts the tie-break (see [`Tally::draw`]).
pub(super) fn lowest_cost(
    providers: &Providers,
    tried: &Tried,
    cost: impl Fn(&Provider) -> u64,
) -> Option<usize> {
    // Equal weights and nobody warming up: ties are broken uniformly, with no weight read.
    if tried.is_empty() && providers.uniform() && providers.settled() {
        return lowest_uniform(providers, cost);
    }
    // Two copies of the loop: the first attempt of a call has tried nothing, and its loop
    // then skips the check.
    if tried.is_empty() {
        lowest_among(providers, |_| true, cost)
    } else {
        lowest_among(providers, |index| !tried.contains(index), cost)
    }
}

fn lowest_among(
    providers: &[Provider],
    is_candidate: impl Fn(usize) -> bool,
    cost: impl Fn(&Provider) -> u64,
) -> Option<usize> {
    let mut weigher = Weigher::default();
    let mut lowest = u64::MAX;
    let mut tally = Tally::default();
    for (index, provider) in providers.iter().enumerate() {
        if !is_candidate(index) {
            continue;
        }
        let this = cost(provider);
        if this < lowest || tally.is_empty() {
            lowest = this;
            tally = Tally::default();
        } else if this > lowest {
            continue;
        }
        tally.add(index, weigher.weight(provider));
    }
    tally.draw(providers, &mut weigher, |index| {
        is_candidate(index) && cost(&providers[index]) == lowest
    })
}

/// [`lowest_cost`] over every provider when all weigh the same: one pass reading only the
/// costs and counting the ties, then a draw among the ties.
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
