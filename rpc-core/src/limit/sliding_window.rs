//! Sliding-window counter: a ring of sub-window counts.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Acquire, Permit, RateLimiter, lock};

/// Sub-windows per window: the window slides in steps of a tenth of its length.
pub const SLOTS: u32 = 10;

/// At most `permits` calls in any window of `period`, wherever it starts.
///
/// The window is cut into [`SLOTS`] slots; a call is admitted when the slots that a
/// window ending now can touch (this one and the [`SLOTS`] before it) hold fewer than
/// `permits` calls. Counting one slot more than the window keeps the promise exact for
/// every window, at the price of admitting slightly less than the limit at a steady rate.
#[derive(Debug)]
pub struct SlidingWindow {
    permits: u32,
    slot: Duration,
    state: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    origin: Option<Instant>,
    /// Index (slots since `origin`) of the newest slot in `counts`.
    newest: u64,
    /// Counts of slots `newest - SLOTS ..= newest`, by index modulo the length.
    counts: [u32; SLOTS as usize + 1],
}

impl SlidingWindow {
    /// `permits` per `period` (at least 1 each).
    pub fn new(permits: u32, period: Duration) -> SlidingWindow {
        SlidingWindow {
            permits: permits.max(1),
            slot: (period / SLOTS).max(Duration::from_nanos(1)),
            state: Mutex::new(Ring {
                origin: None,
                newest: 0,
                counts: [0; SLOTS as usize + 1],
            }),
        }
    }
}

impl RateLimiter for SlidingWindow {
    fn acquire(&self, now: Instant, max_wait: Duration) -> Acquire {
        let mut ring = lock(&self.state);
        let origin = *ring.origin.get_or_insert(now);
        let len = ring.counts.len() as u64;
        let current = ((now - origin).as_nanos() / self.slot.as_nanos()) as u64;
        // Clear the slots that fell out of the ring since the last call.
        let stale = current.saturating_sub(ring.newest).min(len);
        for step in 1..=stale {
            let index = ((current - stale + step) % len) as usize;
            ring.counts[index] = 0;
        }
        ring.newest = ring.newest.max(current);
        let total: u32 = ring.counts.iter().sum();
        Acquire::Ready(if total < self.permits {
            ring.counts[(current % len) as usize] += 1;
            Permit::Granted
        } else {
            // The oldest counted slot leaves the ring at the start of the next slot.
            let slot_ns = self.slot.as_nanos() as u64;
            let next = origin + Duration::from_nanos(slot_ns.saturating_mul(current + 1));
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
