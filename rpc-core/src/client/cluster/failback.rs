//! Failback: a failed call is answered with the return type's default at once and retried
//! in the background, as Dubbo's `FailbackCluster` does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Policy, attempt_of};
use crate::client::directory::Directory;
use crate::client::loadbalance::Picker;
use crate::request::Name;
use crate::{Request, Result};

/// How failback retries failed calls in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailbackPolicy {
    /// Time between retry rounds (default 5 s, as in Dubbo).
    pub interval: Duration,
    /// Retries per failed call before it is dropped (default 3).
    pub retries: u32,
    /// Failed calls waiting at most; more are dropped and logged (default 1024).
    pub capacity: usize,
}

impl Default for FailbackPolicy {
    fn default() -> FailbackPolicy {
        FailbackPolicy {
            interval: Duration::from_secs(5),
            retries: 3,
            capacity: 1024,
        }
    }
}

impl FailbackPolicy {
    /// The same policy retrying every `interval`.
    pub fn interval(mut self, interval: Duration) -> FailbackPolicy {
        self.interval = interval;
        self
    }

    /// The same policy with `retries` per call.
    pub fn retries(mut self, retries: u32) -> FailbackPolicy {
        self.retries = retries;
        self
    }

    /// The same policy holding at most `capacity` failed calls.
    pub fn capacity(mut self, capacity: usize) -> FailbackPolicy {
        self.capacity = capacity;
        self
    }
}

struct Waiting {
    request: Request,
    policy: Policy,
    retries_left: u32,
}

/// The failed calls of one client, and the task that retries them. The task holds the
/// queue weakly: it ends once the client (every clone of its cluster) is gone.
pub(super) struct FailbackQueue {
    settings: FailbackPolicy,
    service: Name,
    directory: Arc<dyn Directory>,
    waiting: Mutex<VecDeque<Waiting>>,
    started: std::sync::Once,
}

impl FailbackQueue {
    pub(super) fn new(
        settings: FailbackPolicy,
        service: Name,
        directory: Arc<dyn Directory>,
    ) -> FailbackQueue {
        FailbackQueue {
            settings,
            service,
            directory,
            waiting: Mutex::new(VecDeque::new()),
            started: std::sync::Once::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a failed call for retries; drops (and logs) it when the queue is full.
    pub(super) fn push(self: &Arc<Self>, request: Request, policy: Policy) {
        if self.settings.retries == 0 {
            return;
        }
        let method = request.method.name;
        {
            let mut waiting = self.lock();
            if waiting.len() >= self.settings.capacity {
                tracing::warn!(service = %self.service, method, capacity = self.settings.capacity,
                    "failback queue full, dropping the failed call");
                return;
            }
            waiting.push_back(Waiting {
                request,
                policy,
                retries_left: self.settings.retries,
            });
        }
        self.started.call_once(|| {
            tokio::spawn(retry_loop(Arc::downgrade(self), self.settings.interval));
        });
    }
}

async fn retry_loop(queue: Weak<FailbackQueue>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(queue) = queue.upgrade() else {
            return;
        };
        let round: Vec<Waiting> = queue.lock().drain(..).collect();
        for waiting in round {
            retry(&queue, waiting).await;
        }
    }
}

/// One retry of one call, under a fresh deadline of the call's own budget.
async fn retry(queue: &Arc<FailbackQueue>, mut waiting: Waiting) {
    let providers = queue.directory.providers();
    let mut request = waiting.request.clone();
    request.deadline = Instant::now() + request.timeout;
    let attempt = queue.settings.retries - waiting.retries_left + 1;
    let outcome: Result<()> = {
        let mut picker = Picker::new(&providers, &request, waiting.policy.balancer.as_ref());
        match picker.next() {
            Some(provider) => {
                let call = provider.call(attempt_of(&request, provider, attempt));
                match tokio::time::timeout_at(request.deadline.into(), call).await {
                    Ok(result) => result.map(|_| ()),
                    Err(_) => Err(crate::Error::Timeout(request.timeout)),
                }
            }
            None => Err(crate::Error::NoProvider(queue.service.to_string())),
        }
    };
    let method = request.method.name;
    match outcome {
        Ok(()) => {
            tracing::debug!(service = %queue.service, method, attempt, "failback retry succeeded")
        }
        Err(error) if waiting.retries_left > 1 => {
            tracing::debug!(service = %queue.service, method, attempt, %error, "failback retry failed");
            waiting.retries_left -= 1;
            queue.lock().push_back(waiting);
        }
        Err(error) => tracing::warn!(service = %queue.service, method, attempt, %error,
            "failback gave up on the call"),
    }
}
