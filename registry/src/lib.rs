#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod address;
#[cfg(feature = "etcd")]
pub mod etcd;
mod file;
mod memory;
mod subscription;
mod url;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use address::RegistryAddress;
pub use file::FileRegistry;
pub use memory::MemoryRegistry;
pub use subscription::{Subscription, Update};
pub use url::{DEFAULT_WEIGHT, ProviderUrl, path_segment};

/// What a registry operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A provider URL or a registry URL could not be parsed.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The text as given (at most 256 characters of it).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry does not accept this operation (a static list cannot change), or this
    /// build does not include the registry a URL asks for.
    #[error("unsupported registry operation: {0}")]
    Unsupported(String),
    /// The registry server could not be reached, or refused the operation.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// A file of the file registry (or a cache file) could not be read or written.
    #[error("registry file error: {0}")]
    Io(String),
    /// The registry was closed.
    #[error("registry closed")]
    Closed,
}

/// Where providers announce themselves and consumers find them.
///
/// Implementations connect in the background and keep retrying: an operation made while
/// the server is unreachable is applied once it is back (a registration) or waits for it
/// (a subscription reports [`Update::Unreachable`] meanwhile). After a session or lease is
/// lost, they register again and watch again by themselves.
pub trait Registry: Send + Sync + 'static {
    /// The registry's own URL (`zookeeper://127.0.0.1:2181`), as opened.
    fn address(&self) -> &RegistryAddress;

    /// Announces a provider of `url.service()` (or, for a URL with `side=consumer`, a
    /// consumer, as Dubbo records them; consumers are never listed as providers). It stays
    /// announced until it is unregistered, the registry is closed, or the process dies (an
    /// ephemeral node, a lease or a file lease then runs out).
    ///
    /// While the server cannot be reached the registration is kept and applied once it
    /// can; this returns `Ok` then, and the registry logs the delay.
    fn register(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>>;

    /// Withdraws a provider announced with [`Registry::register`].
    fn unregister(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>>;

    /// Follows the providers of `service`: the registry pushes the full provider set each
    /// time it changes. Subscriptions to one service share one watch.
    fn subscribe(&self, service: &str) -> BoxFuture<'_, Result<Subscription, Error>>;

    /// Withdraws everything this handle registered and stops its watches; subscriptions
    /// end ([`Subscription::next`] returns `None`).
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Opens the registry named by `url`:
///
/// - `memory://` or `memory://NAME`: in-process; handles opened with one name share it.
/// - `file:///DIR`: providers and consumers of one host, through files in `DIR`.
/// - `zookeeper://HOST:PORT[,HOST:PORT...]` (feature `zookeeper`).
/// - `etcd://HOST:PORT[,HOST:PORT...]` (feature `etcd`).
///
/// Only a malformed URL fails here: servers are connected in the background, so a process
/// started while its registry is down still starts.
pub async fn connect(url: &str) -> Result<Arc<dyn Registry>, Error> {
    let address: RegistryAddress = url.parse()?;
    match address.scheme() {
        "memory" => Ok(Arc::new(MemoryRegistry::named(address))),
        "file" => Ok(Arc::new(FileRegistry::open(address)?)),
        #[cfg(feature = "zookeeper")]
        "zookeeper" => Ok(Arc::new(zookeeper::ZooKeeperRegistry::open(address)?)),
        #[cfg(feature = "etcd")]
        "etcd" => Ok(Arc::new(etcd::EtcdRegistry::open(address)?)),
        other => Err(Error::Unsupported(format!(
            "no registry for scheme {other:?} in this build (known: memory, file{}{})",
            if cfg!(feature = "zookeeper") {
                ", zookeeper"
            } else {
                ""
            },
            if cfg!(feature = "etcd") { ", etcd" } else { "" },
        ))),
    }
}
