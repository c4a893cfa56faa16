//! One provider as the consumer sees it: its address, weight, metadata, live statistics and
//! the channel to it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::registry_directory::epoch_ms;
use crate::transport::{Channel, Transport};
use crate::{Error, Request, Response, Result};

/// Dubbo's default provider weight.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One provider a consumer can call.
///
/// Built by a [`Connector`] (which opens the channel through the transport and wraps it in
/// the client's provider layers) and listed by a [`crate::client::Directory`]. Calls go
/// through [`Provider::call`], which keeps [`ProviderStats`] whatever the load balancer, so
/// least-active and latency-aware balancing need no setting to work.
#[derive(Clone)]
#[non_exhaustive]
pub struct Provider {
    /// `host:port` of the provider.
    pub address: Arc<str>,
    /// Relative share of calls for weighted balancers (default 100).
    pub weight: u32,
    /// What the provider announced about itself (registry URL parameters).
    pub metadata: Arc<BTreeMap<String, String>>,
    /// Live counters kept by this consumer; shared by every clone of this provider.
    pub stats: Arc<ProviderStats>,
    /// When the provider started, if known: weighted balancers ramp its weight up over its
    /// first [`WARMUP`](crate::client::loadbalance::WARMUP) of uptime (Dubbo's warm-up),
    /// so a cold process is not handed a full share at once. `None`: full weight.
    pub start: Option<SystemTime>,
    /// The (lazily connected) channel to it, inside the client's provider layers.
    pub channel: Channel,
    /// The token the provider announced (its URL's `token`), sent with every call to it.
    pub(crate) token: Option<Arc<str>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("address", &self.address)
            .field("weight", &self.weight)
            .field("start", &self.start)
            .field("in_flight", &self.stats.in_flight())
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider at `address` reached through `channel`, with the default weight.
    pub fn new(address: impl Into<Arc<str>>, channel: Channel) -> Provider {
        Provider {
            address: address.into(),
            weight: DEFAULT_WEIGHT,
            metadata: Arc::default(),
            stats: Arc::default(),
            start: None,
            channel,
            token: None,
        }
    }

    /// The same provider with `weight`.
    pub fn with_weight(mut self, weight: u32) -> Provider {
        self.weight = weight;
        self
    }

    /// The same provider, started at `start` (its uptime drives the warm-up of weighted
    /// balancers; see [`crate::client::loadbalance::effective_weight`]).
    pub fn with_start(mut self, start: SystemTime) -> Provider {
        self.start = Some(start);
        self
    }

    /// The same provider with `metadata`.
    pub fn with_metadata(mut self, metadata: BTreeMap<String, String>) -> Provider {
        self.token = metadata
            .get(crate::server::security::TOKEN_PARAM)
            .map(|token| Arc::from(token.as_str()));
        self.metadata = Arc::new(metadata);
        self
    }

    /// Sends `request` to this provider, counting it in [`Provider::stats`] (in flight
    /// while it runs; latency and outcome when it ends; a dropped call only leaves the
    /// in-flight count).
    ///
    /// The future borrows the provider (the cluster holds the provider list for the whole
    /// call): no reference count of the shared statistics is touched per call.
    pub fn call(&self, mut request: Request) -> impl Future<Output = Result<Response>> + Send + '_ {
        if let Some(token) = &self.token {
            // The provider's own token, even over one the caller set: each provider of a
            // service may have drawn its own.
            request
                .attachments
                .insert(crate::server::security::TOKEN_KEY, &**token);
        }
        // A first attempt starts when the request was made (its deadline minus its budget):
        // one clock read per call saved on the hot path.
        let started = match request.attempt {
            0 => request.deadline.checked_sub(request.timeout),
            _ => None,
        };
        let tracked = InFlight::start(&self.stats, started.unwrap_or_else(Instant::now));
        let call = self.channel.clone().oneshot(request);
        async move {
            let result = call.await;
            tracked.finish(&result);
            result
        }
    }
}

