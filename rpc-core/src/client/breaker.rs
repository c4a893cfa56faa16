//! The consumer's circuit breaker, one per provider and method.
//!
//! ```text
//! closed --(over the window, at least minimum_calls, error or slow-call ratio >= threshold)--> open
//! open --(open_for elapsed)--> half-open: half_open_probes calls go through
//! half-open --(every probe succeeds)--> closed;  --(a probe fails or is slow)--> open
//! ```
//!
//! While a breaker is open its calls fail fast with [`Error::Rejected`] and the cluster
//! skips that provider as long as another one is not open. Defaults follow resilience4j's
//! thresholds (50 % errors, 100 % slow calls) over Sentinel-sized windows (10 s, at least
//! 20 calls, 5 s open).

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::limit::lock;
use crate::{Error, Result};

/// Buckets of the sliding window: it slides in tenths.
const BUCKETS: usize = 10;

/// When a breaker opens and how it recovers. See the module docs for the state machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Open when at least this share of the window's calls failed (default 0.5).
    pub failure_ratio: f64,
    /// Open when at least this share of the window's calls were slow (default 1.0).
    pub slow_call_ratio: f64,
    /// A call at least this long is slow (default 1 s).
    pub slow_call: Duration,
    /// Calls the window must hold before the ratios count (default 20).
    pub minimum_calls: u32,
    /// Length of the sliding window (default 10 s).
    pub window: Duration,
    /// How long the breaker stays open before it lets probes through (default 5 s).
    pub open_for: Duration,
    /// Probe calls in the half-open state; all must succeed to close (default 3).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_ratio: 0.5,
            slow_call_ratio: 1.0,
            slow_call: Duration::from_secs(1),
            minimum_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    /// This config, opening at `ratio` of failed calls.
    pub fn failure_ratio(mut self, ratio: f64) -> BreakerConfig {
        self.failure_ratio = ratio;
        self
    }

    /// This config, opening at `ratio` of calls slower than `slow`.
    pub fn slow_calls(mut self, ratio: f64, slow: Duration) -> BreakerConfig {
        self.slow_call_ratio = ratio;
        self.slow_call = slow;
        self
    }

    /// This config, judging over `window` once it holds `minimum_calls`.
    pub fn window(mut self, window: Duration, minimum_calls: u32) -> BreakerConfig {
        self.window = window;
        self.minimum_calls = minimum_calls;
        self
    }

    /// This config, open for `open_for`, then `probes` calls to decide.
    pub fn recovery(mut self, open_for: Duration, probes: u32) -> BreakerConfig {
        self.open_for = open_for;
        self.half_open_probes = probes;
        self
    }

    /// Fails with [`Error::Config`] naming the setting that cannot work: a ratio that is
    /// not a number in (0, 1], an empty window, no minimum calls or no probes.
    pub fn validate(&self) -> Result<()> {
        for (name, ratio) in [
            ("failure_ratio", self.failure_ratio),
            ("slow_call_ratio", self.slow_call_ratio),
        ] {
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(Error::Config(format!(
                    "circuit breaker {name} = {ratio} must be a number in (0, 1], e.g. 0.5 \
                     for half the calls"
                )));
            }
        }
        if self.window.is_zero() {
            return Err(Error::Config(
                "circuit breaker window must be longer than 0".into(),
            ));
        }
        if self.minimum_calls == 0 {
            return Err(Error::Config(
                "circuit breaker minimum_calls must be at least 1".into(),
            ));
        }
        if self.half_open_probes == 0 {
            return Err(Error::Config(
                "circuit breaker half_open_probes must be at least 1, or it never closes".into(),
            ));
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through and are counted.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls go through.
    HalfOpen,
}

/// One breaker's state and how often it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The provider's address.
    pub provider: String,
    /// The method.
    pub method: &'static str,
    /// The state now.
    pub state: BreakerState,
    /// Times it opened.
    pub opened: u64,
    /// Times it went half-open.
    pub half_opened: u64,
    /// Times it closed again.
    pub closed: u64,
}

/// How one call ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Slow,
    Failure,
}

