//! Least active: the provider with the fewest calls under way.

use super::lowest_cost::lowest_cost;
use super::{LoadBalance, Tried};
use crate::Request;
use crate::client::Providers;

/// Picks the untried provider with the fewest calls in flight from this consumer
/// ([`crate::client::ProviderStats::in_flight`]); among equals, a weighted random one (by
/// effective weight). A slow provider accumulates calls in flight, so it gets fewer new
/// ones (Dubbo's `leastactive`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastActive {
    _private: (),
}

impl LoadBalance for LeastActive {
    fn select(&self, providers: &Providers, _request: &Request, tried: &Tried) -> Option<usize> {
        lowest_cost(providers, tried, |stats| stats.in_flight() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{counts, request, weighted};
    use super::*;

    #[test]
    fn prefers_the_idle_provider() {
        fastrand::seed(1);
        let providers = weighted(&[100, 100, 100]);
        providers[0].stats.set_in_flight(3);
        providers[2].stats.set_in_flight(1);
        let request = request();
        for _ in 0..100 {
            let picked = LeastActive::default().select(&providers, &request, &Tried::default());
            assert_eq!(picked, Some(1));
        }
        let tried = Tried { indices: vec![1] };
        let picked = LeastActive::default().select(&providers, &request, &tried);
        assert_eq!(picked, Some(2), "then the next least busy");
    }

    #[test]
    fn counts_a_call_that_has_not_answered_yet() {
        use crate::transport::Channel;
        use crate::{Error, Response};
        use tower::util::BoxCloneSyncService;

        let mut providers = weighted(&[100, 100]).to_vec();
        let stuck: Channel = BoxCloneSyncService::new(tower::service_fn(|_: Request| {
            std::future::pending::<Result<Response, Error>>()
        }));
        providers[0].channel = stuck;
        let call = providers[0].call(request());
        let mut call = std::pin::pin!(call);
        let waker = std::task::Waker::noop();
        let polled = call
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        assert!(polled.is_pending());
        assert_eq!(providers[0].stats.in_flight(), 1);
        let list = Providers::from(providers.clone());
        let picked = LeastActive::default().select(&list, &request(), &Tried::default());
        assert_eq!(picked, Some(1));
    }

    #[test]
    fn ties_follow_weights() {
        fastrand::seed(2);
        let providers = weighted(&[100, 300, 500]);
        providers[2].stats.set_in_flight(1);
        let counts = counts(
            &LeastActive::default(),
            &providers,
            &Tried::default(),
            100_000,
        );
        assert_eq!(counts[2], 0, "{counts:?}");
        let share = f64::from(counts[1]) / 100_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }
}
