//! The provider list a directory hands out, with what balancers need computed once per list
//! rather than once per pick.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use super::loadbalance::{WARMUP, smooth_schedule};
use super::provider::{Provider, ProviderStats};

/// An immutable, shared list of providers (cloning it is one reference count).
///
/// Built once per change of the list (a directory update), it carries the static weights'
/// running sums and whether they are all equal, so weighted balancers pick in constant
/// time (equal weights) or logarithmic time (a binary search) instead of a pass over every
/// provider. While some provider is inside its warm-up those figures do not hold (its
/// weight moves with the clock) and balancers take the full pass.
#[derive(Clone)]
pub struct Providers {
    inner: Arc<Inner>,
}

struct Inner {
    list: Box<[Provider]>,
    /// `list[i].stats`, side by side: balancers that scan live statistics walk 8-byte
    /// pointers instead of striding over whole providers.
    stats: Box<[Arc<ProviderStats>]>,
    /// `list[i].weight`, side by side, for the same reason.
    weights: Box<[u32]>,
    /// `cumulative[i]`: the weights of providers `0..=i` summed.
    cumulative: Box<[u64]>,
    /// Every weight is the same (zero included).
    uniform: bool,
    /// When the last warm-up ends; `None`: no provider is warming up, ever.
    warm_until: Option<SystemTime>,
    /// Set once the clock passed `warm_until`, so a settled list reads no clock.
    warmed: AtomicBool,
    /// One period of smooth weighted round robin over the static weights, built on first
    /// use by a round-robin balancer; `None` when too long to be worth keeping.
    schedule: OnceLock<Option<Box<[u32]>>>,
}

impl Providers {
    /// The list `providers`, with its weights summed.
    pub fn new(providers: Vec<Provider>) -> Providers {
        let mut total = 0u64;
        let cumulative = providers
            .iter()
            .map(|provider| {
                total += u64::from(provider.weight);
                total
            })
            .collect();
        let uniform = providers.windows(2).all(|w| w[0].weight == w[1].weight);
        let warm_until = providers
            .iter()
            .filter_map(|provider| provider.start?.checked_add(WARMUP))
            .max();
        let stats = providers.iter().map(|p| Arc::clone(&p.stats)).collect();
        let weights = providers.iter().map(|p| p.weight).collect();
        Providers {
            inner: Arc::new(Inner {
                list: providers.into_boxed_slice(),
                stats,
                weights,
                cumulative,
                uniform,
                warm_until,
                warmed: AtomicBool::new(warm_until.is_none()),
                schedule: OnceLock::new(),
            }),
        }
    }

    /// True when every provider weighs its static [`Provider::weight`] now: none is inside
    /// its warm-up. Reads the clock only while some provider may still be warming up.
    pub fn settled(&self) -> bool {
        if self.inner.warmed.load(Ordering::Relaxed) {
            return true;
        }
        let settled = self
            .inner
            .warm_until
            .is_none_or(|until| SystemTime::now() >= until);
        if settled {
            self.inner.warmed.store(true, Ordering::Relaxed);
        }
        settled
    }

    /// True when every provider has the same static weight.
    pub fn uniform(&self) -> bool {
        self.inner.uniform
    }

    /// Each provider's [`Provider::stats`], in list order, in one contiguous slice.
    pub(crate) fn stats(&self) -> &[Arc<ProviderStats>] {
        &self.inner.stats
    }

    /// Each provider's static [`Provider::weight`], in list order, in one contiguous slice.
    pub(crate) fn weights(&self) -> &[u32] {
        &self.inner.weights
    }

    /// The static weights summed.
    pub fn total_weight(&self) -> u64 {
        self.inner.cumulative.last().copied().unwrap_or(0)
    }

    /// The provider a point in `0..total_weight()` falls on, each owning a stretch as long
    /// as its static weight (a binary search).
    pub fn by_weight(&self, point: u64) -> Option<usize> {
        let index = self.inner.cumulative.partition_point(|&sum| sum <= point);
        (index < self.inner.list.len()).then_some(index)
    }

    /// One period of smooth weighted round robin over the static weights (provider indices,
    /// each as often as its weight over the weights' greatest common divisor), so a
    /// round-robin pick over mixed weights is one lookup instead of a pass. Built on first
    /// call; `None` when the period would be longer than 64 Ki picks, or when no provider
    /// has a positive weight.
    pub fn round_robin_schedule(&self) -> Option<&[u32]> {
        self.inner
            .schedule
            .get_or_init(|| smooth_schedule(&self.inner.list))
            .as_deref()
    }

    /// True when both are the same list (not merely equal ones).
    pub fn same(&self, other: &Providers) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Deref for Providers {
    type Target = [Provider];

    fn deref(&self) -> &[Provider] {
        &self.inner.list
    }
}

impl From<Vec<Provider>> for Providers {
    fn from(providers: Vec<Provider>) -> Providers {
        Providers::new(providers)
    }
}

impl Default for Providers {
    fn default() -> Providers {
        Providers::new(Vec::new())
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::loadbalance::tests::weighted;
    use super::*;
    use std::time::Duration;

    #[test]
    fn points_fall_on_providers_by_weight() {
        let providers = weighted(&[5, 0, 1, 1]);
        assert_eq!(providers.total_weight(), 7);
        assert!(!providers.uniform());
        let owners: Vec<_> = (0..7).map(|p| providers.by_weight(p)).collect();
        assert_eq!(owners, [0, 0, 0, 0, 0, 2, 3].map(Some));
        assert_eq!(providers.by_weight(7), None);
        assert!(weighted(&[3, 3, 3]).uniform());
        assert!(Providers::default().by_weight(0).is_none());
    }

    #[test]
    fn a_list_settles_when_its_last_warm_up_ends() {
        let now = SystemTime::now();
        assert!(weighted(&[1, 2]).settled());
        let list: Vec<Provider> = weighted(&[1, 2]).iter().cloned().collect();
        let warming = list[0].clone().with_start(now - Duration::from_secs(60));
        let warm = list[1]
            .clone()
            .with_start(now - WARMUP - Duration::from_secs(1));
        assert!(!Providers::new(vec![warming, list[1].clone()]).settled());
        assert!(Providers::new(vec![warm, list[0].clone()]).settled());
    }
}
