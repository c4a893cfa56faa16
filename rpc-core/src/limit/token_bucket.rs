//! Token bucket, kept as GCRA (the generic cell rate algorithm): one timestamp instead of
//! a token count, so the arithmetic is exact integers and a refill needs no timer.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Acquire, Permit, RateLimiter, lock};

/// Admits up to `burst` calls at once, then `permits` per `period`, evenly. A caller that
/// may wait reserves the next token (the bucket goes into debt), so waiting callers are
/// served in order and none is woken for nothing.
#[derive(Debug)]
pub struct TokenBucket {
    /// Time one token takes to refill.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: `burst` intervals.
    tolerance: Duration,
    /// The theoretical arrival time of the next call; `None` before the first call (a
    /// full bucket).
    tat: Mutex<Option<Instant>>,
}

impl TokenBucket {
    /// `permits` per `period` with a bucket of `burst` tokens (both at least 1; the
    /// builders check that before they get here).
    pub fn new(permits: u32, period: Duration, burst: u32) -> TokenBucket {
        let interval = period / permits.max(1);
        TokenBucket {
            interval,
            tolerance: interval * burst.max(1),
            tat: Mutex::new(None),
        }
    }
}

impl RateLimiter for TokenBucket {
    fn acquire(&self, now: Instant, max_wait: Duration) -> Acquire {
        let mut tat = lock(&self.tat);
        let start = tat.map_or(now, |tat| tat.max(now));
        let next = start + self.interval;
        // The call may go when the bucket would not overflow: next - tolerance <= now.
        let allowed_at = next.checked_sub(self.tolerance).unwrap_or(now).max(now);
        let wait = allowed_at - now;
        Acquire::Ready(if wait.is_zero() {
            *tat = Some(next);
            Permit::Granted
        } else if wait <= max_wait {
            *tat = Some(next);
            Permit::GrantedAt(allowed_at)
        } else {
            Permit::Denied { retry_after: wait }
        })
    }
}
