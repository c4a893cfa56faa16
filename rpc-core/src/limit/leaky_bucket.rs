//! Leaky bucket, as a queue: calls leave at a constant rate, whatever their arrival.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Acquire, Permit, RateLimiter, lock};

/// Lets one call through every `period / permits`: a burst is smoothed into an even
/// stream (callers that may wait get the next free slot), and what would wait longer than
/// allowed is refused. Unlike [`super::TokenBucket`] it never admits a burst.
#[derive(Debug)]
pub struct LeakyBucket {
    interval: Duration,
    /// The earliest instant the next call may leave.
    next_free: Mutex<Option<Instant>>,
}

impl LeakyBucket {
    /// `permits` per `period` (at least 1).
    pub fn new(permits: u32, period: Duration) -> LeakyBucket {
        LeakyBucket {
            interval: period / permits.max(1),
            next_free: Mutex::new(None),
        }
    }
}

impl RateLimiter for LeakyBucket {
    fn acquire(&self, now: Instant, max_wait: Duration) -> Acquire {
        let mut next_free = lock(&self.next_free);
        let slot = next_free.map_or(now, |free| free.max(now));
        let wait = slot - now;
        Acquire::Ready(if wait > max_wait {
            Permit::Denied { retry_after: wait }
        } else {
            *next_free = Some(slot + self.interval);
            if wait.is_zero() {
                Permit::Granted
            } else {
                Permit::GrantedAt(slot)
            }
        })
    }
}