/// One tenth of the window: counts updated with atomic adds.
#[derive(Debug, Default)]
struct Bucket {
    /// Which tenth (since the breaker's origin) the counts belong to.
    index: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;
/// No breaker configured: nothing is counted.
const OFF: u8 = 3;

/// What only transitions touch, under a lock: they are rare.
#[derive(Debug)]
struct Transitions {
    config: Option<BreakerConfig>,
    succeeded: u32,
}

/// A circuit breaker for one provider and method.
///
/// The closed state, where calls spend their lives, is lock-free: admission is one atomic
/// load, a call's outcome a few atomic adds on the current bucket. Only transitions (and
/// half-open probes) take the lock.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: AtomicU8,
    /// While open: until when (ns since `origin`).
    open_until_ns: AtomicU64,
    /// Probes let through in the current half-open spell.
    admitted: AtomicU32,
    probes: AtomicU32,
    slow_ns: AtomicU64,
    bucket_ns: AtomicU64,
    minimum_calls: AtomicU32,
    /// The ratios as parts per million, so they compare as integers.
    failure_ppm: AtomicU64,
    slow_ppm: AtomicU64,
    open_for_ns: AtomicU64,
    origin: Instant,
    buckets: [Bucket; BUCKETS],
    transitions: Mutex<Transitions>,
    /// Breakers of the client that are not closed; the cluster skips nothing while 0.
    not_closed: Arc<AtomicUsize>,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
}

/// Admission through a breaker: a probe or a normal call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// No breaker configured: nothing to record.
    Unwatched,
    Closed,
    Probe,
}

impl Breaker {
    pub(crate) fn new(config: Option<BreakerConfig>, not_closed: Arc<AtomicUsize>) -> Breaker {
        let breaker = Breaker {
            state: AtomicU8::new(OFF),
            open_until_ns: AtomicU64::new(0),
            admitted: AtomicU32::new(0),
            probes: AtomicU32::new(1),
            slow_ns: AtomicU64::new(u64::MAX),
            bucket_ns: AtomicU64::new(1),
            minimum_calls: AtomicU32::new(1),
            failure_ppm: AtomicU64::new(0),
            slow_ppm: AtomicU64::new(0),
            open_for_ns: AtomicU64::new(0),
            origin: Instant::now(),
            buckets: Default::default(),
            transitions: Mutex::new(Transitions {
                config: None,
                succeeded: 0,
            }),
            not_closed,
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        };
        breaker.configure(config);
        breaker
    }

    /// Replaces the config; `None` switches the breaker off (and closes it).
    pub(crate) fn configure(&self, config: Option<BreakerConfig>) {
        let mut transitions = lock(&self.transitions);
        if let Some(config) = &config {
            let nanos = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
            self.probes
                .store(config.half_open_probes, Ordering::Relaxed);
            self.slow_ns
                .store(nanos(config.slow_call), Ordering::Relaxed);
            self.bucket_ns.store(
                nanos(config.window / BUCKETS as u32).max(1),
                Ordering::Relaxed,
            );
            self.minimum_calls
                .store(config.minimum_calls, Ordering::Relaxed);
            self.failure_ppm
                .store((config.failure_ratio * 1e6) as u64, Ordering::Relaxed);
            self.slow_ppm
                .store((config.slow_call_ratio * 1e6) as u64, Ordering::Relaxed);
            self.open_for_ns
                .store(nanos(config.open_for), Ordering::Relaxed);
        }
        let state = self.state.load(Ordering::Acquire);
        match (&config, state) {
            (None, OPEN | HALF_OPEN) => {
                self.not_closed.fetch_sub(1, Ordering::Relaxed);
                self.state.store(OFF, Ordering::Release);
            }
            (None, _) => self.state.store(OFF, Ordering::Release),
            (Some(_), OFF) => {
                self.reset_buckets();
                self.state.store(CLOSED, Ordering::Release);
            }
            (Some(_), _) => {}
        }
        transitions.config = config;
    }

    fn now_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// True while calls would fail fast (open, or half-open with every probe out).
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        match self.state.load(Ordering::Acquire) {
            OPEN => self.now_ns(now) < self.open_until_ns.load(Ordering::Acquire),
            HALF_OPEN => {
                self.admitted.load(Ordering::Relaxed) >= self.probes.load(Ordering::Relaxed)
            }
            _ => false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (
            self.opened.load(Ordering::Relaxed),
            self.half_opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }

    /// Lets a call through, or says how long the breaker stays open. Reads the clock
    /// (`now`) only when the breaker is not closed.
    pub(crate) fn admit(
        &self,
        now: impl FnOnce() -> Instant,
        label: &dyn std::fmt::Display,
    ) -> Result<Pass> {
        match self.state.load(Ordering::Acquire) {
            OFF => return Ok(Pass::Unwatched),
            CLOSED => return Ok(Pass::Closed),
            _ => {}
        }
        let mut transitions = lock(&self.transitions);
        let now_ns = self.now_ns(now());
        let probes = self.probes.load(Ordering::Relaxed);
        match self.state.load(Ordering::Acquire) {
            OFF => Ok(Pass::Unwatched),
            CLOSED => Ok(Pass::Closed),
            OPEN => {
                let until = self.open_until_ns.load(Ordering::Acquire);
                if now_ns < until {
                    return Err(Error::Rejected(format!(
                        "circuit breaker open for {label}: failing fast for another {:?}",
                        Duration::from_nanos(until - now_ns)
                    )));
                }
                self.admitted.store(1, Ordering::Relaxed);
                transitions.succeeded = 0;
                self.state.store(HALF_OPEN, Ordering::Release);
                self.half_opened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%label, probes, "circuit breaker half-open: probing");
                Ok(Pass::Probe)
            }
            _ => {
                let admitted = self.admitted.load(Ordering::Relaxed);
                if admitted < probes {
                    self.admitted.store(admitted + 1, Ordering::Relaxed);
                    Ok(Pass::Probe)
                } else {
                    Err(Error::Rejected(format!(
                        "circuit breaker half-open for {label}: every probe is out"
                    )))
                }
            }
        }
    }

