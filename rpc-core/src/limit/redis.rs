//! A rate limit shared by every provider of a service, kept in Redis.
//!
//! Each key is one GCRA cell (the token bucket's theoretical arrival time, in Redis
//! server microseconds) updated by a Lua script, so a check is one round trip and
//! atomic however many providers ask at once; Redis's own clock is used, so the
//! providers' clocks need not agree.
//!
//! When Redis cannot be reached the limiter applies its [`Fallback`] and says so once in
//! the log; it tries Redis again at most every [`PROBE_EVERY`], and once a check succeeds
//! the shared limit applies again (logged once too).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::{Acquire, Permit, RateLimit, RateLimiter, SharedLimiter, lock};
use crate::{Error, Result};

/// How often an unreachable Redis is tried again (by one call; the others use the
/// fallback meanwhile).
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How long one check may take before Redis counts as unreachable for it.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(100);

/// GCRA on Redis time. KEYS[1]: the cell. ARGV: interval and tolerance (burst x interval)
/// in microseconds, and how long the caller may wait. Returns {granted, wait_us}.
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
local wait = next - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1000)
return {1, wait}
";

/// What a limiter does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// Admit every call (availability over protection).
    Open,
    /// Refuse every call (protection over availability).
    Closed,
    /// Enforce this provider's share locally: the limit divided by the number of
    /// providers ([`RedisLimiter::set_providers`]).
    #[default]
    Local,
}

/// Makes Redis-backed limiters, one per limited method (see [`RateLimit::shared`]).
///
/// ```no_run
/// # fn demo() -> rpc_core::Result<()> {
/// use rpc_core::limit::RateLimit;
/// use rpc_core::limit::redis::{Fallback, RedisLimiter};
///
/// let redis = RedisLimiter::new("redis://127.0.0.1:6379", "rpc:limit:", Fallback::Local)?;
/// redis.set_providers(3);
/// let limit = RateLimit::per_second(300).shared(redis);
/// # let _ = limit; Ok(()) }
/// ```
pub struct RedisLimiter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.shared.prefix)
            .field("fallback", &self.shared.fallback)
            .field("reachable", &self.is_reachable())
            .finish_non_exhaustive()
    }
}

struct Shared {
    client: redis::Client,
    prefix: String,
    fallback: Fallback,
    script: redis::Script,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// False from the first failed check until one succeeds.
    reachable: AtomicBool,
    /// While unreachable: when (ms since `origin`) the next call may try Redis.
    next_probe_ms: AtomicU64,
    origin: Instant,
    providers: AtomicUsize,
    /// Calls decided by the fallback, for the curious (tests, the admin page).
    fallbacks: AtomicU64,
}

impl RedisLimiter {
    /// Limiters on the Redis at `url` (`redis://host:port[/db]`), keys starting with
    /// `prefix`. Connects lazily, on the first check. Fails with [`Error::Config`] on a
    /// malformed URL.
    pub fn new(url: &str, prefix: &str, fallback: Fallback) -> Result<Arc<RedisLimiter>> {
        let client = redis::Client::open(url)
            .map_err(|error| Error::Config(format!("redis url {url:?}: {error}")))?;
        Ok(Arc::new(RedisLimiter {
            shared: Arc::new(Shared {
                client,
                prefix: prefix.to_owned(),
                fallback,
                script: redis::Script::new(SCRIPT),
                connection: Mutex::new(None),
                reachable: AtomicBool::new(true),
                next_probe_ms: AtomicU64::new(0),
                origin: Instant::now(),
                providers: AtomicUsize::new(1),
                fallbacks: AtomicU64::new(0),
            }),
        }))
    }

    /// How many providers share the limit, for the [`Fallback::Local`] share (default 1).
    pub fn set_providers(&self, providers: usize) {
        self.shared
            .providers
            .store(providers.max(1), Ordering::Relaxed);
    }

