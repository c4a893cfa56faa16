//! Call statistics per service, method and side: counters, a latency histogram, a
//! one-minute rate window and bytes moved, recorded lock-free on every call.
//!
//! A [`Stats`] is the registry the numbers live in. Servers and clients record into
//! [`Stats::global`] unless their builder names another one (`ServerBuilder::stats`,
//! `ClientBuilder::stats`) or switches recording off; the admin endpoint reads
//! [`Stats::snapshot`]. This is the one piece of process-wide state in the framework, kept
//! so that an admin endpoint sees every server and client without wiring each one in.
//!
//! Each method's counters ([`MethodStats`]) are resolved once, when a server binds or a
//! client is built, so recording a call is a handful of relaxed atomic operations: no
//! lock, no map lookup, no allocation.
//!
//! ```
//! use rpc_core::stats::{Side, Stats};
//!
//! let stats = Stats::new();
//! let greet = stats.method(Side::Provider, "demo.Greeter", "greet");
//! let call = greet.start(5);
//! call.finish(Ok(7));
//! let snapshot = stats.snapshot();
//! assert_eq!(snapshot[0].succeeded, 1);
//! assert_eq!((snapshot[0].bytes_in, snapshot[0].bytes_out), (5, 7));
//! ```

mod histogram;
mod layer;
mod slot;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Error;
use crate::descriptor::ServiceDescriptor;

use self::histogram::{Histogram, HistogramSnapshot};
use self::slot::Writer;

pub use layer::{Observed, StatsFuture, StatsLayer, StatsService};

/// Which end of a call the numbers describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Calls this process served.
    Provider,
    /// Calls this process made.
    Consumer,
}

impl Side {
    /// `provider` or `consumer`.
    pub const fn name(self) -> &'static str {
        match self {
            Side::Provider => "provider",
            Side::Consumer => "consumer",
        }
    }
}

/// Why a call failed, as counted: a small fixed set, so counting is an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The deadline passed.
    Timeout,
    /// Arguments or result could not be encoded or decoded.
    Codec,
    /// The request broke the protocol or was too large.
    BadRequest,
    /// No such service or method.
    NotFound,
    /// Refused before running (overloaded, rate limited, shutting down).
    Rejected,
    /// The handler failed or panicked.
    Handler,
    /// The call was cancelled or abandoned.
    Cancelled,
    /// No connection to the provider; the call was never sent.
    Unavailable,
    /// The connection failed mid-call.
    Transport,
    /// No provider was listed for the service.
    NoProvider,
    /// Anything else (a provider-side server error, a configuration error).
    Other,
}

