//! The limits in force: rules by scope, resolved per method and cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::concurrency::Concurrency;
use super::{RateLimit, RateLimiter, lock};
use crate::descriptor::MethodDescriptor;
use crate::{Error, Result};

/// Most distinct calling applications that get a bucket of their own under a
/// `per_application` limit; the ones beyond share one, so a caller inventing names cannot
/// grow the table without bound.
const MAX_APPLICATIONS: usize = 1024;

/// What a rule applies to. The narrowest scope wins, per setting: a method's rule, then
/// the method's `#[rpc(...)]` attributes, then its configured default
/// ([`Scope::MethodDefault`]), then its service's rule, then the rule for all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every method of every service.
    All,
    /// Every method of one service (by name).
    Service(String),
    /// One method: service name, method name. Stronger than the method's `#[rpc(...)]`
    /// attributes, so an operator can change a limit at run time.
    Method(String, String),
    /// One method, weaker than its `#[rpc(...)]` attributes: what a configuration file's
    /// `[services."NAME".methods.METHOD]` section sets (attribute > file).
    MethodDefault(String, String),
}

/// The limits of one scope. Unset settings fall through to the broader scope.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Rule {
    /// Permits per period (provider: protects it; consumer: holds calls back).
    pub rate: Option<RateLimit>,
    /// Provider: calls of a method running at once (Dubbo's `executes`).
    pub executes: Option<u32>,
    /// Consumer: calls of a method in flight to one provider (Dubbo's `actives`).
    pub actives: Option<u32>,
}

impl Rule {
    /// A rule with only a rate limit.
    pub fn rate(limit: RateLimit) -> Rule {
        Rule {
            rate: Some(limit),
            ..Rule::default()
        }
    }

    /// This rule, also capping running calls per method at `executes`.
    pub fn with_executes(mut self, executes: u32) -> Rule {
        self.executes = Some(executes);
        self
    }

    /// This rule, also capping calls in flight per provider and method at `actives`.
    pub fn with_actives(mut self, actives: u32) -> Rule {
        self.actives = Some(actives);
        self
    }

