//! A directory fed by a registry subscription.
//!
//! One task per directory follows the subscription. Each push is filtered (protocol,
//! version, serialization), turned into providers (an address already listed keeps its
//! [`Provider`]: same channel, same statistics), and swapped in whole. An empty push never
//! wipes a non-empty list: a registry outage or a lost session looks exactly like that,
//! and calling the last known providers beats failing every call. The last good list is
//! written to a cache file, read at start-up when the registry does not answer in time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use registry::{ProviderUrl, Registry, Update};
use tokio::sync::watch;

use super::directory::Directory;
use super::provider::{Connector, Provider};
use super::providers::Providers;
use crate::{Codec, Name};

/// How long a directory waits for its registry's first provider set before it falls back
/// to the cache file.
pub const CACHE_FALLBACK_AFTER: Duration = Duration::from_millis(500);

/// What a consumer looks for in a registry: the providers a [`RegistryDirectory`] keeps.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The service called.
    pub service: Name,
    /// Its version; only providers announcing the same version are used.
    pub version: Name,
    /// The consumer's transport protocols ([`crate::Transport::protocol`]); providers
    /// announced on another protocol are skipped.
    pub protocols: Vec<String>,
    /// The consumer's codec; providers that list their serializations must list it.
    pub codec: Codec,
    /// The consumer's application name, announced in its consumer URL.
    pub application: String,
    /// Where the last good provider list is kept; `None`: a file under the system's
    /// temporary directory named after the registry and the service.
    pub cache_file: Option<PathBuf>,
    /// Whether the consumer's transport speaks TLS ([`crate::Transport::tls`]): only
    /// providers announcing the same ([`crate::transport::TLS_PARAM`]) are used.
    pub tls: bool,
}

impl Discovery {
    /// Providers of `service` on `protocol`, any version-less, in the default codec.
    pub fn new(service: impl Into<Name>, protocol: impl Into<String>) -> Discovery {
        Discovery {
            service: service.into(),
            version: "".into(),
            protocols: vec![protocol.into()],
            codec: Codec::default(),
            application: String::new(),
            cache_file: None,
            tls: false,
        }
    }

    /// True when the provider at `url` can serve this consumer.
    pub fn accepts(&self, url: &ProviderUrl) -> bool {
        !url.is_consumer()
            && self.protocols.iter().any(|p| p == url.scheme())
            && url.service() == &*self.service
            && url.version() == &*self.version
            && (url.param(crate::transport::TLS_PARAM) == Some("true")) == self.tls
            && url
                .serializations()
                .is_none_or(|mut codecs| codecs.any(|c| c == self.codec.name()))
    }
}

/// The providers of one service, as its registry pushes them.
///
/// Dropping it stops following the registry and withdraws the consumer's URL.
#[derive(Debug)]
pub struct RegistryDirectory {
    shared: Arc<Shared>,
    follower: tokio::task::AbortHandle,
}

#[derive(Debug)]
struct Shared {
    providers: RwLock<Providers>,
    /// True while the list is not empty: calls made before the first providers arrive
    /// wait on it (within their deadlines).
    listed: watch::Sender<bool>,
}

impl RegistryDirectory {
    /// Starts following the providers `discovery` describes in `registry`, connecting to
    /// them through `connector`. Must be called within a tokio runtime.
    pub fn start(
        registry: Arc<dyn Registry>,
        discovery: Discovery,
        connector: Connector,
    ) -> RegistryDirectory {
        let shared = Arc::new(Shared {
            providers: RwLock::new(Providers::default()),
            listed: watch::Sender::new(false),
        });
        let cache = discovery
            .cache_file
            .clone()
            .unwrap_or_else(|| default_cache_file(&*registry, &discovery));
        let follower = Follower {
            shared: shared.clone(),
            discovery,
            connector,
            cache,
            cached: Vec::new(),
            warned_empty: false,
        };
        let follower = tokio::spawn(follower.run(registry)).abort_handle();
        RegistryDirectory { shared, follower }
    }
}

impl Drop for RegistryDirectory {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Directory for RegistryDirectory {
    fn providers(&self) -> Providers {
        self.shared.current()
    }

    fn listed(&self) -> BoxFuture<'static, ()> {
        let mut listed = self.shared.listed.subscribe();
        Box::pin(async move {
            let _ = listed.wait_for(|listed| *listed).await;
        })
    }
}

