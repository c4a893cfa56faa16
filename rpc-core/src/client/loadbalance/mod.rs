//! How the cluster stage picks a provider for each attempt of a call.
//!
//! A [`LoadBalance`] chooses one provider, skipping the ones a call already tried; the
//! cluster walks its choices through a [`Picker`], so failover reads as "take the next
//! candidate" and forking as "take two" (Volo's picker, as an iterator).
//!
//! | name | balancer | picks |
//! | --- | --- | --- |
//! | `random` | [`Random`] | at random, by weight (Dubbo's default) |
//! | `roundrobin` | [`RoundRobin`] | in turn, by weight, interleaved (nginx's smooth round robin) |
//! | `leastactive` | [`LeastActive`] | the fewest calls in flight; ties by weight |
//! | `consistenthash` | [`ConsistentHash`] | by the call's hash key, on a ring of addresses |
//! | `p2c` | [`PowerOfTwoChoices`] | the cheaper of two at random (latency x load) |
//! | `shortestresponse` | [`ShortestResponse`] | the lowest average latency x load; ties by weight |
//!
//! The weighted ones ramp a provider that just started up to its weight over [`WARMUP`]
//! ([`effective_weight`]).

mod consistent_hash;
mod least_active;
mod lowest_cost;
mod power_of_two_choices;
mod random;
mod round_robin;
mod shortest_response;
mod warmup;

use std::sync::Arc;

pub use consistent_hash::{ConsistentHash, DEFAULT_VIRTUAL_NODES};
pub use least_active::LeastActive;
pub use power_of_two_choices::PowerOfTwoChoices;
pub use random::Random;
pub use round_robin::RoundRobin;
pub(crate) use round_robin::smooth_schedule;
pub use shortest_response::ShortestResponse;
pub use warmup::{WARMUP, effective_weight};

use super::provider::Provider;
use super::providers::Providers;
use crate::{Error, Request, Result};

/// Chooses the provider for one attempt of a call.
pub trait LoadBalance: Send + Sync + 'static {
    /// Index into `providers` (never empty) of the provider to call, skipping the
    /// indices in `tried`; `None` when every provider has been tried.
    fn select(&self, providers: &Providers, request: &Request, tried: &Tried) -> Option<usize>;

    /// True when [`LoadBalance::select`] reads [`Request::hash_key`]; the stub computes the
    /// key only then.
    fn needs_hash_key(&self) -> bool {
        false
    }
}

/// The names [`by_name`] knows, as in Dubbo (`p2c` is not Dubbo's).
pub const NAMES: [&str; 6] = [
    "random",
    "roundrobin",
    "leastactive",
    "consistenthash",
    "p2c",
    "shortestresponse",
];

/// The load balancer called `name` in configuration (`#[rpc(loadbalance = "...")]`), one
/// of [`NAMES`]; a new one each time (a balancer may keep state across calls).
pub fn by_name(name: &str) -> Result<Arc<dyn LoadBalance>> {
    match name {
        "random" => Ok(Arc::new(Random::default())),
        "roundrobin" => Ok(Arc::new(RoundRobin::default())),
        "leastactive" => Ok(Arc::new(LeastActive::default())),
        "consistenthash" => Ok(Arc::new(ConsistentHash::default())),
        "p2c" => Ok(Arc::new(PowerOfTwoChoices::default())),
        "shortestresponse" => Ok(Arc::new(ShortestResponse::default())),
        other => Err(Error::Config(format!(
            "unknown load balancer {other:?}; this build has {}",
            NAMES.map(|name| format!("{name:?}")).join(", ")
        ))),
    }
}

/// True when `addresses` lists the addresses of `providers`, in order: what balancers with
/// per-provider state check before reusing it. Directories hand out the same provider
/// values call after call, so the comparison is mostly of pointers.
fn same_addresses(addresses: &[Arc<str>], providers: &[Provider]) -> bool {
    addresses.len() == providers.len()
        && addresses.iter().zip(providers).all(|(address, provider)| {
            Arc::ptr_eq(address, &provider.address) || **address == *provider.address
        })
}

/// The providers one call has already been sent to.
///
/// Empty until a second candidate is asked for, so a call that succeeds at once allocates
/// nothing here.
#[derive(Debug, Default, Clone)]
pub struct Tried {
    indices: Vec<usize>,
}

impl Tried {
    /// True when provider `index` was tried.
    pub fn contains(&self, index: usize) -> bool {
        self.indices.contains(&index)
    }

    /// How many providers were tried.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True before any provider was tried.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The candidates for one call, best first: each `next` asks the load balancer again,
/// excluding what was already handed out. Once every provider was handed out it starts
/// over, so a retry budget larger than the provider list still gets its attempts.
pub struct Picker<'a> {
    providers: &'a Providers,
    request: &'a Request,
    balancer: &'a dyn LoadBalance,
    tried: Tried,
    last: Option<usize>,
}

impl<'a> Picker<'a> {
    /// Candidates among `providers` for `request`, in `balancer`'s order.
    pub fn new(
        providers: &'a Providers,
        request: &'a Request,
        balancer: &'a dyn LoadBalance,
    ) -> Picker<'a> {
        Picker {
            providers,
            request,
            balancer,
            tried: Tried::default(),
            last: None,
        }
    }
}

impl<'a> Iterator for Picker<'a> {
    type Item = &'a Provider;