impl ErrorKind {
    /// Every kind, in counting order.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Timeout,
        ErrorKind::Codec,
        ErrorKind::BadRequest,
        ErrorKind::NotFound,
        ErrorKind::Rejected,
        ErrorKind::Handler,
        ErrorKind::Cancelled,
        ErrorKind::Unavailable,
        ErrorKind::Transport,
        ErrorKind::NoProvider,
        ErrorKind::Other,
    ];

    /// A short snake-case name, used as the `result` label.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Codec => "codec",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Handler => "handler",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Transport => "transport",
            ErrorKind::NoProvider => "no_provider",
            ErrorKind::Other => "other",
        }
    }

    /// The kind of `error` (of its root cause, for the cluster's wrapping errors).
    pub fn of(error: &Error) -> ErrorKind {
        use crate::Code;
        match error.root() {
            Error::Timeout(_) | Error::TimeoutIn { .. } => ErrorKind::Timeout,
            Error::Codec { .. } => ErrorKind::Codec,
            Error::Protocol(_) | Error::MessageTooLarge { .. } => ErrorKind::BadRequest,
            Error::ServiceNotFound { .. } | Error::MethodNotFound { .. } => ErrorKind::NotFound,
            Error::Rejected(_) => ErrorKind::Rejected,
            Error::Handler(_) => ErrorKind::Handler,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Transport { .. } => ErrorKind::Transport,
            Error::NoProvider(_) => ErrorKind::NoProvider,
            Error::Remote { code, .. } => match code {
                Code::Codec => ErrorKind::Codec,
                Code::Timeout => ErrorKind::Timeout,
                Code::BadRequest => ErrorKind::BadRequest,
                Code::NotFound => ErrorKind::NotFound,
                Code::ServiceError => ErrorKind::Handler,
                Code::Overloaded => ErrorKind::Rejected,
                _ => ErrorKind::Other,
            },
            _ => ErrorKind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Seconds of history kept for rates: one minute, plus the second being filled.
const WINDOW: usize = 61;

/// The registry of statistics. Cheap to clone (shared).
#[derive(Clone)]
pub struct Stats {
    inner: Arc<Registry>,
}

struct Registry {
    /// Zero of the rate window's second counter.
    epoch: Instant,
    /// Counters are never removed (a method once counted stays listed, as a series stays
    /// in a Prometheus registry), so each is leaked once and handed out as a plain
    /// `'static` reference: a call in flight holds its method's counters without bumping
    /// a shared reference count, and no lock or map is touched per call.
    methods: Mutex<HashMap<(Side, String, String), &'static MethodStats>>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    /// An empty registry of its own (tests, or a process that keeps two apart).
    pub fn new() -> Stats {
        Stats {
            inner: Arc::new(Registry {
                epoch: Instant::now(),
                methods: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The process-wide registry servers and clients record into by default.
    pub fn global() -> &'static Stats {
        static GLOBAL: OnceLock<Stats> = OnceLock::new();
        GLOBAL.get_or_init(Stats::new)
    }

    /// The counters of `method` of `service` on `side`, created on first use. Keep the
    /// returned handle: recording through it takes no lock. They live as long as the
    /// process.
    pub fn method(&self, side: Side, service: &str, method: &str) -> &'static MethodStats {
        let mut methods = self
            .inner
            .methods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        methods
            .entry((side, service.to_owned(), method.to_owned()))
            .or_insert_with(|| {
                Box::leak(Box::new(MethodStats::new(
                    side,
                    service.into(),
                    method.into(),
                    self.inner.epoch,
                )))
            })
    }

    /// Counters for every method of `services` on `side`, resolved once for the hot path.
    pub fn table(&self, side: Side, services: &[&'static ServiceDescriptor]) -> MethodTable {
        let known = services
            .iter()
            .flat_map(|service| {
                service.methods.iter().map(move |method| {
                    (
                        method as *const _ as usize,
                        self.method(side, service.name, method.name),
                    )
                })
            })
            .collect();
        MethodTable {
            stats: self.clone(),
            side,
            known,
        }
    }

    /// Every method's numbers now, sorted by side, service and method.
    pub fn snapshot(&self) -> Vec<MethodSnapshot> {
        let methods: Vec<&'static MethodStats> = self
            .inner
            .methods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .copied()
            .collect();
        let mut all: Vec<MethodSnapshot> = methods.iter().map(|m| m.snapshot()).collect();
        all.sort_by(|a, b| (a.side, &a.service, &a.method).cmp(&(b.side, &b.service, &b.method)));
        all
    }
}

/// The counters of a fixed set of methods, looked up by descriptor address: what a server
/// or client resolves once so that a call finds its counters without a lock.
#[derive(Clone)]
pub struct MethodTable {
    stats: Stats,
    side: Side,
    known: Arc<[(usize, &'static MethodStats)]>,
}

impl std::fmt::Debug for MethodTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodTable")
            .field("side", &self.side)
            .field("methods", &self.known.len())
            .finish()
    }
}

impl MethodTable {
    /// The counters of `method` of `service`: a scan of the resolved methods (a handful),
    /// or, for a method described by hand after the table was made, the registry's map.
    pub fn get(
        &self,
        service: &str,
        method: &'static crate::MethodDescriptor,
    ) -> &'static MethodStats {
        let key = method as *const _ as usize;
        match self.known.iter().find(|(k, _)| *k == key) {
            Some((_, stats)) => stats,
            None => self.stats.method(self.side, service, method.name),
        }
    }

    /// The side this table counts.
    pub fn side(&self) -> Side {
        self.side
    }
}

/// The live counters of one method on one side.
///
/// Counters are sharded by thread (see `slot`): each thread that counts writes its own
/// shard, with plain loads and stores, instead of bouncing shared cache lines between
/// cores with locked instructions (one shared set of counters cost about 300 ns per call
/// with two threads counting, against about 80 ns unshared). Readers sum the shards.
pub struct MethodStats {
    side: Side,
    service: Arc<str>,
    method: Arc<str>,
    epoch: Instant,
    /// Indexed by slot; a shard is made the first time its slot's thread counts here.
    shards: Box<[OnceLock<Box<Shard>>]>,
}

/// One thread's share of a method's counters, aligned so no two shards share a cache
/// line (128 bytes: adjacent-line prefetch pairs lines on x86).
#[repr(C, align(128))]
struct Shard {
    /// Wrapping: a call may start on one thread and end on another, so one shard's count
    /// can go below zero; the sum over shards is right.
    in_flight: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Right after the counters above (its sum and maximum first): with them, what every
    /// call writes takes one cache line, plus one bucket's and one window slot's.
    latency: Histogram,
    /// Calls finished per second, a ring of `WINDOW` slots: the second number in the high
    /// 32 bits, the count in the low 32 bits, so a slot is claimed for a new second and
    /// counted in one word.
    window: [AtomicU64; WINDOW],
    /// Failures by kind; successes are the latency histogram's count (every finished call
    /// is timed) minus these, which saves a counter per call.
    failed: [AtomicU64; ErrorKind::ALL.len()],
}

impl Shard {
    fn new() -> Shard {
        Shard {
            in_flight: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: Histogram::new(),
            window: [const { AtomicU64::new(0) }; WINDOW],
            failed: Default::default(),
        }
    }
}

impl std::fmt::Debug for MethodStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodStats")
            .field("side", &self.side)
            .field("service", &self.service)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl MethodStats {
    fn new(side: Side, service: Arc<str>, method: Arc<str>, epoch: Instant) -> MethodStats {
        MethodStats {
            side,
            service,
            method,
            epoch,
            shards: (0..slot::SHARDS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The calling thread's shard, and how to write it.
    fn shard(&self) -> (&Shard, Writer) {
        let slot = slot::current();
        let shard = self.shards[slot].get_or_init(|| Box::new(Shard::new()));
        (shard, Writer::of(slot))
    }

    /// The shards made so far.
    fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards
            .iter()
            .filter_map(|shard| shard.get().map(|s| &**s))
    }

    /// Counts a call starting now that carries `bytes_in` bytes of arguments (provider) or
    /// sends that many (consumer: pass the request body length; it counts as bytes out).
    pub fn start(&self, request_bytes: usize) -> CallGuard<'_> {
        self.start_at(Instant::now(), request_bytes)
    }

    /// [`MethodStats::start`] for a call that started at `started`.
    pub fn start_at(&self, started: Instant, request_bytes: usize) -> CallGuard<'_> {
        self.in_flight_add(request_bytes);
        CallGuard {
            stats: self,
            started,
        }
    }

    fn in_flight_add(&self, request_bytes: usize) {
        let (shard, writer) = self.shard();
        writer.add(&shard.in_flight, 1);
        let request = match self.side {
            Side::Provider => &shard.bytes_in,
            Side::Consumer => &shard.bytes_out,
        };
        writer.add(request, request_bytes as u64);
    }

    fn end(&self, started: Instant, outcome: std::result::Result<usize, ErrorKind>) {
        let (shard, writer) = self.shard();
        let now = Instant::now();
        let micros = now.saturating_duration_since(started).as_micros() as u64;
        shard.latency.record(writer, micros);
        match outcome {
            Ok(response_bytes) => {
                let response = match self.side {
                    Side::Provider => &shard.bytes_out,
                    Side::Consumer => &shard.bytes_in,
                };
                writer.add(response, response_bytes as u64);
            }
            Err(kind) => writer.add(&shard.failed[kind.index()], 1),
        }
        self.tick(shard, writer, now);
        writer.add(&shard.in_flight, u64::MAX);
    }

    /// Counts one finished call in the current second's slot of `shard`.
    fn tick(&self, shard: &Shard, writer: Writer, now: Instant) {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let slot = &shard.window[second as usize % WINDOW];
        let tag = (second & u32::MAX as u64) << 32;
        let current = slot.load(Ordering::Relaxed);
        if current & !(u32::MAX as u64) == tag {
            writer.add(slot, 1);
        } else {
            // The slot still holds an older second: claim it. On a shared shard another
            // call may have claimed it for this second first; then count on top of that.
            writer.replace(slot, current, tag | 1, 1);
        }
    }

    /// Calls finished per second over the `seconds` before the current one (at most 60),
    /// or over the time since the registry started if that is shorter.
    fn rate(&self, seconds: u64) -> f64 {
        self.rate_at(self.epoch.elapsed().as_secs(), seconds)
    }

    fn rate_at(&self, now: u64, seconds: u64) -> f64 {
        let seconds = seconds.clamp(1, WINDOW as u64 - 1).min(now.max(1));
        let mut calls = 0;
        for back in 1..=seconds {
            let Some(second) = now.checked_sub(back) else {
                break;
            };
            for shard in self.shards() {
                let word = shard.window[second as usize % WINDOW].load(Ordering::Relaxed);
                if word >> 32 == second & u32::MAX as u64 {
                    calls += word & u32::MAX as u64;
                }
            }
        }
        calls as f64 / seconds as f64
    }

    /// The sum of one counter over the shards.
    fn sum(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards().fold(0u64, |sum, shard| {
            sum.wrapping_add(counter(shard).load(Ordering::Relaxed))
        })
    }

    /// The numbers now.
    pub fn snapshot(&self) -> MethodSnapshot {
        let mut latency = HistogramSnapshot::default();
        for shard in self.shards() {
            latency.merge(&shard.latency.snapshot());
        }
        let failed: BTreeMap<&'static str, u64> = ErrorKind::ALL
            .iter()
            .map(|kind| (kind.name(), self.sum(|shard| &shard.failed[kind.index()])))
            .filter(|(_, n)| *n > 0)
            .collect();
        let failed_total: u64 = failed.values().sum();
        let count = latency.count();
        // Shards are read one after another while calls finish: a failure counted after
        // its shard's histogram was read must not make successes negative.
        let succeeded = count.saturating_sub(failed_total);
        MethodSnapshot {
            side: self.side,
            service: self.service.to_string(),
            method: self.method.to_string(),
            total: succeeded + failed_total,
            succeeded,
            failed_total,
            failed,
            in_flight: self.sum(|shard| &shard.in_flight),
            qps_1m: self.rate(60),
            qps_10s: self.rate(10),
            latency_us: LatencySummary {
                avg: latency.sum.checked_div(count).unwrap_or(0),
                p50: latency.quantile(0.50),
                p90: latency.quantile(0.90),
                p99: latency.quantile(0.99),
                p999: latency.quantile(0.999),
                max: latency.max,
            },
            bytes_in: self.sum(|shard| &shard.bytes_in),
            bytes_out: self.sum(|shard| &shard.bytes_out),
            histogram: LatencyHistogram(latency),
        }
    }
}

/// One call counted in flight until [`CallGuard::finish`] (or until dropped: a cancelled
/// call leaves the in-flight count and is counted as [`ErrorKind::Cancelled`]).
#[must_use = "a call guard counts the call when finished"]
pub struct CallGuard<'a> {
    stats: &'a MethodStats,
    started: Instant,
}

impl CallGuard<'_> {
    /// Ends the call: `Ok(response body length)` or the failure's kind.
    pub fn finish(self, outcome: std::result::Result<usize, ErrorKind>) {
        self.stats.end(self.started, outcome);
        std::mem::forget(self);
    }

    /// Ends the call with its result.
    pub fn finish_with<T: ResponseLen>(self, result: &crate::Result<T>) {
        self.finish(match result {
            Ok(response) => Ok(response.response_len()),
            Err(error) => Err(ErrorKind::of(error)),
        })
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.stats.end(self.started, Err(ErrorKind::Cancelled));
    }
}

/// How many bytes an answer carried back.
pub trait ResponseLen {
    /// The encoded result's length.
    fn response_len(&self) -> usize;
}

impl ResponseLen for crate::Response {
    fn response_len(&self) -> usize {
        self.body.len()
    }
}

/// One method's numbers at one moment, as the admin endpoint shows them.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSnapshot {
    /// Which end of the calls.
    pub side: Side,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Calls finished (succeeded + failed).
    pub total: u64,
    /// Calls answered with a result.
    pub succeeded: u64,
    /// Calls that failed, all kinds.
    pub failed_total: u64,
    /// Failed calls by [`ErrorKind::name`] (kinds with none left out).
    pub failed: BTreeMap<&'static str, u64>,
    /// Calls under way.
    pub in_flight: u64,
    /// Calls finished per second over the last minute.
    pub qps_1m: f64,
    /// Calls finished per second over the last ten seconds.
    pub qps_10s: f64,
    /// Latency of finished calls, in microseconds.
    pub latency_us: LatencySummary,
    /// Bytes of arguments received (provider) or results received (consumer).
    pub bytes_in: u64,
    /// Bytes of results sent (provider) or arguments sent (consumer).
    pub bytes_out: u64,
    /// The latency histogram, for exporters.
    #[serde(skip)]
    pub histogram: LatencyHistogram,
}

/// Latency figures in microseconds (percentiles within 12.5 %, from the histogram).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    /// Mean.
    pub avg: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest seen.
    pub max: u64,
}

