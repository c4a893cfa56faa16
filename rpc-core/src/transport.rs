//! The seam between the pipelines and the wire.
//!
//! A transport opens [`Channel`]s to providers on the consumer side and serves a
//! [`Dispatcher`] on the provider side. The long-connection TCP transport lives in the
//! `transports` crate; HTTP/2 will sit beside it behind the same trait.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tower::util::BoxCloneSyncService;

use crate::server::Dispatcher;
use crate::{Request, Response, Result};

/// A connection to one provider as a tower service. Cloning is cheap and shares the
/// underlying connection.
pub type Channel = BoxCloneSyncService<Request, Response, crate::Error>;

/// A way to reach providers and to serve calls.
pub trait Transport: Send + Sync + 'static {
    /// The URL scheme of this transport (`tcp`, `h2`).
    fn scheme(&self) -> &'static str;

    /// A channel to the provider at `address` (`host:port`).
    ///
    /// Connecting is lazy and repeated: the channel connects on first use and reconnects
    /// with backoff after a failure, so a provider that restarts is picked up again.
    fn connect(&self, address: &str) -> Result<Channel>;

    /// Starts serving `dispatcher` on `address`; port 0 picks a free port.
    fn bind(
        &self,
        address: &str,
        dispatcher: Dispatcher,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>>>;
}

/// A bound, serving endpoint returned by [`Transport::bind`].
pub trait Listener: Send + Sync + 'static {
    /// The address actually bound.
    fn local_addr(&self) -> SocketAddr;

    /// Stops accepting, answers new calls with "server overloaded: shutting down", lets
    /// in-flight calls finish for at most `grace`, then closes every connection.
    fn shutdown(&self, grace: Duration) -> BoxFuture<'static, ()>;

    /// Stops at once, without waiting: no new connections, running calls abandoned (their
    /// callers are told), every connection closed. Used when a server is dropped.
    fn close(&self);
}