    /// Fails with [`Error::Config`] when a setting cannot work (a limit of 0).
    pub fn validate(&self) -> Result<()> {
        if let Some(rate) = &self.rate {
            rate.validate()?;
        }
        if self.executes == Some(0) {
            return Err(Error::Config(
                "executes = 0 would refuse every call; give at least 1".into(),
            ));
        }
        if self.actives == Some(0) {
            return Err(Error::Config(
                "actives = 0 would refuse every call; give at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Which side a [`Limits`] table serves: which `#[rpc(...)]` attributes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Provider,
    Consumer,
}

/// The limits of a server or a client, and the handle that changes them at run time.
///
/// Clones share the table: change a rule through the handle from `Server::limits` and the
/// next call sees it. Changing a rule restarts the affected rate limiters (full buckets);
/// concurrency counts carry over, so calls running under an old cap still count.
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

struct Inner {
    side: Side,
    rules: RwLock<HashMap<Scope, Rule>>,
    /// Set once any rule or method attribute may limit something; until then the layer
    /// passes calls straight through.
    active: AtomicBool,
    /// Resolved settings per method descriptor (by address).
    resolved: RwLock<HashMap<usize, Arc<Resolved>>>,
    /// Concurrency counters per method descriptor, kept across rule changes.
    counters: Mutex<HashMap<usize, Arc<Concurrency>>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("side", &self.inner.side)
            .field(
                "rules",
                &*self.inner.rules.read().unwrap_or_else(|p| p.into_inner()),
            )
            .finish_non_exhaustive()
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::provider()
    }
}

/// One method's limits, resolved from the rules and its attributes.
pub(crate) struct Resolved {
    /// `service.method`, for messages and shared keys.
    pub(crate) label: String,
    pub(crate) rate: Option<ResolvedRate>,
    /// Provider side: the method's `executes` counter.
    pub(crate) executes: Option<Arc<Concurrency>>,
    /// Consumer side: the method's `actives` cap per provider.
    pub(crate) actives: Option<u32>,
}

pub(crate) struct ResolvedRate {
    pub(crate) limit: RateLimit,
    /// The one limiter, or the limiters per application.
    limiter: Option<Arc<dyn RateLimiter>>,
    per_application: Mutex<HashMap<String, Arc<dyn RateLimiter>>>,
}

impl ResolvedRate {
    /// The limiter for a call from `application` (the attachment, if any).
    pub(crate) fn limiter(&self, label: &str, application: Option<&str>) -> Arc<dyn RateLimiter> {
        if let Some(limiter) = &self.limiter {
            return limiter.clone();
        }
        let application = application.unwrap_or("");
        let mut limiters = lock(&self.per_application);
        if let Some(limiter) = limiters.get(application) {
            return limiter.clone();
        }
        let name = if limiters.len() < MAX_APPLICATIONS {
            application
        } else {
            "*"
        };
        limiters
            .entry(name.to_owned())
            .or_insert_with(|| self.limit.limiter(&format!("{label}@{name}")))
            .clone()
    }
}

impl Limits {
    /// An empty table for a provider (reads `tps`, `tps_wait_ms`, `executes`).
    pub fn provider() -> Limits {
        Limits::new(Side::Provider)
    }

    /// An empty table for a consumer (reads `actives`; rate limits come from rules only).
    pub fn consumer() -> Limits {
        Limits::new(Side::Consumer)
    }

    fn new(side: Side) -> Limits {
        Limits {
            inner: Arc::new(Inner {
                side,
                rules: RwLock::default(),
                active: AtomicBool::new(false),
                resolved: RwLock::default(),
                counters: Mutex::default(),
            }),
        }
    }

    /// Sets the rule of `scope`, replacing the one before. Fails with [`Error::Config`]
    /// (and changes nothing) when the rule cannot work.
    pub fn set(&self, scope: Scope, rule: Rule) -> Result<()> {
        rule.validate()?;
        self.rules_mut().insert(scope, rule);
        self.changed();
        Ok(())
    }

    /// Removes the rule of `scope`.
    pub fn remove(&self, scope: &Scope) {
        self.rules_mut().remove(scope);
        self.changed();
    }

    /// The rule of `scope`, if one is set.
    pub fn get(&self, scope: &Scope) -> Option<Rule> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
            .cloned()
    }

    /// Sets the rate limit of `scope`, keeping its other settings.
    pub fn set_rate(&self, scope: Scope, limit: RateLimit) -> Result<()> {
        let mut rule = self.get(&scope).unwrap_or_default();
        rule.rate = Some(limit);
        self.set(scope, rule)
    }

    /// Calls of `method` running now, if it has an `executes` cap (provider side).
    pub fn executing(&self, service: &str, method: &'static MethodDescriptor) -> Option<usize> {
        self.resolve_always(service, method)
            .executes
            .as_ref()
            .map(|c| c.running())
    }

    /// Takes note of methods whose attributes set limits, so the layer starts checking.
    pub(crate) fn watch(&self, methods: impl IntoIterator<Item = &'static MethodDescriptor>) {
        let side = self.inner.side;
        if methods.into_iter().any(|m| match side {
            Side::Provider => m.tps.is_some() || m.executes.is_some(),
            Side::Consumer => m.actives.is_some(),
        }) {
            self.inner.active.store(true, Ordering::Release);
        }
    }

    /// True when no rule or attribute limits anything: calls pass unchecked.
    pub(crate) fn is_idle(&self) -> bool {
        !self.inner.active.load(Ordering::Acquire)
    }

    /// The limits of `method` of `service`; `None` while the table is idle.
    pub(crate) fn resolve(
        &self,
        service: &str,
        method: &'static MethodDescriptor,
    ) -> Option<Arc<Resolved>> {
        if self.is_idle() {
            return None;
        }
        Some(self.resolve_always(service, method))
    }

    pub(crate) fn resolve_always(
        &self,
        service: &str,
        method: &'static MethodDescriptor,
    ) -> Arc<Resolved> {
        let key = method as *const MethodDescriptor as usize;
        if let Some(found) = self
            .inner
            .resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return found.clone();
        }
        let resolved = Arc::new(self.compute(service, method, key));
        self.inner
            .resolved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(resolved)
            .clone()
    }

    fn compute(&self, service: &str, method: &'static MethodDescriptor, key: usize) -> Resolved {
        let rules = self.inner.rules.read().unwrap_or_else(|p| p.into_inner());
        let method_rule = rules.get(&Scope::Method(service.to_owned(), method.name.to_owned()));
        let default_rule = rules.get(&Scope::MethodDefault(
            service.to_owned(),
            method.name.to_owned(),
        ));
        let broader = [
            rules.get(&Scope::Service(service.to_owned())),
            rules.get(&Scope::All),
        ];
        let broad_rate = broader.iter().flatten().find_map(|rule| rule.rate.clone());
        let provider = self.inner.side == Side::Provider;
        // The attribute keeps the broader rule's algorithm and sharing, with its own rate.
        let attribute_rate = method.tps.filter(|_| provider).map(|tps| {
            let base = broad_rate
                .clone()
                .unwrap_or_else(|| RateLimit::per_second(tps));
            RateLimit {
                permits: tps,
                period: Duration::from_secs(1),
                burst: None,
                max_wait: method
                    .tps_wait_ms
                    .map_or(base.max_wait, Duration::from_millis),
                ..base
            }
        });
        let rate = method_rule
            .and_then(|rule| rule.rate.clone())
            .or(attribute_rate)
            .or_else(|| default_rule.and_then(|rule| rule.rate.clone()))
            .or(broad_rate);
        let pick = |field: fn(&Rule) -> Option<u32>, attribute: Option<u32>| {
            method_rule
                .and_then(field)
                .or(attribute)
                .or_else(|| default_rule.and_then(field))
                .or_else(|| broader.iter().flatten().find_map(|rule| field(rule)))
        };
        let executes = pick(|r| r.executes, method.executes.filter(|_| provider));
        let actives = pick(|r| r.actives, method.actives.filter(|_| !provider));
        let label = format!("{service}.{}", method.name);
        let executes = executes.filter(|_| provider).map(|limit| {
            let mut counters = lock(&self.inner.counters);
            let counter = counters
                .entry(key)
                .or_insert_with(|| Concurrency::new(limit as usize));
            counter.set_limit(limit as usize);
            counter.clone()
        });
        Resolved {
            rate: rate.map(|limit| ResolvedRate {
                limiter: (!limit.per_application).then(|| limit.limiter(&label)),
                per_application: Mutex::default(),
                limit,
            }),
            executes,
            actives: actives.filter(|_| !provider),
            label,
        }
    }

    fn rules_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Scope, Rule>> {
        self.inner.rules.write().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        let any = !self
            .inner
            .rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if any {
            self.inner.active.store(true, Ordering::Release);
        }
        self.inner
            .resolved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
