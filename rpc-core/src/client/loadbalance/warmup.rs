//! Warm-up: a provider that just started gets a share of calls that grows with its uptime.
//!
//! A process that just started is slow for a while (cold caches, connection pools still
//! filling, lazy initialisation), so handing it its full share at once makes its first
//! callers pay for that. As in Dubbo, weighted balancers scale a provider's weight by its
//! uptime over [`WARMUP`].

use std::time::{Duration, SystemTime};

use crate::client::Provider;

/// How long a provider's weight takes to ramp up to its full value (Dubbo's default
/// `warmup`, 10 minutes).
pub const WARMUP: Duration = Duration::from_secs(10 * 60);

/// The weight weighted balancers give `provider` at `now`: its [`Provider::weight`] scaled
/// by its uptime over [`WARMUP`], at least 1 while the weight is positive (so a provider
/// that just started still gets a trickle of calls to warm up with).
///
/// Full weight when the start time is unknown, when the warm-up is over, and when the start
/// lies in the future: that is clock skew between hosts, and trusting it would keep a
/// provider at weight 1 for as long as the skew (Dubbo does the same).
pub fn effective_weight(provider: &Provider, now: SystemTime) -> u32 {
    match provider.start {
        None => provider.weight,
        Some(start) => warming(provider.weight, start, now),
    }
}

fn warming(weight: u32, start: SystemTime, now: SystemTime) -> u32 {
    let Ok(uptime) = now.duration_since(start) else {
        return weight;
    };
    if weight == 0 || uptime >= WARMUP {
        return weight;
    }
    // u128 nanoseconds: exact, and `weight * uptime` cannot overflow.
    let ramped = u128::from(weight) * uptime.as_nanos() / WARMUP.as_nanos();
    u32::try_from(ramped).unwrap_or(weight).clamp(1, weight)
}

/// The effective weights of one pick. Reads the clock at most once per pick, and only when
/// some provider has a start time: a list without any pays nothing for warm-up.
#[derive(Debug, Default)]
pub(super) struct Weigher {
    now: Option<SystemTime>,
}

impl Weigher {
    /// [`effective_weight`] of `provider` now.
    #[inline]
    pub(super) fn weight(&mut self, provider: &Provider) -> u32 {
        match provider.start {
            None => provider.weight,
            Some(start) => self.since(provider.weight, start),
        }
    }

    // Out of line: keeps the loops of the balancers small when no provider has a start
    // time, which is the common case.
    #[cold]
    #[inline(never)]
    fn since(&mut self, weight: u32, start: SystemTime) -> u32 {
        let now = *self.now.get_or_insert_with(SystemTime::now);
        warming(weight, start, now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::providers;
    use super::*;

    fn provider(weight: u32, uptime: Option<Duration>, now: SystemTime) -> Provider {
        let provider = providers(1)[0].clone().with_weight(weight);
        match uptime {
            Some(uptime) => provider.with_start(now - uptime),
            None => provider,
        }
    }

    #[test]
    fn weight_ramps_linearly_over_the_warm_up() {
        let now = SystemTime::now();
        let at = |uptime: Option<Duration>| effective_weight(&provider(100, uptime, now), now);
        assert_eq!(at(None), 100, "no start time: full weight");
        assert_eq!(at(Some(Duration::ZERO)), 1, "just started: at least 1");
        assert_eq!(at(Some(Duration::from_secs(60))), 10);
        assert_eq!(at(Some(Duration::from_secs(300))), 50);
        assert_eq!(at(Some(Duration::from_secs(599))), 99);
        assert_eq!(at(Some(WARMUP)), 100);
        assert_eq!(at(Some(Duration::from_secs(3600))), 100);
    }

    #[test]
    fn zero_stays_zero_and_a_future_start_is_skew() {
        let now = SystemTime::now();
        let zero = provider(0, Some(Duration::from_secs(60)), now);
        assert_eq!(effective_weight(&zero, now), 0);
        let skewed = provider(100, None, now).with_start(now + Duration::from_secs(30));
        assert_eq!(effective_weight(&skewed, now), 100);
        let huge = provider(u32::MAX, Some(Duration::from_secs(300)), now);
        assert_eq!(effective_weight(&huge, now), u32::MAX / 2);
    }

    #[test]
    fn the_weigher_agrees_with_effective_weight() {
        let now = SystemTime::now();
        let warm = provider(100, Some(Duration::from_secs(120)), now);
        let mut weigher = Weigher::default();
        // Uptime is read by the weigher a moment later: same weight to the unit.
        assert_eq!(weigher.weight(&warm), effective_weight(&warm, now));
        assert_eq!(weigher.weight(&provider(7, None, now)), 7);
    }
}