    /// A probe that ended without an outcome (dropped) gives its place back.
    pub(crate) fn abandon(&self, pass: Pass) {
        if pass == Pass::Probe {
            let _transitions = lock(&self.transitions);
            if self.state.load(Ordering::Acquire) == HALF_OPEN {
                let admitted = self.admitted.load(Ordering::Relaxed);
                self.admitted
                    .store(admitted.saturating_sub(1), Ordering::Relaxed);
            }
        }
    }

    /// Counts a call let through with `pass` that `failed` or not, after `elapsed`, ending
    /// `now`.
    pub(crate) fn record_call(
        &self,
        pass: Pass,
        failed: bool,
        elapsed: Duration,
        now: Instant,
        label: &dyn std::fmt::Display,
    ) {
        if pass == Pass::Unwatched {
            return;
        }
        let slow = elapsed.as_nanos() >= u128::from(self.slow_ns.load(Ordering::Relaxed));
        let outcome = match (failed, slow) {
            (true, _) => Outcome::Failure,
            (false, true) => Outcome::Slow,
            (false, false) => Outcome::Success,
        };
        self.record(pass, outcome, now, label);
    }

    /// Counts the outcome of a call let through with `pass`.
    pub(crate) fn record(
        &self,
        pass: Pass,
        outcome: Outcome,
        now: Instant,
        label: &dyn std::fmt::Display,
    ) {
        match (pass, self.state.load(Ordering::Acquire)) {
            (Pass::Closed, CLOSED) => self.record_closed(outcome, now, label),
            (Pass::Probe, HALF_OPEN) => self.record_probe(outcome, now, label),
            // Calls let through before the state changed, finishing late: not counted.
            _ => {}
        }
    }

    fn record_closed(&self, outcome: Outcome, now: Instant, label: &dyn std::fmt::Display) {
        let index = self.now_ns(now) / self.bucket_ns.load(Ordering::Relaxed);
        let bucket = &self.buckets[(index % BUCKETS as u64) as usize];
        if bucket.index.load(Ordering::Acquire) != index {
            // A new tenth of the window: the first call there resets the old counts.
            let _transitions = lock(&self.transitions);
            if bucket.index.load(Ordering::Acquire) != index {
                bucket.calls.store(0, Ordering::Relaxed);
                bucket.failures.store(0, Ordering::Relaxed);
                bucket.slow.store(0, Ordering::Relaxed);
                bucket.index.store(index, Ordering::Release);
            }
        }
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            // Only a failed or slow call can push a ratio over its threshold: a success
            // is counted and nothing else (the breaker's whole cost on a healthy path).
            Outcome::Success => return,
            Outcome::Slow => {
                bucket.slow.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failure => {
                bucket.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (mut calls, mut failures, mut slow) = (0u64, 0u64, 0u64);
        for bucket in &self.buckets {
            let at = bucket.index.load(Ordering::Acquire);
            if at <= index && at + (BUCKETS as u64) > index {
                calls += u64::from(bucket.calls.load(Ordering::Relaxed));
                failures += u64::from(bucket.failures.load(Ordering::Relaxed));
                slow += u64::from(bucket.slow.load(Ordering::Relaxed));
            }
        }
        if calls < u64::from(self.minimum_calls.load(Ordering::Relaxed)) {
            return;
        }
        let failure_ppm = failures * 1_000_000 / calls;
        let slow_ppm = slow * 1_000_000 / calls;
        if failure_ppm < self.failure_ppm.load(Ordering::Relaxed)
            && slow_ppm < self.slow_ppm.load(Ordering::Relaxed)
        {
            return;
        }
        let _transitions = lock(&self.transitions);
        if self.state.load(Ordering::Acquire) != CLOSED {
            return;
        }
        self.open(now);
        self.not_closed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            %label,
            calls,
            failures,
            slow,
            open_for = ?Duration::from_nanos(self.open_for_ns.load(Ordering::Relaxed)),
            "circuit breaker opened"
        );
    }

    fn record_probe(&self, outcome: Outcome, now: Instant, label: &dyn std::fmt::Display) {
        let mut transitions = lock(&self.transitions);
        if self.state.load(Ordering::Acquire) != HALF_OPEN {
            return;
        }
        if outcome == Outcome::Success {
            transitions.succeeded += 1;
            if transitions.succeeded >= self.probes.load(Ordering::Relaxed) {
                self.reset_buckets();
                self.state.store(CLOSED, Ordering::Release);
                self.not_closed.fetch_sub(1, Ordering::Relaxed);
                self.closed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%label, "circuit breaker closed: probes succeeded");
            }
        } else {
            self.open(now);
            tracing::warn!(%label, ?outcome, "circuit breaker re-opened: a probe failed");
        }
    }