impl Shared {
    fn current(&self) -> Providers {
        self.providers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The task behind a [`RegistryDirectory`].
struct Follower {
    shared: Arc<Shared>,
    discovery: Discovery,
    connector: Connector,
    cache: PathBuf,
    /// What the cache file holds now, so an unchanged list is not written again.
    cached: Vec<ProviderUrl>,
    warned_empty: bool,
}

impl Follower {
    async fn run(mut self, registry: Arc<dyn Registry>) {
        let service = self.discovery.service.to_string();
        let consumer = self.consumer_url();
        if let Err(error) = registry.register(&consumer).await {
            tracing::debug!(%error, %service, "could not announce this consumer");
        }
        // Withdraws the consumer URL however the task ends (aborted with its directory).
        let _withdraw = Withdraw {
            registry: registry.clone(),
            url: consumer,
        };
        let mut backoff = Duration::from_millis(100);
        let mut subscription = loop {
            match registry.subscribe(&service).await {
                Ok(subscription) => break subscription,
                Err(error) => {
                    tracing::warn!(%error, %service, "cannot subscribe; retrying");
                    self.use_cache_if_empty();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        };
        let fallback = tokio::time::sleep(CACHE_FALLBACK_AFTER);
        tokio::pin!(fallback);
        let mut heard = false;
        loop {
            let update = tokio::select! {
                update = subscription.next() => update,
                () = &mut fallback, if !heard => {
                    heard = true;
                    self.use_cache_if_empty();
                    continue;
                }
            };
            match update {
                Some(Update::Providers(urls)) => {
                    heard = true;
                    self.apply(&urls);
                }
                Some(Update::Unreachable(reason)) => {
                    tracing::warn!(%service, %reason, providers = self.current().len(), "registry unreachable; keeping the last provider list");
                    heard = true;
                    self.use_cache_if_empty();
                }
                None => {
                    tracing::warn!(%service, "registry closed; keeping the last provider list");
                    return;
                }
            }
        }
    }

    fn current(&self) -> Providers {
        self.shared.current()
    }

    /// Swaps in the providers of `urls` that suit this consumer.
    fn apply(&mut self, urls: &[ProviderUrl]) {
        let wanted: Vec<&ProviderUrl> = urls
            .iter()
            .filter(|url| self.discovery.accepts(url))
            .collect();
        let current = self.current();
        if wanted.is_empty() {
            if !current.is_empty() && !self.warned_empty {
                tracing::warn!(
                    service = %self.discovery.service,
                    pushed = urls.len(),
                    kept = current.len(),
                    "registry pushed no usable provider; keeping the last list"
                );
                self.warned_empty = true;
            }
            return;
        }
        self.warned_empty = false;
        let by_address: HashMap<&str, &Provider> =
            current.iter().map(|p| (&*p.address, p)).collect();
        let mut providers = Vec::with_capacity(wanted.len());
        for url in &wanted {
            let provider = match by_address.get(url.address()) {
                // Same channel, same statistics: a re-listed provider keeps its connection.
                Some(&known) => known.clone(),
                None => match self.connector.provider_on(url.scheme(), url.address()) {
                    Ok(provider) => provider,
                    Err(error) => {
                        tracing::warn!(%error, url = %url, "skipping a provider");
                        continue;
                    }
                },
            };
            providers.push(describe(provider, url));
        }
        // Two URLs for one address (say, two protocols' worth of parameters) are one
        // provider: the first wins.
        providers.dedup_by(|a, b| a.address == b.address);
        if providers.is_empty() {
            return;
        }
        self.install(providers.into());
        if self.cached.iter().ne(wanted.iter().copied()) {
            self.cached = wanted.into_iter().cloned().collect();
            write_cache(&self.cache, self.cached.iter());
        }
    }

    fn install(&self, providers: Providers) {
        let listed = !providers.is_empty();
        tracing::debug!(service = %self.discovery.service, providers = providers.len(), "provider list updated");
        *self
            .shared
            .providers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = providers;
        self.shared.listed.send_replace(listed);
    }

    /// Lists the cached providers when there is no list yet (the registry cannot be
    /// reached at start-up).
    fn use_cache_if_empty(&mut self) {
        if !self.current().is_empty() {
            return;
        }
        let urls = read_cache(&self.cache);
        if urls.is_empty() {
            return;
        }
        tracing::warn!(
            service = %self.discovery.service,
            cache = %self.cache.display(),
            providers = urls.len(),
            "registry not answering; using the cached provider list"
        );
        self.apply(&urls);
    }

    fn consumer_url(&self) -> ProviderUrl {
        let discovery = &self.discovery;
        let mut url = ProviderUrl::new(
            "consumer",
            &format!("{}:0", local_host()),
            &discovery.service,
        )
        .with_param("side", "consumer")
        .with_param("category", "consumers")
        .with_param("protocol", &discovery.protocols.join(","))
        .with_param("serialization", discovery.codec.name())
        .with_param("pid", &std::process::id().to_string())
        .with_param("timestamp", &epoch_ms().to_string());
        if !discovery.application.is_empty() {
            url = url.with_param("application", &discovery.application);
        }
        if !discovery.version.is_empty() {
            url = url.with_param("version", &discovery.version);
        }
        url
    }
}

/// `provider` with what `url` announces: weight, start time, parameters.
fn describe(mut provider: Provider, url: &ProviderUrl) -> Provider {
    provider.weight = url.weight();
    provider.start = url.start();
    if provider.metadata.as_ref() != url.params() {
        provider.metadata = Arc::new(url.params().clone());
        provider.token = url
            .param(crate::server::security::TOKEN_PARAM)
            .map(Arc::from);
    }
    provider
}

/// Withdraws a URL when dropped (in a task: dropping cannot wait).
struct Withdraw {
    registry: Arc<dyn Registry>,
    url: ProviderUrl,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let registry = self.registry.clone();
        let url = self.url.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = registry.unregister(&url).await;
            });
        }
    }
}

