#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod url;

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

pub use url::{DEFAULT_WEIGHT, ProviderUrl};

/// What a registry operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A provider URL could not be parsed.
    #[error("invalid provider url {url:?}: {reason}")]
    InvalidUrl {
        /// The text as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry does not accept this operation (a static list cannot change).
    #[error("unsupported registry operation: {0}")]
    Unsupported(String),
    /// The registry server could not be reached.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
}

/// Where providers announce themselves and consumers find them.
pub trait Registry: Send + Sync + 'static {
    /// Announces a provider of `url.service()`.
    fn register(&self, url: ProviderUrl) -> BoxFuture<'_, Result<(), Error>>;

    /// Withdraws a provider announced with [`Registry::register`].
    fn unregister(&self, url: ProviderUrl) -> BoxFuture<'_, Result<(), Error>>;

    /// The providers of `service`, updated in place whenever they change.
    fn subscribe(
        &self,
        service: &str,
    ) -> BoxFuture<'_, Result<watch::Receiver<Vec<ProviderUrl>>, Error>>;
}

/// A fixed list of providers, for setups without a registry server.
///
/// Registering is refused: the list is configuration, not state.
pub struct StaticRegistry {
    services: Mutex<BTreeMap<String, watch::Sender<Vec<ProviderUrl>>>>,
}

impl StaticRegistry {
    /// A registry answering with `providers`, grouped by their service.
    pub fn new(providers: impl IntoIterator<Item = ProviderUrl>) -> StaticRegistry {
        let mut grouped: BTreeMap<String, Vec<ProviderUrl>> = BTreeMap::new();
        for url in providers {
            grouped
                .entry(url.service().to_owned())
                .or_default()
                .push(url);
        }
        StaticRegistry {
            services: Mutex::new(
                grouped
                    .into_iter()
                    .map(|(service, urls)| (service, watch::Sender::new(urls)))
                    .collect(),
            ),
        }
    }
}

impl Registry for StaticRegistry {
    fn register(&self, url: ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            Err(Error::Unsupported(format!(
                "a static registry cannot register {url}"
            )))
        })
    }

    fn unregister(&self, url: ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            Err(Error::Unsupported(format!(
                "a static registry cannot unregister {url}"
            )))
        })
    }

    fn subscribe(
        &self,
        service: &str,
    ) -> BoxFuture<'_, Result<watch::Receiver<Vec<ProviderUrl>>, Error>> {
        let receiver = self
            .services
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(service.to_owned())
            .or_insert_with(|| watch::Sender::new(Vec::new()))
            .subscribe();
        Box::pin(async move { Ok(receiver) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ProviderUrl {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn subscribers_see_only_their_service() {
        let registry = StaticRegistry::new([
            url("tcp://10.0.0.1:20880/a.A"),
            url("tcp://10.0.0.2:20880/a.A"),
            url("tcp://10.0.0.3:20880/b.B"),
        ]);
        let a = registry.subscribe("a.A").await.unwrap();
        assert_eq!(a.borrow().len(), 2);
        let none = registry.subscribe("c.C").await.unwrap();
        assert!(none.borrow().is_empty());
    }

    #[tokio::test]
    async fn a_static_registry_refuses_changes() {
        let registry = StaticRegistry::new([]);
        let result = registry.register(url("tcp://10.0.0.1:1/a.A")).await;
        assert!(matches!(result, Err(Error::Unsupported(_))));
    }
}
