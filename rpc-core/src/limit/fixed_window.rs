//! Fixed-window counter: the cheapest limit, with the known edge burst.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Acquire, Permit, RateLimiter, lock};

/// At most `permits` calls per window of `period`, windows starting at the first call.
/// Up to twice the limit can pass around a window edge (the end of one window and the
/// start of the next); [`super::SlidingWindow`] closes that gap.
#[derive(Debug)]
pub struct FixedWindow {
    permits: u32,
    period: Duration,
    state: Mutex<Option<(Instant, u32)>>,
}

impl FixedWindow {
    /// `permits` per `period` (at least 1 each).
    pub fn new(permits: u32, period: Duration) -> FixedWindow {
        FixedWindow {
            permits: permits.max(1),
            period: period.max(Duration::from_nanos(1)),
            state: Mutex::new(None),
        }
    }
}

impl RateLimiter for FixedWindow {
    fn acquire(&self, now: Instant, max_wait: Duration) -> Acquire {
        let mut state = lock(&self.state);
        let (start, count) = state.get_or_insert((now, 0));
        if now >= *start + self.period {
            // Windows stay aligned to the first one: skip the whole periods that passed.
            let period = self.period.as_nanos();
            let skipped = (now - *start).as_nanos() / period * period;
            *start += Duration::from_nanos(skipped as u64);
            *count = 0;
        }
        Acquire::Ready(if *count < self.permits {
            *count += 1;
            Permit::Granted
        } else {
            let next = *start + self.period;
            if next - now <= max_wait {
                Permit::RetryAt(next)
            } else {
                Permit::Denied {
                    retry_after: next - now,
                }
            }
        })
    }
}