/// What a consumer observed of one provider. Updated lock-free on every call.
#[derive(Debug, Default)]
pub struct ProviderStats {
    in_flight: AtomicUsize,
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// Call latency in microseconds, two moving averages packed in one word so a call
    /// still costs one load and one store to record: the plain average in the low 32 bits,
    /// the peak-sensitive one in the high 32 bits (see [`ProviderStats::peak_latency_us`]).
    latency_us: AtomicU64,
    /// When (ms since the Unix epoch) a call last found no connection to the provider; 0
    /// once a call succeeded again. The `available` cluster mode reads it.
    unreachable_since_ms: AtomicU64,
    last_error: Mutex<Option<Error>>,
    /// The client's circuit breakers and `actives` counts for this provider, one per
    /// method of the service, made on the first guarded call (see `client::traffic`).
    pub(crate) guards: std::sync::OnceLock<Box<[Arc<super::traffic::Guard>]>>,
}

impl ProviderStats {
    /// True unless the last call found no connection to the provider, less than `within`
    /// ago (the transport reconnects meanwhile, so the provider gets another chance after).
    pub fn is_reachable(&self, within: std::time::Duration) -> bool {
        let since = self.unreachable_since_ms.load(Ordering::Relaxed);
        since == 0 || epoch_ms().saturating_sub(since) >= within.as_millis() as u64
    }

    /// Calls sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls answered with a result.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Calls that ended with an error.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Recent latency (moving average, weight 1/8 per call), in microseconds; 0 before
    /// the first answer.
    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::Relaxed) & LOW_HALF
    }

    /// Recent latency, peak-sensitive (Finagle's "peak EWMA"), in microseconds; 0 before
    /// the first answer. An answer slower than it replaces it at once; a faster one pulls
    /// it down by 1/8 of the gap, as [`ProviderStats::latency_us`] moves. So one slow
    /// answer marks a provider slow right away, and it earns its way back over several
    /// answers; never below the plain average.
    pub fn peak_latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::Relaxed) >> 32
    }

    /// The error of the last failed call.
    pub fn last_error(&self) -> Option<Error> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn record_latency(&self, micros: u64) {
        // Racing updates may lose one sample; a statistic does not need a CAS loop.
        // Saturating at 2^32 µs (71 minutes) is far beyond any call's timeout.
        let micros = micros.clamp(1, LOW_HALF);
        let old = self.latency_us.load(Ordering::Relaxed);
        let (average, peak) = (old & LOW_HALF, old >> 32);
        let average = if average == 0 {
            micros
        } else {
            ((average * 7 + micros) / 8).max(1)
        };
        let peak = if micros >= peak {
            micros
        } else {
            ((peak * 7 + micros) / 8).max(1)
        };
        self.latency_us
            .store(peak << 32 | average, Ordering::Relaxed);
    }
}

/// The low 32 bits of [`ProviderStats::latency_us`]'s packed word.
const LOW_HALF: u64 = u32::MAX as u64;

#[cfg(test)]
impl ProviderStats {
    /// Sets the in-flight count, as if `count` calls were under way.
    pub(crate) fn set_in_flight(&self, count: usize) {
        self.in_flight.store(count, Ordering::Relaxed);
    }

    /// Records one answer that took `micros`, as a finished call does.
    pub(crate) fn observe_latency(&self, micros: u64) {
        self.record_latency(micros);
    }
}

/// One call counted in flight until it ends or is dropped.
struct InFlight<'a> {
    stats: &'a ProviderStats,
    started: Instant,
}

