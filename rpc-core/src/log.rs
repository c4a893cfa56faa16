//! Warnings that hostile peers could multiply (bad frames, refused connections): at most
//! one line per second per kind, with the count of what was held back. Shared by the
//! transports and the provider's security checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A warning of one kind, logged at most once per second.
#[derive(Debug, Default)]
pub struct RateLimited {
    /// The second (since the epoch) of the last line written.
    last_second: AtomicU64,
    /// Events since that line.
    held_back: AtomicU64,
}

impl RateLimited {
    /// A warning that has not been logged yet.
    pub const fn new() -> RateLimited {
        RateLimited {
            last_second: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// Calls `log` with the number of events held back since the last line, unless a line
    /// was already written this second.
    pub fn warn(&self, log: impl FnOnce(u64)) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if last != now
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log(self.held_back.swap(0, Ordering::Relaxed));
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_writes_one_line_and_counts_the_rest() {
        let limited = RateLimited::new();
        let mut lines = Vec::new();
        for _ in 0..100 {
            limited.warn(|held_back| lines.push(held_back));
        }
        // A second boundary may fall inside the burst: at most two lines.
        assert!(!lines.is_empty() && lines.len() <= 2, "{lines:?}");
        let held_back = limited.held_back.load(Ordering::Relaxed);
        assert_eq!(
            lines.len() as u64 + lines.iter().sum::<u64>() + held_back,
            100
        );
    }
}