/// A latency histogram at one moment, readable at any bucket bound.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(HistogramSnapshot);

impl LatencyHistogram {
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.count()
    }

    /// Sum of the samples, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.0.sum
    }

    /// Samples of at most `micros` microseconds. Exact when `micros` is one less than a
    /// power of two times 8, 9, .. or 15 (a bucket bound), e.g. 2^k - 1.
    pub fn count_at_most(&self, micros: u64) -> u64 {
        self.0.count_below(micros)
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        self.0.quantile(q)
    }

    /// The buckets holding samples: `(lowest, next bucket's lowest, count)`, in
    /// microseconds, ascending. Two snapshots' differences give the latency of the calls
    /// in between (what the dashboard charts).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.0
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(index, n)| (histogram::lower(index), histogram::lower(index + 1), *n))
    }
}

/// How long [`Stats`] keeps rate history.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_counts_once_and_leaves_in_flight() {
        let stats = Stats::new();
        let m = stats.method(Side::Consumer, "s", "m");
        let call = m.start(10);
        assert_eq!(m.snapshot().in_flight, 1);
        call.finish(Err(ErrorKind::Timeout));
        let s = m.snapshot();
        assert_eq!((s.in_flight, s.total, s.succeeded), (0, 1, 0));
        assert_eq!(s.failed.get("timeout"), Some(&1));
        assert_eq!(s.bytes_out, 10);
        drop(m.start(0));
        assert_eq!(m.snapshot().failed.get("cancelled"), Some(&1));
    }

    #[test]
    fn counts_from_more_threads_than_slots_add_up() {
        let stats = Stats::new();
        let m = stats.method(Side::Provider, "s", "m");
        let threads = slot::OWNED + 6;
        // Every thread holds its slot until all have claimed one, so some must share.
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    barrier.wait();
                    for i in 0..500 {
                        let outcome = if i % 5 == 0 {
                            Err(ErrorKind::Timeout)
                        } else {
                            Ok(3)
                        };
                        m.start(2).finish(outcome);
                    }
                    barrier.wait();
                });
            }
        });
        let s = m.snapshot();
        let calls = threads as u64 * 500;
        assert_eq!((s.total, s.in_flight), (calls, 0));
        assert_eq!(s.failed.get("timeout"), Some(&(calls / 5)));
        assert_eq!(s.succeeded, calls - calls / 5);
        assert_eq!(
            (s.bytes_in, s.bytes_out),
            (calls * 2, (calls - calls / 5) * 3)
        );
    }

    #[test]
    fn the_same_method_shares_counters() {
        let stats = Stats::new();
        let a = stats.method(Side::Provider, "s", "m");
        let b = stats.method(Side::Provider, "s", "m");
        assert!(std::ptr::eq(a, b));
        let c = stats.method(Side::Consumer, "s", "m");
        assert!(!std::ptr::eq(a, c));
    }

    #[test]
    fn the_rate_counts_calls_of_the_last_seconds() {
        let stats = Stats::new();
        let m = stats.method(Side::Provider, "s", "m");
        let epoch = m.epoch;
        for second in 0..20u64 {
            for _ in 0..5 {
                m.tick(
                    m.shard().0,
                    m.shard().1,
                    epoch + Duration::from_secs(second),
                );
            }
        }
        assert_eq!(m.rate_at(20, 10), 5.0);
        assert_eq!(m.rate_at(20, 60), 5.0, "over the 20 s there are");
        assert_eq!(m.rate_at(45, 10), 0.0);
        // Wrapping around the ring replaces a second older than the window.
        m.tick(
            m.shard().0,
            m.shard().1,
            epoch + Duration::from_secs(61 + 3),
        );
        assert_eq!(m.rate_at(65, 1), 1.0);
        assert_eq!(
            m.rate_at(65, 60),
            (15.0 * 5.0 + 1.0) / 60.0,
            "seconds 5..=19 and 64"
        );
    }
}