impl<'a> InFlight<'a> {
    fn start(stats: &'a ProviderStats, started: Instant) -> InFlight<'a> {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { stats, started }
    }

    fn finish(self, result: &Result<Response>) {
        let stats = self.stats;
        match result {
            Ok(_) => {
                stats.succeeded.fetch_add(1, Ordering::Relaxed);
                stats.record_latency(self.started.elapsed().as_micros() as u64);
                // A load first: the store happens only on recovery, not on every call.
                if stats.unreachable_since_ms.load(Ordering::Relaxed) != 0 {
                    stats.unreachable_since_ms.store(0, Ordering::Relaxed);
                }
            }
            Err(error) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if matches!(error, Error::Unavailable { .. }) {
                    stats
                        .unreachable_since_ms
                        .store(epoch_ms().max(1), Ordering::Relaxed);
                }
                *stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.clone());
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A user layer around each provider's channel, type-erased.
pub(crate) type ChannelLayer = Arc<dyn Fn(Channel) -> Channel + Send + Sync>;

/// Makes [`Provider`]s: opens the channel through the transport (which shares one
/// connection per address) and wraps it in the client's provider layers.
///
/// Directories hold one, so a provider re-listed by a registry update gets the same
/// treatment as one from a static list.
#[derive(Clone)]
pub struct Connector {
    /// At least one; the first reaches bare `host:port` addresses.
    transports: Arc<[Arc<dyn Transport>]>,
    layers: Arc<[ChannelLayer]>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("provider_layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Providers reached through `transport`, with no provider layers.
    pub fn new(transport: Arc<dyn Transport>) -> Connector {
        Connector {
            transports: Arc::new([transport]),
            layers: Arc::new([]),
        }
    }

    /// Providers reached through the transport of their protocol ([`Connector::provider`]);
    /// the first transport reaches bare addresses. Fails with [`Error::Config`] without
    /// any transport.
    pub fn with_transports(transports: Vec<Arc<dyn Transport>>) -> Result<Connector> {
        if transports.is_empty() {
            return Err(Error::Config("a connector needs a transport".into()));
        }
        Ok(Connector {
            transports: transports.into(),
            layers: Arc::new([]),
        })
    }

    /// The protocols of this connector's transports, the default first.
    pub fn protocols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.transports.iter().map(|t| t.protocol())
    }

    pub(crate) fn with_layers(mut self, layers: Vec<ChannelLayer>) -> Connector {
        self.layers = layers.into();
        self
    }

    /// A provider at `address`, connected lazily: `host:port` through the first
    /// transport, `protocol://host:port` through that protocol's (an
    /// [`Error::Config`] naming the protocols at hand when there is none).
    pub fn provider(&self, address: &str) -> Result<Provider> {
        let provider = match address.split_once("://") {
            Some((protocol, bare)) => self.provider_on(protocol, bare)?,
            None => self.provider_on(self.transports[0].protocol(), address)?,
        };
        Ok(Provider {
            address: address.into(),
            ..provider
        })
    }

    /// A provider at `address` (`host:port`) reached through the transport of `protocol`
    /// (a registry URL's scheme).
    pub fn provider_on(&self, protocol: &str, address: &str) -> Result<Provider> {
        let transport = self
            .transports
            .iter()
            .find(|t| t.protocol() == protocol)
            .ok_or_else(|| {
                let known: Vec<&str> = self.protocols().collect();
                Error::Config(format!(
                    "provider {address}: no transport for protocol {protocol:?} (this client \
                     has {})",
                    known.join(", ")
                ))
            })?;
        let mut channel = transport.connect(address)?;
        // First layer added = outermost: wrap from the last one inwards.
        for layer in self.layers.iter().rev() {
            channel = layer(channel);
        }
        Ok(Provider::new(address, channel))
    }
}

/// Wraps a user layer for [`Connector`].
pub(crate) fn channel_layer<L>(layer: L) -> ChannelLayer
where
    L: tower::Layer<Channel> + Send + Sync + 'static,
    L::Service:
        tower::Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<Request>>::Future: Send + 'static,
{
    Arc::new(move |inner| BoxCloneSyncService::new(layer.layer(inner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_latency_jumps_up_at_once_and_decays_like_the_average() {
        let stats = ProviderStats::default();
        assert_eq!((stats.latency_us(), stats.peak_latency_us()), (0, 0));
        stats.observe_latency(800);
        assert_eq!((stats.latency_us(), stats.peak_latency_us()), (800, 800));
        stats.observe_latency(8_800);
        assert_eq!(
            stats.latency_us(),
            1_800,
            "the average moves by 1/8 of the gap"
        );
        assert_eq!(
            stats.peak_latency_us(),
            8_800,
            "the peak takes a slower answer at once"
        );
        stats.observe_latency(800);
        assert_eq!(
            stats.peak_latency_us(),
            7_800,
            "a faster answer decays it by 1/8"
        );
        for _ in 0..100 {
            stats.observe_latency(800);
            assert!(stats.peak_latency_us() >= stats.latency_us());
        }
        assert!(
            stats.peak_latency_us() < 1_000,
            "{}",
            stats.peak_latency_us()
        );
    }
}
