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

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    index: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    config: Option<BreakerConfig>,
    state: State,
    origin: Instant,
    buckets: [Bucket; BUCKETS],
}

/// A circuit breaker for one provider and method.
#[derive(Debug)]
pub(crate) struct Breaker {
    inner: Mutex<Inner>,
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
    pub(crate) fn new(config: Option<BreakerConfig>) -> Breaker {
        Breaker {
            inner: Mutex::new(Inner {
                config,
                state: State::Closed,
                origin: Instant::now(),
                buckets: [Bucket::default(); BUCKETS],
            }),
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// Replaces the config; `None` switches the breaker off (and closes it).
    pub(crate) fn configure(&self, config: Option<BreakerConfig>) {
        let mut inner = lock(&self.inner);
        if config.is_none() {
            inner.state = State::Closed;
        }
        inner.config = config;
    }

    /// True while calls would fail fast (open, or half-open with every probe out).
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        let inner = lock(&self.inner);
        match inner.state {
            State::Closed => false,
            State::Open { until } => now < until,
            State::HalfOpen { admitted, .. } => {
                admitted >= inner.config.as_ref().map_or(1, |c| c.half_open_probes)
            }
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match lock(&self.inner).state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (
            self.opened.load(Ordering::Relaxed),
            self.half_opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }

    /// Lets a call through, or says how long the breaker stays open.
    pub(crate) fn admit(&self, now: Instant, label: &dyn std::fmt::Display) -> Result<Pass> {
        let mut inner = lock(&self.inner);
        let Some(probes) = inner.config.as_ref().map(|c| c.half_open_probes) else {
            return Ok(Pass::Unwatched);
        };
        match inner.state {
            State::Closed => Ok(Pass::Closed),
            State::Open { until } if now < until => Err(Error::Rejected(format!(
                "circuit breaker open for {label}: failing fast for another {:?}",
                until - now
            ))),
            State::Open { .. } => {
                inner.state = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                self.half_opened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%label, probes, "circuit breaker half-open: probing");
                Ok(Pass::Probe)
            }
            State::HalfOpen {
                ref mut admitted, ..
            } if *admitted < probes => {
                *admitted += 1;
                Ok(Pass::Probe)
            }
            State::HalfOpen { .. } => Err(Error::Rejected(format!(
                "circuit breaker half-open for {label}: every probe is out"
            ))),
        }
    }

    /// A probe that ended without an outcome (dropped) gives its place back.
    pub(crate) fn abandon(&self, pass: Pass) {
        if pass == Pass::Probe
            && let State::HalfOpen { admitted, .. } = &mut lock(&self.inner).state
        {
            *admitted = admitted.saturating_sub(1);
        }
    }

    /// Counts a call let through with `pass` that `failed` or not, after `elapsed`.
    pub(crate) fn record_call(
        &self,
        pass: Pass,
        failed: bool,
        elapsed: Duration,
        label: &dyn std::fmt::Display,
    ) {
        if pass == Pass::Unwatched {
            return;
        }
        let slow = lock(&self.inner)
            .config
            .as_ref()
            .is_some_and(|c| elapsed >= c.slow_call);
        let outcome = match (failed, slow) {
            (true, _) => Outcome::Failure,
            (false, true) => Outcome::Slow,
            (false, false) => Outcome::Success,
        };
        self.record(pass, outcome, Instant::now(), label);
    }

    /// Counts the outcome of a call let through with `pass`.
    pub(crate) fn record(
        &self,
        pass: Pass,
        outcome: Outcome,
        now: Instant,
        label: &dyn std::fmt::Display,
    ) {
        let mut inner = lock(&self.inner);
        let Some(config) = inner.config.clone() else {
            return;
        };
        match (&mut inner.state, pass) {
            (State::HalfOpen { succeeded, .. }, Pass::Probe) => {
                if outcome == Outcome::Success {
                    *succeeded += 1;
                    if *succeeded >= config.half_open_probes {
                        inner.state = State::Closed;
                        inner.buckets = [Bucket::default(); BUCKETS];
                        self.closed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%label, "circuit breaker closed: probes succeeded");
                    }
                } else {
                    inner.state = State::Open {
                        until: now + config.open_for,
                    };
                    self.opened.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%label, ?outcome, open_for = ?config.open_for, "circuit breaker re-opened: a probe failed");
                }
            }
            (State::Closed, Pass::Closed) => {
                let width = (config.window / BUCKETS as u32).max(Duration::from_nanos(1));
                let index = ((now - inner.origin).as_nanos() / width.as_nanos()) as u64;
                let bucket = &mut inner.buckets[(index % BUCKETS as u64) as usize];
                if bucket.index != index {
                    *bucket = Bucket {
                        index,
                        ..Bucket::default()
                    };
                }
                bucket.calls += 1;
                match outcome {
                    Outcome::Success => {}
                    Outcome::Slow => bucket.slow += 1,
                    Outcome::Failure => bucket.failures += 1,
                }
                let live = inner
                    .buckets
                    .iter()
                    .filter(|b| b.index + BUCKETS as u64 > index && b.calls > 0);
                let (calls, failures, slow) = live.fold((0u32, 0u32, 0u32), |acc, b| {
                    (acc.0 + b.calls, acc.1 + b.failures, acc.2 + b.slow)
                });
                if calls < config.minimum_calls {
                    return;
                }
                let failure_ratio = f64::from(failures) / f64::from(calls);
                let slow_ratio = f64::from(slow) / f64::from(calls);
                if failure_ratio >= config.failure_ratio || slow_ratio >= config.slow_call_ratio {
                    inner.state = State::Open {
                        until: now + config.open_for,
                    };
                    self.opened.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %label,
                        calls,
                        failure_ratio,
                        slow_ratio,
                        open_for = ?config.open_for,
                        "circuit breaker opened"
                    );
                }
            }
            // Calls let through before the state changed, finishing late: not counted.
            _ => {}
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
        let breaker = Breaker::new(Some(config()));
        let t0 = Instant::now();
        for i in 0..9 {
            let pass = breaker.admit(t0, &"p").unwrap();
            let outcome = if i % 2 == 0 {
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
        let pass = breaker.admit(t0, &"p").unwrap();
        breaker.record(pass, Outcome::Success, t0, &"p");
        assert_eq!(breaker.state(), BreakerState::Open, "5 of 10 failed");
        assert!(breaker.is_open(t0 + ms(499)));
        assert!(matches!(
            breaker.admit(t0 + ms(499), &"p"),
            Err(Error::Rejected(_))
        ));
        let probe = breaker.admit(t0 + ms(500), &"p").unwrap();
        assert_eq!(
            (probe, breaker.state()),
            (Pass::Probe, BreakerState::HalfOpen)
        );
        let second = breaker.admit(t0 + ms(500), &"p").unwrap();
        assert!(
            breaker.admit(t0 + ms(500), &"p").is_err(),
            "two probes only"
        );
        breaker.record(probe, Outcome::Success, t0 + ms(510), &"p");
        breaker.record(second, Outcome::Success, t0 + ms(510), &"p");
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.counts(), (1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_old_calls_leave_the_window() {
        let breaker = Breaker::new(Some(config()));
        let t0 = Instant::now();
        for _ in 0..10 {
            let pass = breaker.admit(t0, &"p").unwrap();
            breaker.record(pass, Outcome::Slow, t0, &"p");
        }
        assert_eq!(breaker.state(), BreakerState::Open, "all slow");
        let probe = breaker.admit(t0 + ms(600), &"p").unwrap();
        breaker.record(probe, Outcome::Failure, t0 + ms(600), &"p");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.is_open(t0 + ms(1000)));
        assert_eq!(breaker.counts(), (2, 1, 0));

        // A fresh breaker: failures older than the window no longer count.
        let breaker = Breaker::new(Some(config()));
        for _ in 0..9 {
            let pass = breaker.admit(t0, &"p").unwrap();
            breaker.record(pass, Outcome::Failure, t0, &"p");
        }
        let later = t0 + ms(1500);
        for _ in 0..10 {
            let pass = breaker.admit(later, &"p").unwrap();
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
