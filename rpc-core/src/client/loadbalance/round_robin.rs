//! Round robin: providers in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{LoadBalance, Tried};
use crate::Request;
use crate::client::Provider;

/// Takes the providers in turn, each one the same share; a retry takes the next one not
/// yet tried.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl LoadBalance for RoundRobin {
    fn select(&self, providers: &[Provider], _request: &Request, tried: &Tried) -> Option<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..providers.len())
            .map(|step| start.wrapping_add(step) % providers.len())
            .find(|index| !tried.contains(*index))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{providers, request};
    use super::*;

    #[test]
    fn each_provider_gets_the_same_share() {
        let providers = providers(3);
        let request = request();
        let balancer = RoundRobin::default();
        let mut counts = [0; 3];
        for _ in 0..300 {
            let index = balancer.select(&providers, &request, &Tried::default());
            counts[index.unwrap_or(99)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }
}
