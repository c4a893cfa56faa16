//! Traffic control: rate limits and concurrency limits, as one tower layer.
//!
//! A provider protects itself with a [`RateLimit`] (permits per second, and how long a
//! caller may wait for one) and an `executes` cap (calls of a method running at once); a
//! consumer may hold back its own calls with a rate limit and an `actives` cap (calls in
//! flight to one provider). A call over a limit never reaches the handler: it is refused
//! with [`Error::Rejected`], status 100 (server overloaded) on the
//! wire, and the message names the limit.
//!
//! Limits are set per method with `#[rpc(tps = 100, tps_wait_ms = 100, executes = 8)]`,
//! and per service or for everything on the builders; [`Limits`] holds them and is also
//! the handle that changes them while the server runs (`Server::limits`).
//!
//! | algorithm | type | behaviour |
//! | --- | --- | --- |
//! | `token_bucket` (default) | [`TokenBucket`] | bursts up to the bucket size, then the rate |
//! | `leaky_bucket` | [`LeakyBucket`] | a constant rate, bursts smoothed into an even stream |
//! | `sliding_window` | [`SlidingWindow`] | never more than N in any window |
//! | `fixed_window` | [`FixedWindow`] | N per window, cheapest; up to 2N around a window edge |
//!
//! A limit shared by every provider of a service goes through a [`SharedLimiter`] (the
//! Redis one is `limit::redis::RedisLimiter`, with the `redis` feature).

mod concurrency;
mod fixed_window;
mod layer;
mod leaky_bucket;
#[cfg(feature = "redis")]
pub mod redis;
mod sliding_window;
mod table;
mod token_bucket;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::{Error, Result};

pub use concurrency::{Concurrency, Slot};
pub use fixed_window::FixedWindow;
pub use layer::{LimitLayer, LimitService};
pub use leaky_bucket::LeakyBucket;
pub use sliding_window::{SLOTS, SlidingWindow};
pub use table::{Limits, Rule, Scope};
pub use token_bucket::TokenBucket;

/// The attachment naming the calling application (Dubbo's `remote.application`); a rate
/// limit `per_application` keeps one bucket per value.
pub const APPLICATION_ATTACHMENT: &str = "remote.application";

/// One rate-limiting algorithm: decides about one permit at a time.
pub trait RateLimiter: Send + Sync + 'static {
    /// One permit at `now` for a caller that may wait up to `max_wait` for it.
    ///
    /// Local algorithms decide at once ([`Acquire::Ready`]); a limiter that asks another
    /// process (Redis) answers [`Acquire::Pending`].
    fn acquire(&self, now: Instant, max_wait: Duration) -> Acquire;
}

/// A [`RateLimiter`]'s answer: now, or once a remote check completes.
pub enum Acquire {
    /// Decided.
    Ready(Permit),
    /// Decided once the future completes.
    Pending(BoxFuture<'static, Permit>),
}

/// The outcome of asking for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Take it and go.
    Granted,
    /// Reserved for the caller, who may go at that instant (within its wait).
    GrantedAt(Instant),
    /// Nothing reserved; ask again at that instant (within the caller's wait).
    RetryAt(Instant),
    /// No permit within the caller's wait; the next one frees in about `retry_after`.
    Denied {
        /// Roughly when asking again could succeed.
        retry_after: Duration,
    },
}

/// Makes the limiter of one key (`service.method`, with `@application` when the limit is
/// per application) for limits that live elsewhere, shared by every provider.
pub trait SharedLimiter: Send + Sync + 'static {
    /// The limiter enforcing `limit` for `key`.
    fn limiter(&self, key: &str, limit: &RateLimit) -> Arc<dyn RateLimiter>;
}

/// Which algorithm a [`RateLimit`] runs locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// [`TokenBucket`]: bursts up to the bucket, then the rate.
    #[default]
    TokenBucket,
    /// [`LeakyBucket`]: a constant rate.
    LeakyBucket,
    /// [`SlidingWindow`]: at most N in any window.
    SlidingWindow,
    /// [`FixedWindow`]: at most N per window.
    FixedWindow,
}

impl std::str::FromStr for Algorithm {
    type Err = Error;

    fn from_str(name: &str) -> Result<Algorithm> {
        match name {
            "token_bucket" => Ok(Algorithm::TokenBucket),
            "leaky_bucket" => Ok(Algorithm::LeakyBucket),
            "sliding_window" => Ok(Algorithm::SlidingWindow),
            "fixed_window" => Ok(Algorithm::FixedWindow),
            other => Err(Error::Config(format!(
                "unknown rate-limit algorithm {other:?}; this build has \"token_bucket\", \
                 \"leaky_bucket\", \"sliding_window\" and \"fixed_window\""
            ))),
        }
    }
}

