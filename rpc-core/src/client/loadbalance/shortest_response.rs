//! Shortest response: the provider expected to answer first.

use super::lowest_cost::lowest_cost;
use super::{LoadBalance, Tried};
use crate::Request;
use crate::client::Providers;

/// Picks the untried provider expected to answer a new call soonest: its average latency
/// ([`crate::client::ProviderStats::latency_us`]) times its calls in flight plus this one;
/// among equals, a weighted random one (by effective weight). Dubbo's `shortestresponse`.
///
/// A provider that has not answered yet has no average, hence an estimate of zero: it is
/// preferred until its first answers give it one, as in Dubbo. Failures do not count as
/// answers, so this balancer relies on the cluster's failover to get past a provider that
/// fails fast.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortestResponse {
    _private: (),
}

impl LoadBalance for ShortestResponse {
    fn select(&self, providers: &Providers, _request: &Request, tried: &Tried) -> Option<usize> {
        lowest_cost(providers, tried, |stats| {
            stats
                .latency_us()
                .saturating_mul((stats.in_flight() as u64).saturating_add(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{counts, request, weighted};
    use super::*;

    #[test]
    fn prefers_the_lowest_latency_times_load() {
        fastrand::seed(4);
        let providers = weighted(&[100, 100, 100]);
        providers[0].stats.observe_latency(1_000);
        providers[1].stats.observe_latency(300);
        providers[1].stats.set_in_flight(3);
        providers[2].stats.observe_latency(500);
        let request = request();
        // Estimates: 1000 x 1, 300 x 4 = 1200, 500 x 1.
        let pick = |tried: &Tried| ShortestResponse::default().select(&providers, &request, tried);
        assert_eq!(pick(&Tried::default()), Some(2));
        assert_eq!(pick(&Tried { indices: vec![2] }), Some(0));
        providers[1].stats.set_in_flight(0);
        assert_eq!(pick(&Tried::default()), Some(1));
    }

    #[test]
    fn ties_follow_weights_and_new_providers_go_first() {
        fastrand::seed(6);
        let providers = weighted(&[100, 300, 100]);
        providers[2].stats.observe_latency(50);
        let counts = counts(
            &ShortestResponse::default(),
            &providers,
            &Tried::default(),
            100_000,
        );
        assert_eq!(counts[2], 0, "{counts:?}");
        let share = f64::from(counts[1]) / 100_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }
}