    /// Opens until `open_for` from `now`. The caller holds the transitions lock.
    fn open(&self, now: Instant) {
        let until = self.now_ns(now) + self.open_for_ns.load(Ordering::Relaxed);
        self.open_until_ns.store(until, Ordering::Release);
        self.state.store(OPEN, Ordering::Release);
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn reset_buckets(&self) {
        for bucket in &self.buckets {
            bucket.index.store(u64::MAX, Ordering::Release);
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn config() -> BreakerConfig {
        BreakerConfig::default()
            .window(ms(1000), 10)
            .recovery(ms(500), 2)
    }

    #[tokio::test(start_paused = true)]
    async fn it_opens_over_the_ratio_fails_fast_then_probes_close_it() {
        let breaker = Breaker::new(Some(config()), Arc::default());
        let t0 = Instant::now();
        for i in 0..9 {
            let pass = breaker.admit(|| t0, &"p").unwrap();
            let outcome = if i % 2 == 1 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            breaker.record(pass, outcome, t0, &"p");
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "9 calls: below the minimum"
        );
        let pass = breaker.admit(|| t0, &"p").unwrap();
        breaker.record(pass, Outcome::Failure, t0, &"p");
        assert_eq!(breaker.state(), BreakerState::Open, "5 of 10 failed");
        assert!(breaker.is_open(t0 + ms(499)));
        assert!(matches!(
            breaker.admit(|| t0 + ms(499), &"p"),
            Err(Error::Rejected(_))
        ));
        let probe = breaker.admit(|| t0 + ms(500), &"p").unwrap();
        assert_eq!(
            (probe, breaker.state()),
            (Pass::Probe, BreakerState::HalfOpen)
        );
        let second = breaker.admit(|| t0 + ms(500), &"p").unwrap();
        assert!(
            breaker.admit(|| t0 + ms(500), &"p").is_err(),
            "two probes only"
        );
        breaker.record(probe, Outcome::Success, t0 + ms(510), &"p");
        breaker.record(second, Outcome::Success, t0 + ms(510), &"p");
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.counts(), (1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_old_calls_leave_the_window() {
        let breaker = Breaker::new(Some(config()), Arc::default());
        let t0 = Instant::now();
        for _ in 0..10 {
            let pass = breaker.admit(|| t0, &"p").unwrap();
            breaker.record(pass, Outcome::Slow, t0, &"p");
        }
        assert_eq!(breaker.state(), BreakerState::Open, "all slow");
        let probe = breaker.admit(|| t0 + ms(600), &"p").unwrap();
        breaker.record(probe, Outcome::Failure, t0 + ms(600), &"p");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.is_open(t0 + ms(1000)));
        assert_eq!(breaker.counts(), (2, 1, 0));

        // A fresh breaker: failures older than the window no longer count.
        let breaker = Breaker::new(Some(config()), Arc::default());
        for _ in 0..9 {
            let pass = breaker.admit(|| t0, &"p").unwrap();
            breaker.record(pass, Outcome::Failure, t0, &"p");
        }
        let later = t0 + ms(1500);
        for _ in 0..10 {
            let pass = breaker.admit(|| later, &"p").unwrap();
            breaker.record(pass, Outcome::Success, later, &"p");
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn bad_thresholds_are_configuration_errors() {
        for bad in [
            BreakerConfig::default().failure_ratio(f64::NAN),
            BreakerConfig::default().failure_ratio(-0.5),
            BreakerConfig::default().failure_ratio(1.5),
            BreakerConfig::default().slow_calls(0.0, ms(100)),
            BreakerConfig::default().window(Duration::ZERO, 5),
            BreakerConfig::default().window(ms(100), 0),
            BreakerConfig::default().recovery(ms(100), 0),
        ] {
            let Err(Error::Config(message)) = bad.validate() else {
                panic!("{bad:?} is accepted");
            };
            assert!(message.contains("circuit breaker"), "{message}");
        }
        assert!(BreakerConfig::default().validate().is_ok());
    }
}
