//! The consumer's traffic control: its own rate limits, `actives` per provider, and the
//! circuit breakers, all reached through [`Traffic`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::time::Instant;

use super::breaker::{Breaker, BreakerConfig, BreakerSnapshot, Pass};
use super::provider::Provider;
use crate::descriptor::MethodDescriptor;
use crate::limit::{Concurrency, Limits, acquire};
use crate::{Error, Request, Response, Result};

/// A client's traffic control, and the handle to change it while the client runs
/// (`Client::traffic`): rate limits on its own calls ([`Traffic::limits`], rules with
/// `rate` and `actives`), the circuit breaker settings, and the breakers' states.
#[derive(Clone)]
pub struct Traffic {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("limits", &self.inner.limits)
            .field("breaker", &self.breaker())
            .finish_non_exhaustive()
    }
}

struct Inner {
    limits: Limits,
    breaker: RwLock<Option<BreakerConfig>>,
    /// A breaker is configured: every attempt goes through [`Traffic::call`].
    watching: AtomicBool,
    /// Breakers open or half-open: while 0 the cluster has nothing to skip.
    not_closed: Arc<AtomicUsize>,
    /// Per provider address, per method (descriptor address): breaker and actives. Every
    /// guard is here; those of the service's own methods are also kept in the provider's
    /// statistics, where a call finds them without a lock or a reference count.
    guards: RwLock<HashMap<Arc<str>, MethodGuards>>,
    /// The methods of the service the client was built for.
    methods: OnceLock<&'static [MethodDescriptor]>,
}

/// One provider's guards, by method descriptor address.
type MethodGuards = HashMap<usize, Arc<Guard>>;

/// The breaker and `actives` count of one provider and method.
#[derive(Debug)]
pub(crate) struct Guard {
    /// `method on address`, for messages and logs.
    label: String,
    method: &'static str,
    breaker: Breaker,
    actives: Arc<Concurrency>,
}

impl Traffic {
    pub(crate) fn new(limits: Limits, breaker: Option<BreakerConfig>) -> Traffic {
        Traffic {
            inner: Arc::new(Inner {
                limits,
                watching: AtomicBool::new(breaker.is_some()),
                breaker: RwLock::new(breaker),
                not_closed: Arc::default(),
                guards: RwLock::default(),
                methods: OnceLock::new(),
            }),
        }
    }

    /// The client's limits: rate limits on its own calls and `actives` caps. Change
    /// them here at run time.
    pub fn limits(&self) -> Limits {
        self.inner.limits.clone()
    }

