//! How the cluster stage picks a provider for each attempt of a call.
//!
//! A [`LoadBalance`] chooses one provider, skipping the ones a call already tried; the
//! cluster walks its choices through a [`Picker`], so failover reads as "take the next
//! candidate" and forking as "take two" (Volo's picker, as an iterator).

mod random;
mod round_robin;

use std::sync::Arc;

pub use random::Random;
pub use round_robin::RoundRobin;

use super::provider::Provider;
use crate::{Error, Request, Result};

/// Chooses the provider for one attempt of a call.
pub trait LoadBalance: Send + Sync + 'static {
    /// Index into `providers` (never empty) of the provider to call, skipping the
    /// indices in `tried`; `None` when every provider has been tried.
    fn select(&self, providers: &[Provider], request: &Request, tried: &Tried) -> Option<usize>;

    /// True when [`LoadBalance::select`] reads [`Request::hash_key`]; the stub computes the
    /// key only then.
    fn needs_hash_key(&self) -> bool {
        false
    }
}

/// The load balancer called `name` in configuration (`#[rpc(loadbalance = "...")]`).
pub fn by_name(name: &str) -> Result<Arc<dyn LoadBalance>> {
    match name {
        "random" => Ok(Arc::new(Random::default())),
        "roundrobin" => Ok(Arc::new(RoundRobin::default())),
        other => Err(Error::Config(format!(
            "unknown load balancer {other:?}; this build has \"random\" and \"roundrobin\""
        ))),
    }
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
    providers: &'a [Provider],
    request: &'a Request,
    balancer: &'a dyn LoadBalance,
    tried: Tried,
    last: Option<usize>,
}

impl<'a> Picker<'a> {
    /// Candidates among `providers` for `request`, in `balancer`'s order.
    pub fn new(
        providers: &'a [Provider],
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
    use std::time::{Duration, Instant};
    use tower::util::BoxCloneSyncService;

    static METHOD: MethodDescriptor = MethodDescriptor::new("m");

    pub(crate) fn providers(n: usize) -> Vec<Provider> {
        (0..n)
            .map(|i| {
                let channel: Channel =
                    BoxCloneSyncService::new(tower::service_fn(|req: Request| async move {
                        Ok::<_, Error>(Response {
                            codec: req.codec,
                            body: Default::default(),
                        })
                    }));
                Provider::new(format!("10.0.0.{i}:20880"), channel)
            })
            .collect()
    }

    pub(crate) fn request() -> Request {
        Request {
            service: "S".into(),
            version: "".into(),
            method: &METHOD,
            hash_key: None,
            attachments: Default::default(),
            codec: Codec::Json,
            oneway: false,
            timeout: Duration::from_secs(1),
            deadline: Instant::now() + Duration::from_secs(1),
            body: Default::default(),
            attempt: 0,
            provider: None,
        }
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
            Picker::new(&[], &request, &RoundRobin::default())
                .next()
                .is_none()
        );
    }

    #[test]
    fn unknown_names_are_configuration_errors() {
        assert!(by_name("roundrobin").is_ok());
        assert!(matches!(by_name("fastest"), Err(Error::Config(m)) if m.contains("fastest")));
    }
}