    /// Keeps the provider count of [`RedisLimiter::set_providers`] up to date from
    /// `registry`: a task follows `service`'s providers (an empty push keeps the last
    /// count, as a registry outage looks like one) and ends with this limiter.
    pub async fn follow(
        self: &Arc<Self>,
        registry: Arc<dyn registry::Registry>,
        service: &str,
    ) -> Result<()> {
        let mut subscription = registry.subscribe(service).await?;
        let limiter = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(update) = subscription.next().await {
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                if let registry::Update::Providers(urls) = update
                    && !urls.is_empty()
                {
                    limiter.set_providers(urls.len());
                }
            }
        });
        Ok(())
    }

    /// How many providers the [`Fallback::Local`] share divides the limit by.
    pub fn providers(&self) -> usize {
        self.shared.providers.load(Ordering::Relaxed)
    }

    /// False while Redis is unreachable (the fallback applies).
    pub fn is_reachable(&self) -> bool {
        self.shared.reachable.load(Ordering::Relaxed)
    }

    /// Calls decided by the fallback so far.
    pub fn fallback_decisions(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }
}

impl SharedLimiter for RedisLimiter {
    fn limiter(&self, key: &str, limit: &RateLimit) -> Arc<dyn RateLimiter> {
        let permits = limit.permits.max(1);
        let interval = limit.period / permits;
        let burst = limit.burst.unwrap_or(permits).max(1);
        Arc::new(KeyLimiter {
            state: Arc::new(KeyState {
                shared: self.shared.clone(),
                key: format!("{}{key}", self.shared.prefix),
                interval_us: interval.as_micros().max(1) as u64,
                tolerance_us: (interval * burst).as_micros().max(1) as u64,
                local_limit: RateLimit {
                    shared: None,
                    ..limit.clone()
                },
                local: Mutex::new(None),
            }),
        })
    }
}

struct KeyLimiter {
    state: Arc<KeyState>,
}

struct KeyState {
    shared: Arc<Shared>,
    key: String,
    interval_us: u64,
    tolerance_us: u64,
    /// The limit as configured, kept in this process, for the local share.
    local_limit: RateLimit,
    /// The local share's limiter and the provider count it was made for.
    local: Mutex<Option<(usize, Arc<dyn RateLimiter>)>>,
}

impl RateLimiter for KeyLimiter {
    fn acquire(&self, now: Instant, max_wait: Duration) -> Acquire {
        let shared = &self.state.shared;
        if !shared.reachable.load(Ordering::Relaxed) && !shared.claim_probe(now) {
            return Acquire::Ready(self.state.fallback(now, max_wait));
        }
        let state = self.state.clone();
        Acquire::Pending(Box::pin(async move { state.check(now, max_wait).await }))
    }
}

impl Shared {
    /// True for the one call that may try an unreachable Redis now.
    fn claim_probe(&self, now: Instant) -> bool {
        let at = (now - self.origin).as_millis() as u64;
        let due = self.next_probe_ms.load(Ordering::Relaxed);
        at >= due
            && self
                .next_probe_ms
                .compare_exchange(
                    due,
                    at + PROBE_EVERY.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(connection) = &*lock(&self.connection) {
            return Ok(connection.clone());
        }
        // Connecting happens outside the lock: calls racing here may each connect once,
        // and the last one's connection stays.
        let connection = self.client.get_multiplexed_async_connection().await?;
        *lock(&self.connection) = Some(connection.clone());
        Ok(connection)
    }

    fn failed(&self, now: Instant, error: &str) {
        self.next_probe_ms.store(
            (now - self.origin + PROBE_EVERY).as_millis() as u64,
            Ordering::Relaxed,
        );
        if self.reachable.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                prefix = %self.prefix,
                fallback = ?self.fallback,
                providers = self.providers.load(Ordering::Relaxed),
                error,
                "redis unreachable: shared rate limits fall back until it is back"
            );
        }
    }

    fn succeeded(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            tracing::info!(prefix = %self.prefix, "redis reachable again: shared rate limits apply");
        }
    }
}

