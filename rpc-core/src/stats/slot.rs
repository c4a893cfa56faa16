//! Which shard of a method's counters the calling thread writes, and how.
//!
//! A thread that counts claims one of [`OWNED`] slots for its lifetime and gives it back
//! when it exits. The shard of an owned slot has a single writer, so a count is a plain
//! load and store of the atomic (no locked instruction, no cache line shared with another
//! writer): about half the cost of the read-modify-write operations a shared shard needs.
//! Threads beyond the first [`OWNED`] share the last shard, with read-modify-writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Slots threads can own; more threads than this counting at once is unusual for an RPC
/// process (tokio's workers plus a few others).
pub(super) const OWNED: usize = 64;

/// Shards per method: one per owned slot and the shared one.
pub(super) const SHARDS: usize = OWNED + 1;

static TAKEN: [AtomicBool; OWNED] = [const { AtomicBool::new(false) }; OWNED];

/// A thread's claim on a slot, released when the thread exits.
struct Claim(usize);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(taken) = TAKEN.get(self.0) {
            // Release: the next owner sees this thread's last counts before adding to them.
            taken.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim(
        TAKEN
            .iter()
            .position(|taken| !taken.swap(true, Ordering::Acquire))
            .unwrap_or(OWNED),
    );
}

/// The calling thread's slot: below [`OWNED`] when it owns one, else `OWNED` (the shared
/// shard; also while the thread's locals are being torn down).
pub(super) fn current() -> usize {
    CLAIM.try_with(|claim| claim.0).unwrap_or(OWNED)
}

/// How a thread writes the shard of its slot.
#[derive(Clone, Copy)]
pub(super) struct Writer {
    owned: bool,
}

impl Writer {
    pub(super) fn of(slot: usize) -> Writer {
        Writer {
            owned: slot < OWNED,
        }
    }

    /// Adds `n` (wrapping) to `counter`.
    #[inline]
    pub(super) fn add(self, counter: &AtomicU64, n: u64) {
        if self.owned {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Raises `counter` to `n` if it is lower.
    #[inline]
    pub(super) fn max(self, counter: &AtomicU64, n: u64) {
        // A load first either way: a new maximum is rare.
        if n > counter.load(Ordering::Relaxed) {
            if self.owned {
                counter.store(n, Ordering::Relaxed);
            } else {
                counter.fetch_max(n, Ordering::Relaxed);
            }
        }
    }

    /// Replaces `counter`'s value `current` with `new`; when another writer changed it
    /// meanwhile (shared shard only), adds `fallback` to what is there instead.
    #[inline]
    pub(super) fn replace(self, counter: &AtomicU64, current: u64, new: u64, fallback: u64) {
        if self.owned {
            counter.store(new, Ordering::Relaxed);
        } else if counter
            .compare_exchange(current, new, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            counter.fetch_add(fallback, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_slot_and_gives_it_back_on_exit() {
        let mine = current();
        assert_eq!(current(), mine);
        let theirs = std::thread::spawn(current).join().unwrap();
        assert_ne!(theirs, mine);
        if theirs < OWNED {
            assert!(!TAKEN[theirs].load(Ordering::Acquire), "released on exit");
        }
    }

    #[test]
    fn owned_and_shared_writers_add_alike() {
        let counter = AtomicU64::new(5);
        Writer::of(0).add(&counter, 3);
        Writer::of(OWNED).add(&counter, u64::MAX);
        assert_eq!(counter.load(Ordering::Relaxed), 7);
        Writer::of(0).max(&counter, 4);
        Writer::of(OWNED).max(&counter, 9);
        assert_eq!(counter.load(Ordering::Relaxed), 9);
        Writer::of(OWNED).replace(&counter, 1, 100, 2);
        assert_eq!(
            counter.load(Ordering::Relaxed),
            11,
            "changed meanwhile: added"
        );
        Writer::of(0).replace(&counter, 11, 100, 2);
        assert_eq!(counter.load(Ordering::Relaxed), 100);
    }
}