fn default_cache_file(registry: &dyn Registry, discovery: &Discovery) -> PathBuf {
    let address = registry.address().to_string();
    let hash = crate::format::fnv1a(address.as_bytes());
    let mut name = format!(
        "{}-{hash:016x}-{}",
        registry.address().scheme(),
        registry::path_segment(&discovery.service)
    );
    if !discovery.version.is_empty() {
        name.push('-');
        name.push_str(&registry::path_segment(&discovery.version));
    }
    name.push_str(".cache");
    std::env::temp_dir().join("rpc-registry-cache").join(name)
}

/// Writes `urls`, one per line, atomically (a temporary file renamed over the old one).
fn write_cache<'a>(path: &Path, urls: impl Iterator<Item = &'a ProviderUrl>) {
    let text: String = urls.map(|url| format!("{url}\n")).collect();
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&temporary, text))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        tracing::debug!(%error, cache = %path.display(), "cannot write the provider cache");
    }
}

/// Largest cache file read; anything bigger is not ours.
const MAX_CACHE: u64 = 4 * 1024 * 1024;

/// The URLs of a cache file; unreadable lines are skipped, a missing file is empty.
fn read_cache(path: &Path) -> Vec<ProviderUrl> {
    let too_big = std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_CACHE);
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    if too_big {
        tracing::warn!(cache = %path.display(), "provider cache too large; ignored");
        return Vec::new();
    }
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| match line.trim().parse::<ProviderUrl>() {
            Ok(url) => Some(url),
            Err(error) => {
                tracing::warn!(%error, cache = %path.display(), "skipping a cached provider");
                None
            }
        })
        .collect()
}

/// An address of this host other processes can reach: the address of the interface that
/// routes outwards, or loopback when there is none. No packet is sent.
pub(crate) fn local_host() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            socket.connect("192.0.2.1:9")?;
            socket.local_addr()
        })
        .map(|address| address.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string())
}

pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ProviderUrl {
        s.parse().unwrap()
    }

    #[test]
    fn a_consumer_takes_only_providers_it_can_call() {
        let mut discovery = Discovery::new("a.A", "tcp");
        discovery.version = "1.0".into();
        discovery.codec = Codec::Json;
        assert!(discovery.accepts(&url("tcp://h:1/a.A?version=1.0")));
        assert!(discovery.accepts(&url("tcp://h:1/a.A?version=1.0&serialization=bincode,json")));
        for other in [
            "h2://h:1/a.A?version=1.0",
            "tcp://h:1/a.A",
            "tcp://h:1/a.A?version=2.0",
            "tcp://h:1/a.A?version=1.0&serialization=bincode",
            "tcp://h:1/b.B?version=1.0",
            "tcp://h:1/a.A?version=1.0&side=consumer",
        ] {
            assert!(!discovery.accepts(&url(other)), "{other}");
        }
    }

    #[test]
    fn the_cache_round_trips_and_skips_garbage() {
        let path =
            std::env::temp_dir().join(format!("rpc-cache-test-{}/a.cache", std::process::id()));
        let urls = [url("tcp://h:1/a.A"), url("tcp://h:2/a.A?weight=5")];
        write_cache(&path, urls.iter());
        assert_eq!(read_cache(&path), urls);
        std::fs::write(&path, "tcp://h:1/a.A\n\u{0}garbage\n\ntcp://h:3/a.A\n").unwrap();
        assert_eq!(
            read_cache(&path),
            [url("tcp://h:1/a.A"), url("tcp://h:3/a.A")]
        );
        assert!(read_cache(&path.with_extension("missing")).is_empty());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