impl KeyState {
    async fn check(&self, now: Instant, max_wait: Duration) -> Permit {
        let shared = &self.shared;
        let attempt = async {
            let mut connection = shared.connection().await?;
            shared
                .script
                .key(&self.key)
                .arg(self.interval_us)
                .arg(self.tolerance_us)
                .arg(max_wait.as_micros() as u64)
                .invoke_async::<(i64, i64)>(&mut connection)
                .await
        };
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, attempt).await;
        match outcome {
            Ok(Ok((granted, wait_us))) => {
                shared.succeeded();
                let wait = Duration::from_micros(wait_us.max(0) as u64);
                match (granted, wait.is_zero()) {
                    (1, true) => Permit::Granted,
                    (1, false) => Permit::GrantedAt(Instant::now() + wait),
                    _ => Permit::Denied { retry_after: wait },
                }
            }
            Ok(Err(error)) => {
                // A broken connection is replaced on the next try.
                *lock(&shared.connection) = None;
                shared.failed(now, &error.to_string());
                self.fallback(Instant::now(), max_wait)
            }
            Err(_) => {
                *lock(&shared.connection) = None;
                shared.failed(now, &format!("no answer within {CHECK_TIMEOUT:?}"));
                self.fallback(Instant::now(), max_wait)
            }
        }
    }

    fn fallback(&self, now: Instant, max_wait: Duration) -> Permit {
        let shared = &self.shared;
        shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        match shared.fallback {
            Fallback::Open => Permit::Granted,
            Fallback::Closed => Permit::Denied {
                retry_after: PROBE_EVERY,
            },
            Fallback::Local => {
                let providers = shared.providers.load(Ordering::Relaxed).max(1);
                let limiter = {
                    let mut local = lock(&self.local);
                    match &*local {
                        Some((count, limiter)) if *count == providers => limiter.clone(),
                        _ => {
                            let limit = &self.local_limit;
                            let share = (limit.permits as usize).div_ceil(providers).max(1) as u32;
                            let burst = limit
                                .burst
                                .map(|burst| (burst as usize).div_ceil(providers).max(1) as u32);
                            let limiter = RateLimit {
                                permits: share,
                                burst,
                                ..limit.clone()
                            }
                            .limiter("");
                            *local = Some((providers, limiter.clone()));
                            limiter
                        }
                    }
                };
                match limiter.acquire(now, max_wait) {
                    Acquire::Ready(permit) => permit,
                    // Local algorithms decide at once; anything else is refused rather
                    // than waited on from a synchronous path.
                    Acquire::Pending(_) => Permit::Denied {
                        retry_after: PROBE_EVERY,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_provider_count_follows_the_registry() {
        let registry = registry::connect("memory://redis-limiter-follow")
            .await
            .unwrap();
        let limiter = RedisLimiter::new("redis://127.0.0.1:1", "t:", Fallback::Local).unwrap();
        for port in [1, 2, 3] {
            let url = registry::ProviderUrl::new("tcp", &format!("127.0.0.1:{port}"), "demo.S");
            registry.register(&url).await.unwrap();
        }
        limiter.follow(registry.clone(), "demo.S").await.unwrap();
        for _ in 0..500 {
            if limiter.providers() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(limiter.providers(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_the_local_share() {
        // Port 1 refuses connections: every check fails fast.
        let limiter = RedisLimiter::new("redis://127.0.0.1:1", "t:", Fallback::Local).unwrap();
        limiter.set_providers(2);
        let limit = RateLimit::per_second(10).burst(4);
        let key = limiter.limiter("demo.S.m", &limit);
        let mut granted = 0;
        for _ in 0..10 {
            if crate::limit::acquire(key.as_ref(), Duration::ZERO)
                .await
                .is_ok()
            {
                granted += 1;
            }
        }
        assert!(!limiter.is_reachable());
        assert_eq!(granted, 2, "the local share: a bucket of 4 / 2 providers");
        assert_eq!(limiter.fallback_decisions(), 10);
        let closed = RedisLimiter::new("redis://127.0.0.1:1", "t:", Fallback::Closed).unwrap();
        let key = closed.limiter("demo.S.m", &limit);
        assert!(
            crate::limit::acquire(key.as_ref(), Duration::ZERO)
                .await
                .is_err()
        );
        assert!(RedisLimiter::new("not a url", "t:", Fallback::Open).is_err());
    }
}
