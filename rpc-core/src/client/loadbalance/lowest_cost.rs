//! The cheapest untried provider by some live measure, ties broken by weighted random: the
//! shape of least-active and shortest-response.

use std::cell::RefCell;
use std::sync::Arc;

use super::Tried;
use super::warmup::Weigher;
use crate::client::{ProviderStats, Providers};

/// Lists up to this long note their ties in a buffer on the stack (512 bytes).
const STACK: usize = 128;

/// Lists up to this long are scanned whole on a first attempt; longer ones are sampled.
const EXACT_UP_TO: usize = 32;

/// How many providers a sampled pick compares.
const SAMPLES: usize = 8;

thread_local! {
    /// The ties of one pick over a longer list, kept per thread so such a pick allocates
    /// nothing once the buffer has grown to the list's size.
    static TIES: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The untried provider of lowest `cost`; among equal costs, a weighted random one (by
/// effective weight), so idle providers share the load as their weights say.
///
/// Exact for lists of up to [`EXACT_UP_TO`] providers, for retries and while a provider
/// warms up. The first attempt over a longer, settled list compares [`SAMPLES`] providers
/// drawn by weight instead of all of them ([`sampled`]): reading every provider's live
/// counter costs about 1-2 ns each, so 100 providers took 120-200 ns a pick; 8 draws
/// cost a fixed amount whatever the list's length.
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
    if len > EXACT_UP_TO && tried.is_empty() && providers.settled() {
        return sampled(providers, &cost);
    }
    noting_ties(providers, tried, cost)
}

/// The lowest cost among [`SAMPLES`] providers drawn at random by static weight, with
/// replacement; among equal costs, the one drawn first.
///
/// The power of d choices (Mitzenmacher) in place of a full scan: a provider among the
/// busiest is picked only when every draw lands on one as busy, and an idle provider is
/// found unless none is drawn: with a share `f` of the weight idle, a pick misses every
/// idle provider with probability `(1 - f)^8` (`f` = 1/2: 0.4 %; `f` = 1/4: 10 %; one idle
/// provider among 100 equal ones: 92 %, and the pick is then the least busy of the 8
/// drawn). Ties still
/// follow the weights: the draws are independent and by weight, so the first drawn of
/// the tied ones is each tied provider in proportion to its weight, as in a full scan.
fn sampled(providers: &Providers, cost: &impl Fn(&ProviderStats) -> u64) -> Option<usize> {
    let stats = providers.stats();
    let total = providers.total_weight();
    // One period of smooth round robin lists each provider as often as its weight: a
    // uniform index into it is a weighted draw in O(1), where the running sums need a
    // binary search per draw.
    let schedule = match providers.uniform() || total == 0 {
        true => None,
        false => providers.round_robin_schedule(),
    };
    // One look-up of the thread's generator per pick, not one per draw.
    let mut rng = fastrand::Rng::with_seed(fastrand::u64(..));
    let mut draw = || -> usize {
        match schedule {
            Some(schedule) => schedule
                .get(rng.usize(..schedule.len()))
                .map_or(0, |&index| index as usize),
            None if providers.uniform() || total == 0 => rng.usize(..stats.len()),
            None => providers.by_weight(rng.u64(..total)).unwrap_or(0),
        }
    };
    let mut best = None;
    let mut lowest = u64::MAX;
    for _ in 0..SAMPLES {
        let index = draw();
        let Some(counters) = stats.get(index) else {
            continue;
        };
        let this = cost(counters);
        if this < lowest || best.is_none() {
            lowest = this;
            best = Some(index);
        }
    }
    best
}

/// [`lowest_cost`] in one pass over every untried provider, noting the ties.
fn noting_ties(
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
        // The pass that notes ties, which a first attempt over a list this long skips for
        // a sample (tested below).
        let mut seen = vec![0u32; len];
        for _ in 0..40_000 {
            let picked = noting_ties(&providers, &Tried::default(), |s| s.in_flight() as u64);
            seen[picked.expect("a provider")] += 1;
        }
        assert_eq!(seen[..len - 2].iter().sum::<u32>(), 0);
        let share = f64::from(seen[len - 1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{seen:?}");
        let tried = Tried {
            indices: vec![len - 1],
        };
        assert_eq!(shares(&providers, &tried, 100)[len - 2], 100);
    }

    #[test]
    fn a_sample_of_a_long_list_keeps_off_the_busy_and_its_ties_follow_weights() {
        fastrand::seed(12);
        // 100 providers: the first 50 busy (weight 2 each, half the weight), the other 50
        // idle, of weights 1 and 3 in turn.
        let weights: Vec<u32> = (0..100)
            .map(|i| match i {
                ..50 => 2,
                _ if i % 2 == 0 => 1,
                _ => 3,
            })
            .collect();
        let providers = weighted(&weights);
        assert!(providers.len() > EXACT_UP_TO && providers.settled());
        for provider in &providers[..50] {
            provider.stats.set_in_flight(1);
        }
        let picks = 100_000;
        let seen = shares(&providers, &Tried::default(), picks);
        // Every draw on a busy one: 0.5^8 of the picks, 390 of 100 000.
        let busy: u32 = seen[..50].iter().sum();
        assert!(busy < 600, "{busy} picks went to busy providers");
        let heavy: u32 = seen[50..].iter().skip(1).step_by(2).sum();
        let share = f64::from(heavy) / f64::from(picks - busy);
        assert!(
            (share - 0.75).abs() < 0.02,
            "weight 3 got {share} of the idle picks"
        );
        // Equal weights: uniformly among the idle ones.
        let providers = weighted(&[5; 100]);
        for provider in &providers[..50] {
            provider.stats.set_in_flight(1);
        }
        let seen = shares(&providers, &Tried::default(), picks);
        assert!(seen[..50].iter().sum::<u32>() < 600, "{seen:?}");
        let (least, most) = (seen[50..].iter().min(), seen[50..].iter().max());
        assert!(
            least
                .zip(most)
                .is_some_and(|(l, m)| *l > 1_600 && *m < 2_400),
            "{seen:?}"
        );
    }

    #[test]
    fn a_retry_or_a_warm_up_over_a_long_list_is_still_exact() {
        fastrand::seed(13);
        let providers = weighted(&[1; 100]);
        for provider in providers
            .iter()
            .filter(|p| !p.address.ends_with(".77:20880"))
        {
            provider.stats.set_in_flight(1);
        }
        let tried = Tried { indices: vec![3] };
        assert_eq!(shares(&providers, &tried, 100)[77], 100);
        let mut list = providers.to_vec();
        list[0] = list[0]
            .clone()
            .with_start(SystemTime::now() - Duration::from_secs(60));
        let warming = Providers::new(list);
        assert!(!warming.settled());
        assert_eq!(shares(&warming, &Tried::default(), 100)[77], 100);
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
        let picked = noting_ties(&providers, &Tried::default(), |stats| {
            let inner = noting_ties(&providers, &Tried::default(), |s| s.in_flight() as u64);
            stats.in_flight() as u64 * 1000 + inner.map_or(0, |i| i as u64)
        });
        assert_eq!(picked, Some(7));
    }
}
