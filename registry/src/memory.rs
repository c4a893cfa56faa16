//! `memory://`: an in-process registry, for tests and the quickstart.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use futures_util::future::BoxFuture;

use crate::subscription::Topics;
use crate::{Error, ProviderUrl, Registry, RegistryAddress, Subscription};

/// A registry held in this process's memory.
///
/// Handles opened with the same name (`memory://NAME`, through [`crate::connect`]) share
/// one registry, so a provider and a consumer built apart in one process find each other.
/// Each handle withdraws what it registered when it is closed or dropped.
#[derive(Debug)]
pub struct MemoryRegistry {
    address: RegistryAddress,
    shared: Arc<Shared>,
    /// What this handle registered, to withdraw on close.
    mine: Mutex<BTreeSet<ProviderUrl>>,
    /// This handle's subscriptions, fed from the shared provider sets.
    topics: Arc<Topics>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    providers: HashMap<String, BTreeSet<ProviderUrl>>,
    /// Every handle's topics, to push changes to.
    subscribers: Vec<Weak<Topics>>,
}

impl MemoryRegistry {
    /// A new registry of its own, shared with no other handle.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::with_shared(RegistryAddress::memory(), Arc::new(Shared::default()))
    }

    /// A handle on the process-wide registry called `address.location()`.
    pub(crate) fn named(address: RegistryAddress) -> MemoryRegistry {
        static NAMED: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
        let mut named = NAMED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        named.retain(|_, shared| shared.strong_count() > 0);
        let shared = match named.get(address.location()).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let shared = Arc::new(Shared::default());
                named.insert(address.location().to_owned(), Arc::downgrade(&shared));
                shared
            }
        };
        MemoryRegistry::with_shared(address, shared)
    }

    /// Another handle on the same registry (as a second process would open it).
    pub fn handle(&self) -> MemoryRegistry {
        MemoryRegistry::with_shared(self.address.clone(), self.shared.clone())
    }

    fn with_shared(address: RegistryAddress, shared: Arc<Shared>) -> MemoryRegistry {
        let topics = Arc::new(Topics::default());
        shared.lock().subscribers.push(Arc::downgrade(&topics));
        MemoryRegistry {
            address,
            shared,
            mine: Mutex::default(),
            topics,
        }
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, BTreeSet<ProviderUrl>> {
        self.mine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryRegistry {
    fn default() -> MemoryRegistry {
        MemoryRegistry::new()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the providers of `service` and pushes the result to every
    /// subscribed handle.
    fn change(&self, service: &str, change: impl FnOnce(&mut BTreeSet<ProviderUrl>)) {
        let mut state = self.lock();
        let set = state.providers.entry(service.to_owned()).or_default();
        change(set);
        let urls: Vec<ProviderUrl> = set.iter().cloned().collect();
        state.subscribers.retain(|topics| topics.strong_count() > 0);
        for topics in state.subscribers.iter().filter_map(Weak::upgrade) {
            topics.publish(service, urls.clone());
        }
    }
}

impl Registry for MemoryRegistry {
    fn address(&self) -> &RegistryAddress {
        &self.address
    }

    fn register(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        if url.is_consumer() {
            // Nothing reads consumers from an in-process registry.
            return Box::pin(async { Ok(()) });
        }
        self.mine().insert(url.clone());
        self.shared.change(url.service(), |set| {
            set.insert(url.clone());
        });
        Box::pin(async { Ok(()) })
    }

    fn unregister(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        self.mine().remove(url);
        self.shared.change(url.service(), |set| {
            set.remove(url);
        });
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, service: &str) -> BoxFuture<'_, Result<Subscription, Error>> {
        let (subscription, _) = self.topics.subscribe(service);
        // Under the state lock, so no change slips between the snapshot and the push.
        let state = self.shared.lock();
        let urls = state
            .providers
            .get(service)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        self.topics.publish(service, urls);
        drop(state);
        Box::pin(async { Ok(subscription) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.withdraw_all();
        self.topics.close();
        Box::pin(async {})
    }
}

impl MemoryRegistry {
    fn withdraw_all(&self) {
        let mine = std::mem::take(&mut *self.mine());
        for url in mine {
            self.shared.change(url.service(), |set| {
                set.remove(&url);
            });
        }
    }
}

impl Drop for MemoryRegistry {
    fn drop(&mut self) {
        self.withdraw_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Update;

    fn url(s: &str) -> ProviderUrl {
        s.parse().unwrap()
    }

    async fn providers(subscription: &mut Subscription) -> Vec<String> {
        match subscription.next().await {
            Some(Update::Providers(urls)) => urls.iter().map(|u| u.address().to_owned()).collect(),
            other => panic!("expected providers, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn handles_share_providers_and_withdraw_their_own_on_close() {
        let registry = MemoryRegistry::new();
        let provider = registry.handle();
        let mut consumer = registry.subscribe("a.A").await.unwrap();
        assert!(providers(&mut consumer).await.is_empty());
        provider.register(&url("tcp://h:1/a.A")).await.unwrap();
        registry.register(&url("tcp://h:2/a.A")).await.unwrap();
        registry.register(&url("tcp://h:3/b.B")).await.unwrap();
        assert_eq!(providers(&mut consumer).await, ["h:1", "h:2"]);
        provider.close().await;
        assert_eq!(providers(&mut consumer).await, ["h:2"]);
        registry.unregister(&url("tcp://h:2/a.A")).await.unwrap();
        assert!(providers(&mut consumer).await.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_handle_withdraws_its_providers() {
        let registry = MemoryRegistry::new();
        let provider = registry.handle();
        provider.register(&url("tcp://h:1/a.A")).await.unwrap();
        let mut consumer = registry.subscribe("a.A").await.unwrap();
        assert_eq!(providers(&mut consumer).await, ["h:1"]);
        drop(provider);
        assert!(providers(&mut consumer).await.is_empty());
    }

    #[tokio::test]
    async fn named_registries_are_shared_by_name_only() {
        let a = crate::connect("memory://shared-by-name-test")
            .await
            .unwrap();
        let b = crate::connect("memory://shared-by-name-test")
            .await
            .unwrap();
        let other = crate::connect("memory://another-name-test").await.unwrap();
        a.register(&url("tcp://h:1/a.A")).await.unwrap();
        let mut seen = b.subscribe("a.A").await.unwrap();
        assert_eq!(providers(&mut seen).await, ["h:1"]);
        let mut unseen = other.subscribe("a.A").await.unwrap();
        assert!(providers(&mut unseen).await.is_empty());
    }
}
