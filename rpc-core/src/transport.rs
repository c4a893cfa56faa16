//! The seam between the pipelines and the wire.
//!
//! A transport opens [`Channel`]s to providers on the consumer side and serves a
//! [`Dispatcher`] on the provider side, one [`crate::server::Session`] per connection.
//! Each transport maps [`crate::Code`] and [`crate::Codec`] to its own wire. The
//! long-connection TCP transport lives in the `transports` crate; HTTP/2 will sit beside it
//! behind the same trait.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use tower::util::BoxCloneSyncService;

use crate::server::Dispatcher;
use crate::{Request, Response, Result};

/// The registry URL parameter saying that a provider requires TLS (`tls=true`).
pub const TLS_PARAM: &str = "tls";

/// A connection to one provider as a tower service. Cloning is cheap and shares the
/// underlying connection.
pub type Channel = BoxCloneSyncService<Request, Response, crate::Error>;

/// A way to reach providers and to serve calls.
pub trait Transport: Send + Sync + 'static {
    /// The protocol name providers announce in their registry URLs (`tcp`); a consumer
    /// only uses providers announced with its own transport's name.
    fn protocol(&self) -> &'static str;

    /// True when this transport encrypts its connections (TLS). A server on it announces
    /// [`TLS_PARAM`]`=true` in its registry URLs; a consumer uses only providers whose TLS
    /// setting matches its transport's, so a TLS consumer never falls back to plain text
    /// and a plain one never dials a TLS port.
    fn tls(&self) -> bool {
        false
    }

    /// True when every call future of this transport's channels ends by the request's
    /// [`Request::deadline`] on its own, waits for a connection included (failing with a
    /// timeout error that says where the time went). A client whose every part keeps the
    /// deadline this way (these transports, the built-in cluster modes, no user layers)
    /// arms no timer of its own: one timer per call instead of two, about 10 % of the
    /// consumer's CPU per call on a small echo. The default, `false`, keeps the client's
    /// timer, so a transport that promises nothing still cannot make a call hang.
    fn enforces_deadline(&self) -> bool {
        false
    }

    /// A channel to the provider at `address` (`host:port`).
    ///
    /// Connecting is lazy and repeated: the channel connects on first use and reconnects
    /// with backoff after a failure, so a provider that restarts is picked up again.
    /// Channels to one address from one transport share a connection.
    fn connect(&self, address: &str) -> Result<Channel>;

    /// Starts serving `dispatcher` on `address`; port 0 picks a free port.
    fn bind(
        &self,
        address: &str,
        dispatcher: Dispatcher,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>>>;
}

/// A bound, serving endpoint returned by [`Transport::bind`].
///
/// Draining is not its business: the server refuses new calls and waits for running ones
/// through the [`Dispatcher`], then closes the listener.
pub trait Listener: Send + Sync + 'static {
    /// The address actually bound.
    fn local_addr(&self) -> SocketAddr;

    /// Stops accepting connections; open ones keep being served.
    fn stop_accepting(&self);

    /// Closes every connection: calls still running are abandoned (their callers are told,
    /// through each connection's session) and queued answers flushed. Closing begins when
    /// this is called; the future resolves once connections are closed.
    fn close(&self) -> BoxFuture<'static, ()>;
}

/// A map keyed by request ids. Ids are mostly sequential, so one multiplication (Fibonacci
/// hashing) spreads them well enough; SipHash per lookup would be wasted on the hot path.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: one multiplication of the `u64` key.
#[derive(Default, Debug, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are expected; anything else still hashes, just more slowly.
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
