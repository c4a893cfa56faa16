//! A concurrency cap (`executes`, `actives`) whose limit can change while calls run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// At most `limit` holders at once. Taking a slot is one atomic add; a caller that may
/// wait sleeps on a notification, so nothing is queued beyond the waiting futures
/// themselves (each bounded by its call's deadline).
#[derive(Debug)]
pub struct Concurrency {
    running: AtomicUsize,
    limit: AtomicUsize,
    released: Notify,
}

/// A slot of a [`Concurrency`]; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<Concurrency>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.running.fetch_sub(1, Ordering::AcqRel);
        self.owner.released.notify_one();
    }
}

impl Concurrency {
    /// A cap of `limit` holders.
    pub fn new(limit: usize) -> Arc<Concurrency> {
        Arc::new(Concurrency {
            running: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            released: Notify::new(),
        })
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the cap; holders above a lowered cap finish, newcomers wait or are refused.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        self.released.notify_waiters();
    }

    /// Slots taken now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// A slot if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut running = self.running.load(Ordering::Relaxed);
        loop {
            if running >= limit {
                return None;
            }
            match self.running.compare_exchange_weak(
                running,
                running + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Slot {
                        owner: self.clone(),
                    });
                }
                Err(now) => running = now,
            }
        }
    }

    /// A slot, waiting for one to free until `deadline`; `None` when none did.
    pub async fn acquire_until(self: &Arc<Self>, deadline: Instant) -> Option<Slot> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a slot freed in between still wakes us.
            released.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.try_acquire();
            }
        }
    }
}