    /// The circuit breaker settings; `None`: no breaker.
    pub fn breaker(&self) -> Option<BreakerConfig> {
        self.inner
            .breaker
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the circuit breaker settings of every provider and method (`None` switches
    /// breakers off and closes them). Fails with [`Error::Config`], changing nothing, on
    /// a threshold that cannot work.
    pub fn set_breaker(&self, config: Option<BreakerConfig>) -> Result<()> {
        if let Some(config) = &config {
            config.validate()?;
        }
        *self
            .inner
            .breaker
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config.clone();
        if config.is_some() {
            self.inner.watching.store(true, Ordering::Release);
        }
        for guard in self.guards().iter().flat_map(|(_, methods)| methods) {
            guard.breaker.configure(config.clone());
        }
        Ok(())
    }

    /// Every breaker made so far (one per provider and method called): state and how
    /// often it changed.
    pub fn breakers(&self) -> Vec<BreakerSnapshot> {
        let mut all: Vec<BreakerSnapshot> = self
            .guards()
            .iter()
            .flat_map(|(address, methods)| {
                methods.iter().map(move |guard| {
                    let (opened, half_opened, closed) = guard.breaker.counts();
                    BreakerSnapshot {
                        provider: address.to_string(),
                        method: guard.method,
                        state: guard.breaker.state(),
                        opened,
                        half_opened,
                        closed,
                    }
                })
            })
            .collect();
        all.sort_by(|a, b| (&a.provider, a.method).cmp(&(&b.provider, b.method)));
        all
    }

    fn guards(&self) -> Vec<(Arc<str>, Vec<Arc<Guard>>)> {
        self.inner
            .guards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(address, methods)| (address.clone(), methods.values().cloned().collect()))
            .collect()
    }

    /// True when attempts need no guard: no breaker and no limit anywhere.
    pub(crate) fn is_idle(&self) -> bool {
        !self.inner.watching.load(Ordering::Acquire) && self.inner.limits.is_idle()
    }

    pub(crate) fn watch(&self, methods: &'static [MethodDescriptor]) {
        self.inner.limits.watch(methods);
        let _ = self.inner.methods.set(methods);
    }

    /// The client's own rate limit for `request`, waiting within the limit's wait and the
    /// call's deadline.
    pub(crate) async fn admit_call(&self, request: &Request) -> Result<()> {
        let Some(limits) = self.inner.limits.resolve(&request.service, request.method) else {
            return Ok(());
        };
        let Some(rate) = &limits.rate else {
            return Ok(());
        };
        let application = request
            .attachments
            .get(crate::limit::APPLICATION_ATTACHMENT);
        let limiter = rate.limiter(&limits.label, application);
        let max_wait = rate.limit.max_wait.min(
            request
                .deadline
                .saturating_duration_since(std::time::Instant::now()),
        );
        match acquire(limiter.as_ref(), max_wait).await {
            Ok(()) => Ok(()),
            Err(retry_after) => Err(Error::Rejected(format!(
                "client rate limit of {} exceeded: {}, waited {:?}; next permit in about \
                 {retry_after:?}",
                limits.label, rate.limit, rate.limit.max_wait
            ))),
        }
    }

    /// True when the load balancer should pass `provider` over for `method`: its breaker
    /// is open.
    pub(crate) fn skips(&self, provider: &Provider, method: &'static MethodDescriptor) -> bool {
        if self.inner.not_closed.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.guard(provider, method).breaker.is_open(Instant::now())
    }

    /// One attempt on `provider` through its breaker and `actives` cap.
    pub(crate) async fn call(&self, provider: &Provider, request: Request) -> Result<Response> {
        let guard = self.guard(provider, request.method);
        if let Some(limits) = self.inner.limits.resolve(&request.service, request.method) {
            let limit = limits.actives.map_or(usize::MAX, |n| n as usize);
            if guard.actives.limit() != limit {
                guard.actives.set_limit(limit);
            }
        }
        let pass = guard.breaker.admit(Instant::now, &guard.label)?;
        let mut probe = ProbeGuard {
            breaker: &guard.breaker,
            pass,
            done: false,
        };
        // Dubbo's `actives`: wait for a slot, as long as the call's deadline allows.
        let _slot = if guard.actives.limit() == usize::MAX {
            None
        } else {
            match guard.actives.try_acquire() {
                Some(slot) => Some(slot),
                None => {
                    let deadline = Instant::from_std(request.deadline);
                    match guard.actives.acquire_until(deadline).await {
                        Some(slot) => Some(slot),
                        None => {
                            return Err(Error::Rejected(format!(
                                "actives limit of {} reached: {} calls in flight, none \
                                 finished before the deadline",
                                guard.label,
                                guard.actives.limit()
                            )));
                        }
                    }
                }
            }
        };
        // No breaker, no clock: the unwatched path reads no time.
        let started = (pass != Pass::Unwatched).then(Instant::now);
        let result = provider.call(request).await;
        probe.done = true;
        if let Some(started) = started {
            let ended = Instant::now();
            guard
                .breaker
                .record_call(pass, result.is_err(), ended - started, ended, &guard.label);
        }
        result
    }

    /// The guard of `method` on `provider`: borrowed from the provider's statistics for
    /// the service's own methods, from the shared table for others.
    fn guard<'p>(&self, provider: &'p Provider, method: &'static MethodDescriptor) -> GuardRef<'p> {
        if let Some(methods) = self.inner.methods.get()
            && let Some(index) = methods.iter().position(|m| std::ptr::eq(m, method))
        {
            let guards = provider.stats.guards.get_or_init(|| {
                methods
                    .iter()
                    .map(|method| self.shared_guard(provider, method))
                    .collect()
            });
            if let Some(guard) = guards.get(index) {
                return GuardRef::Borrowed(guard);
            }
        }
        GuardRef::Owned(self.shared_guard(provider, method))
    }

    fn shared_guard(&self, provider: &Provider, method: &'static MethodDescriptor) -> Arc<Guard> {
        let key = method as *const MethodDescriptor as usize;
        if let Some(guard) = self
            .inner
            .guards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&*provider.address)
            .and_then(|methods| methods.get(&key))
        {
            return guard.clone();
        }
        let config = self.breaker();
        let mut guards = self.inner.guards.write().unwrap_or_else(|p| p.into_inner());
        guards
            .entry(provider.address.clone())
            .or_default()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Guard {
                    label: format!("{} on {}", method.name, provider.address),
                    method: method.name,
                    breaker: Breaker::new(config, self.inner.not_closed.clone()),
                    actives: Concurrency::new(usize::MAX),
                })
            })
            .clone()
    }
}

/// A guard, borrowed or shared.
enum GuardRef<'a> {
    Borrowed(&'a Guard),
    Owned(Arc<Guard>),
}

impl std::ops::Deref for GuardRef<'_> {
    type Target = Guard;

    fn deref(&self) -> &Guard {
        match self {
            GuardRef::Borrowed(guard) => guard,
            GuardRef::Owned(guard) => guard,
        }
    }
}

/// Gives a dropped probe's place back to its half-open breaker.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    pass: Pass,
    done: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.abandon(self.pass);
        }
    }
}