/// A rate limit: `permits` per `period`, how long a caller may wait, and how it is kept.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::limit::{Algorithm, RateLimit};
///
/// let limit = RateLimit::per_second(100)
///     .wait(Duration::from_millis(100))
///     .algorithm(Algorithm::SlidingWindow);
/// assert!(limit.validate().is_ok());
/// assert!(RateLimit::per_second(0).validate().is_err());
/// ```
#[derive(Clone)]
pub struct RateLimit {
    /// Permits per period.
    pub permits: u32,
    /// The period (1 s for Dubbo's `tps`).
    pub period: Duration,
    /// Token bucket size (default: `permits`, one period's worth).
    pub burst: Option<u32>,
    /// How long a caller over the limit may wait for a permit (default 0: refused at once).
    pub max_wait: Duration,
    /// The local algorithm.
    pub algorithm: Algorithm,
    /// One budget per calling application (the [`APPLICATION_ATTACHMENT`]) instead of one
    /// for every caller.
    pub per_application: bool,
    /// Where a limit shared by every provider lives; `None`: in this process.
    pub shared: Option<Arc<dyn SharedLimiter>>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("permits", &self.permits)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .field("max_wait", &self.max_wait)
            .field("algorithm", &self.algorithm)
            .field("per_application", &self.per_application)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl PartialEq for RateLimit {
    fn eq(&self, other: &RateLimit) -> bool {
        let shared = match (&self.shared, &other.shared) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        shared
            && (self.permits, self.period, self.burst, self.max_wait)
                == (other.permits, other.period, other.burst, other.max_wait)
            && self.algorithm == other.algorithm
            && self.per_application == other.per_application
    }
}

impl RateLimit {
    /// `permits` per `period`, token bucket, no waiting.
    pub fn new(permits: u32, period: Duration) -> RateLimit {
        RateLimit {
            permits,
            period,
            burst: None,
            max_wait: Duration::ZERO,
            algorithm: Algorithm::default(),
            per_application: false,
            shared: None,
        }
    }

    /// `permits` per second (Dubbo's `tps`).
    pub fn per_second(permits: u32) -> RateLimit {
        RateLimit::new(permits, Duration::from_secs(1))
    }

    /// Lets a caller over the limit wait up to `wait` for a permit (`tps_wait_ms`).
    pub fn wait(mut self, wait: Duration) -> RateLimit {
        self.max_wait = wait;
        self
    }

    /// The token bucket's size: how many calls may pass at once after a quiet spell.
    pub fn burst(mut self, burst: u32) -> RateLimit {
        self.burst = Some(burst);
        self
    }

    /// Runs `algorithm` (default: token bucket).
    pub fn algorithm(mut self, algorithm: Algorithm) -> RateLimit {
        self.algorithm = algorithm;
        self
    }

    /// Keeps one budget per calling application.
    pub fn per_application(mut self) -> RateLimit {
        self.per_application = true;
        self
    }

    /// Keeps the budget in `shared` (e.g. Redis), one for every provider of the service.
    pub fn shared(mut self, shared: Arc<dyn SharedLimiter>) -> RateLimit {
        self.shared = Some(shared);
        self
    }

    /// Fails with [`Error::Config`] when the limit cannot work: no permits, an empty
    /// period or an empty bucket.
    pub fn validate(&self) -> Result<()> {
        if self.permits == 0 {
            return Err(Error::Config(format!(
                "a rate limit of 0 permits per {:?} admits nothing; give at least 1 (to stop \
                 a method, take its provider offline instead)",
                self.period
            )));
        }
        if self.period.is_zero() {
            return Err(Error::Config(
                "a rate limit needs a period longer than 0".into(),
            ));
        }
        if self.burst == Some(0) {
            return Err(Error::Config(
                "a token bucket of size 0 admits nothing; give a burst of at least 1".into(),
            ));
        }
        Ok(())
    }

    /// A fresh limiter for this limit under `key`.
    pub fn limiter(&self, key: &str) -> Arc<dyn RateLimiter> {
        if let Some(shared) = &self.shared {
            return shared.limiter(key, self);
        }
        match self.algorithm {
            Algorithm::TokenBucket => Arc::new(TokenBucket::new(
                self.permits,
                self.period,
                self.burst.unwrap_or(self.permits),
            )),
            Algorithm::LeakyBucket => Arc::new(LeakyBucket::new(self.permits, self.period)),
            Algorithm::SlidingWindow => Arc::new(SlidingWindow::new(self.permits, self.period)),
            Algorithm::FixedWindow => Arc::new(FixedWindow::new(self.permits, self.period)),
        }
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithm = match self.algorithm {
            Algorithm::TokenBucket => "token bucket",
            Algorithm::LeakyBucket => "leaky bucket",
            Algorithm::SlidingWindow => "sliding window",
            Algorithm::FixedWindow => "fixed window",
        };
        write!(f, "{} calls per {:?}", self.permits, self.period)?;
        if self.shared.is_some() {
            write!(f, " (shared by every provider)")
        } else {
            write!(f, " ({algorithm})")
        }
    }
}

/// Takes one permit from `limiter`, waiting at most `max_wait`; on refusal, roughly how
/// long until one frees.
pub async fn acquire(
    limiter: &dyn RateLimiter,
    max_wait: Duration,
) -> std::result::Result<(), Duration> {
    let now = Instant::now();
    let first = limiter.acquire(now, max_wait);
    acquire_from(limiter, first, now, now + max_wait).await
}

/// [`acquire`], given the limiter's `first` answer, asked at `now`, for a caller who may
/// wait until `deadline`.
pub(crate) async fn acquire_from(
    limiter: &dyn RateLimiter,
    first: Acquire,
    mut now: Instant,
    deadline: Instant,
) -> std::result::Result<(), Duration> {
    let mut answer = Some(first);
    loop {
        let answer = match answer.take() {
            Some(answer) => answer,
            None => limiter.acquire(now, deadline.saturating_duration_since(now)),
        };
        let permit = match answer {
            Acquire::Ready(permit) => permit,
            Acquire::Pending(check) => check.await,
        };
        match permit {
            Permit::Granted => return Ok(()),
            Permit::GrantedAt(at) => {
                tokio::time::sleep_until(at).await;
                return Ok(());
            }
            Permit::RetryAt(at) if at <= deadline => tokio::time::sleep_until(at).await,
            Permit::RetryAt(at) => return Err(at.saturating_duration_since(now)),
            Permit::Denied { retry_after } => return Err(retry_after),
        }
        now = Instant::now();
    }
}

/// Locks a limiter's state. Only arithmetic runs under these locks, so a poisoned one
/// still holds a valid state.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