    fn next(&mut self) -> Option<&'a Provider> {
        if self.providers.is_empty() {
            return None;
        }
        if let Some(last) = self.last.take() {
            self.tried.indices.push(last);
        }
        if self.tried.len() >= self.providers.len() {
            self.tried.indices.clear();
        }
        let index = self
            .balancer
            .select(self.providers, self.request, &self.tried)
            .filter(|index| *index < self.providers.len())?;
        self.last = Some(index);
        Some(&self.providers[index])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::transport::Channel;
    use crate::{Codec, MethodDescriptor, Response};
    use std::time::Duration;
    use tower::util::BoxCloneSyncService;

    static METHOD: MethodDescriptor = MethodDescriptor::new("m");

    pub(crate) fn providers(n: usize) -> Providers {
        (0..n)
            .map(|i| {
                let channel: Channel =
                    BoxCloneSyncService::new(tower::service_fn(|req: Request| async move {
                        Ok::<_, Error>(Response::new(req.codec, Default::default()))
                    }));
                Provider::new(format!("10.0.0.{i}:20880"), channel)
            })
            .collect::<Vec<_>>()
            .into()
    }

    /// `providers(weights.len())` with those weights.
    pub(crate) fn weighted(weights: &[u32]) -> Providers {
        providers(weights.len())
            .iter()
            .zip(weights)
            .map(|(provider, weight)| provider.clone().with_weight(*weight))
            .collect::<Vec<_>>()
            .into()
    }

    /// How many of `picks` selections (excluding `tried`) went to each provider.
    pub(crate) fn counts(
        balancer: &dyn LoadBalance,
        providers: &Providers,
        tried: &Tried,
        picks: u32,
    ) -> Vec<u32> {
        let request = request();
        let mut counts = vec![0; providers.len()];
        for _ in 0..picks {
            if let Some(index) = balancer.select(providers, &request, tried) {
                counts[index] += 1;
            }
        }
        counts
    }

    pub(crate) fn request() -> Request {
        Request::new(
            "S",
            "",
            &METHOD,
            Codec::Json,
            Default::default(),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn a_picker_hands_out_every_provider_once_before_repeating() {
        let providers = providers(3);
        let request = request();
        let balancer = RoundRobin::default();
        let picked: Vec<_> = Picker::new(&providers, &request, &balancer)
            .take(6)
            .map(|p| p.address.to_string())
            .collect();
        let mut first: Vec<_> = picked[..3].to_vec();
        first.sort();
        first.dedup();
        assert_eq!(first.len(), 3, "{picked:?}");
        assert_eq!(picked.len(), 6);
    }

    #[test]
    fn an_empty_list_has_no_candidates() {
        let request = request();
        assert!(
            Picker::new(&Providers::default(), &request, &RoundRobin::default())
                .next()
                .is_none()
        );
    }

    #[test]
    fn every_name_is_known_and_unknown_ones_list_them() {
        for name in NAMES {
            let balancer = by_name(name);
            assert!(balancer.is_ok(), "{name}");
            let hashes = balancer.is_ok_and(|balancer| balancer.needs_hash_key());
            assert_eq!(hashes, name == "consistenthash", "{name}");
        }
        let Err(Error::Config(message)) = by_name("fastest") else {
            panic!("an unknown name is a configuration error");
        };
        assert!(message.contains("fastest"), "{message}");
        for name in NAMES {
            assert!(message.contains(&format!("\"{name}\"")), "{message}");
        }
    }

    /// Any weights, start times, statistics, tried sets and keys: every balancer answers
    /// an untried index in range, or `None` only when every provider was tried.
    #[test]
    fn every_balancer_answers_an_untried_index_or_none() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        use std::time::{Duration, SystemTime};

        let balancers: Vec<(&str, Box<dyn LoadBalance>)> = vec![
            ("random", Box::new(Random::default())),
            ("roundrobin", Box::new(RoundRobin::default())),
            ("leastactive", Box::new(LeastActive::default())),
            ("consistenthash", Box::new(ConsistentHash::default())),
            ("p2c", Box::new(PowerOfTwoChoices::default())),
            ("shortestresponse", Box::new(ShortestResponse::default())),
        ];
        let provider = (
            0u32..1000,
            proptest::option::of(0u64..1_200),
            0usize..4,
            0u64..3_000,
        );
        let case = (
            proptest::collection::vec(provider, 1..20),
            proptest::collection::vec(0usize..24, 0..24),
            proptest::option::of(any::<u64>()),
        );
        let config = Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let now = SystemTime::now();
        let result = runner.run(&case, |(specs, tried, hash_key)| {
            let list: Vec<Provider> = providers(specs.len())
                .to_vec()
                .into_iter()
                .zip(&specs)
                .map(|(provider, (weight, uptime, in_flight, latency))| {
                    let mut provider = provider.with_weight(*weight);
                    if let Some(uptime) = uptime {
                        provider = provider.with_start(now - Duration::from_secs(*uptime));
                    }
                    provider.stats.set_in_flight(*in_flight);
                    if *latency > 0 {
                        provider.stats.observe_latency(*latency);
                    }
                    provider
                })
                .collect();
            let tried = Tried { indices: tried };
            let mut request = request();
            request.hash_key = hash_key;
            let untried = (0..list.len()).any(|index| !tried.contains(index));
            for (name, balancer) in &balancers {
                let picked = balancer.select(&list.clone().into(), &request, &tried);
                match picked {
                    Some(index) => {
                        prop_assert!(index < list.len(), "{name}: {index} of {}", list.len());
                        prop_assert!(!tried.contains(index), "{name}: {index} was tried");
                    }
                    None => prop_assert!(!untried, "{name}: none though some are untried"),
                }
            }
            Ok(())
        });
        assert!(result.is_ok(), "{result:?}");
    }
}
