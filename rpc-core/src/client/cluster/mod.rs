//! The cluster stage: where a call meets the provider list, and where retries live.
//!
//! For each call it lists the [`Directory`], walks the load balancer's candidates through a
//! [`Picker`](super::loadbalance::Picker) and sends attempts to providers ([`crate::client::Provider::call`]) as its mode says:
//!
//! - **failover** (default, as in Dubbo): on a failure that allows it, retry on the next
//!   candidate, at most `retries` times (default 2). A call that never reached a provider
//!   (no connection, refused before running, service not there) is always retried; one that
//!   may have run is retried only when the method is `idempotent`.
//! - **failfast**: one attempt; its error is the call's.
//! - **forking**: `forks` (default 2) candidates at once; the first success wins and the
//!   others are dropped, which cancels them on their providers.
//! - **broadcast**: every provider; fails if any fails, naming each provider that did.
//! - **failsafe**: one attempt; a failure (a timeout included) is logged and the caller
//!   gets the return type's `Default` (the client refuses to build for a failsafe method
//!   whose return type has none).
//! - **available**: the first provider in the list that is reachable (no call to it found
//!   the connection down in the last second); one attempt.
//! - **failback**: as failsafe for the caller, and the failed call is queued and retried in
//!   the background ([`FailbackPolicy`]: every 5 s, 3 times, at most 1024 waiting).
//!
//! Settings come per method from `#[rpc(cluster = "...", retries = N, loadbalance = "...")]`,
//! else from the client builder. They are resolved once when the client is built, so an
//! unknown name is a configuration error then, not a surprise on the first call.
//!
//! The modes are values of one extension point, [`ClusterStrategy`]: a [`ClusterMode`] is
//! one, and a strategy of your own (given by value to
//! [`ClientBuilder::cluster_strategy`](crate::ClientBuilder::cluster_strategy)) gets the
//! same [`Invocation`]: the providers, the method's load balancer as candidates, and a way
//! to send one attempt through the client's traffic guards. Built-in modes run in place,
//! with no boxed future; a user strategy costs one box per call.

mod failback;
mod strategy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::Service;

use super::directory::Directory;
use super::loadbalance::{self, LoadBalance};
use super::provider::Provider;
use super::providers::Providers;
use super::traffic::Traffic;
use crate::config::MethodConfig;
use crate::descriptor::{MethodDescriptor, ServiceDescriptor};
use crate::request::Name;
use crate::{Code, Error, Request, Response, Result};

pub use failback::FailbackPolicy;
pub use strategy::{Candidates, ClusterStrategy, Invocation, StrategyFuture};

/// Dubbo's default number of retries for failover (3 attempts in all).
pub const DEFAULT_RETRIES: u32 = 2;

/// How long `available` skips a provider after a call found it unreachable.
pub(super) const REACHABLE_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Dubbo's default number of parallel calls for forking.
pub const DEFAULT_FORKS: usize = 2;

/// How a call survives a failing provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClusterMode {
    /// Retry on another provider (see the module docs for which failures allow it).
    #[default]
    Failover,
    /// One attempt only.
    Failfast,
    /// Several candidates at once, first success wins.
    Forking,
    /// Every provider; fails if any fails.
    Broadcast,
    /// One attempt; a failure gives the return type's `Default`.
    Failsafe,
    /// As failsafe, and the failed call is retried in the background.
    Failback,
    /// The first reachable provider in list order, one attempt.
    Available,
}

impl std::str::FromStr for ClusterMode {
    type Err = Error;

    fn from_str(name: &str) -> Result<ClusterMode> {
        match name {
            "failover" => Ok(ClusterMode::Failover),
            "failfast" => Ok(ClusterMode::Failfast),
            "forking" => Ok(ClusterMode::Forking),
            "broadcast" => Ok(ClusterMode::Broadcast),
            "failsafe" => Ok(ClusterMode::Failsafe),
            "failback" => Ok(ClusterMode::Failback),
            "available" => Ok(ClusterMode::Available),
            other => Err(Error::Config(format!(
                "unknown cluster mode {other:?}; this build has \"failover\", \"failfast\", \
                 \"forking\", \"broadcast\", \"failsafe\", \"failback\" and \"available\""
            ))),
        }
    }
}

/// A built-in mode, run in place, or a user's strategy, run through its boxed future.
#[derive(Clone)]
enum Strategy {
    Mode(ClusterMode),
    Custom(Arc<dyn ClusterStrategy>),
}

impl Strategy {
    fn needs_default(&self) -> bool {
        match self {
            Strategy::Mode(mode) => mode.needs_default(),
            Strategy::Custom(strategy) => strategy.needs_default(),
        }
    }
}

/// What the cluster does for one method.
#[derive(Clone)]
pub(super) struct Policy {
    strategy: Strategy,
    retries: u32,
    forks: usize,
    balancer: Arc<dyn LoadBalance>,
}

impl Policy {
    /// The method's own mode and retries over `defaults`; its load balancer too when
    /// `with_balancer` (a named balancer keeps state across calls, so it is made once).
    fn for_method(
        method: &MethodDescriptor,
        configured: Option<&MethodConfig>,
        defaults: &Policy,
        with_balancer: bool,
    ) -> Result<Policy> {
        let context = |error: Error| match error {
            Error::Config(message) => Error::Config(format!("method {}: {message}", method.name)),
            other => other,
        };
        // The attribute, then the configuration file's method section, then the
        // service-wide defaults.
        let configured = configured.cloned().unwrap_or_default();
        let cluster = method.cluster.or(configured.cluster.as_deref());
        let balancer = method.loadbalance.or(configured.loadbalance.as_deref());
        Ok(Policy {
            strategy: match cluster {
                Some(name) => Strategy::Mode(name.parse().map_err(context)?),
                None => defaults.strategy.clone(),
            },
            retries: method
                .retries
                .or(configured.retries)
                .unwrap_or(defaults.retries),
            forks: method.forks.map_or(defaults.forks, |forks| forks as usize),
            balancer: match balancer {
                Some(name) if with_balancer => loadbalance::by_name(name).map_err(context)?,
                _ => defaults.balancer.clone(),
            },
        })
    }
}

/// The cluster stage as a tower service: providers from a [`Directory`], one
/// [`LoadBalance`] per method, retries per [`ClusterMode`].
#[derive(Clone)]
pub struct Cluster {
    service: Name,
    directory: Arc<dyn Directory>,
    defaults: Policy,
    methods: Arc<[(&'static MethodDescriptor, Policy)]>,
    configured: Arc<BTreeMap<String, MethodConfig>>,
    failback: Arc<failback::FailbackQueue>,
    traffic: Traffic,
}

impl Cluster {
    /// Calls to `service` over `directory`, balanced by `balancer`, in failover mode with
    /// [`DEFAULT_RETRIES`].
    pub fn new(
        service: Name,
        directory: Arc<dyn Directory>,
        balancer: Arc<dyn LoadBalance>,
    ) -> Cluster {
        Cluster {
            failback: Arc::new(failback::FailbackQueue::new(
                FailbackPolicy::default(),
                service.clone(),
                directory.clone(),
            )),
            service,
            directory,
            defaults: Policy {
                strategy: Strategy::Mode(ClusterMode::default()),
                retries: DEFAULT_RETRIES,
                forks: DEFAULT_FORKS,
                balancer,
            },
            methods: Arc::new([]),
            configured: Arc::default(),
            traffic: Traffic::new(crate::limit::Limits::consumer(), None),
        }
    }

    /// True when no client-side limit or breaker guards calls (no wait of their own).
    pub(crate) fn traffic_is_idle(&self) -> bool {
        self.traffic.is_idle()
    }

    /// Guards calls with `traffic`: the client's rate limits, `actives` caps and circuit
    /// breakers.
    pub(crate) fn traffic(mut self, traffic: Traffic) -> Cluster {
        self.traffic = traffic;
        self
    }

    /// The mode of methods that do not name one.
    pub fn mode(mut self, mode: ClusterMode) -> Cluster {
        self.defaults.strategy = Strategy::Mode(mode);
        self
    }

    /// Runs methods that do not name a mode with `strategy` instead of a built-in mode.
    pub fn strategy(mut self, strategy: Arc<dyn ClusterStrategy>) -> Cluster {
        self.defaults.strategy = Strategy::Custom(strategy);
        self
    }

    /// The failover retries of methods that do not set `retries`.
    pub fn retries(mut self, retries: u32) -> Cluster {
        self.defaults.retries = retries;
        self
    }

    /// How failback retries failed calls.
    pub fn failback(mut self, settings: FailbackPolicy) -> Cluster {
        self.failback = Arc::new(failback::FailbackQueue::new(
            settings,
            self.service.clone(),
            self.directory.clone(),
        ));
        self
    }

    /// Per-method settings from a configuration file (`[services."NAME".methods.METHOD]`:
    /// `cluster`, `retries`, `loadbalance`), under each method's own attributes and over
    /// the cluster's defaults. Set it before [`Cluster::with_methods`].
    pub fn configured_methods(mut self, methods: BTreeMap<String, MethodConfig>) -> Cluster {
        self.configured = Arc::new(methods);
        self
    }

    /// How many providers a forking call goes to at once (at least 1).
    pub fn forks(mut self, forks: usize) -> Cluster {
        self.defaults.forks = forks.max(1);
        self
    }

    /// Resolves the per-method settings of `service` now. Fails with [`Error::Config`]
    /// naming the method when one names an unknown cluster mode or load balancer.
    pub fn with_methods(mut self, service: &'static ServiceDescriptor) -> Result<Cluster> {
        self.methods = service
            .methods
            .iter()
            .map(|method| {
                let configured = self.configured.get(method.name);
                let policy = Policy::for_method(method, configured, &self.defaults, true)?;
                Ok((method, policy))
            })
            .collect::<Result<Vec<_>>>()?
            .into();
        Ok(self)
    }

    /// The built-in cluster mode calls of `method` use; `None` when a strategy given by
    /// value ([`Cluster::strategy`]) runs them.
    pub fn mode_of(&self, method: &'static MethodDescriptor) -> Option<ClusterMode> {
        match &self.resolved(method).unwrap_or(&self.defaults).strategy {
            Strategy::Mode(mode) => Some(*mode),
            Strategy::Custom(_) => None,
        }
    }

    /// True when a failed call of `method` gives the return type's `Default`
    /// ([`ClusterStrategy::needs_default`]).
    pub fn needs_default(&self, method: &'static MethodDescriptor) -> bool {
        self.resolved(method)
            .unwrap_or(&self.defaults)
            .strategy
            .needs_default()
    }

    /// The traffic control of this cluster's calls.
    pub(crate) fn traffic_handle(&self) -> Traffic {
        self.traffic.clone()
    }

    /// The providers its directory lists now.
    pub fn providers(&self) -> Providers {
        self.directory.providers()
    }

    /// True when calls of `method` need [`Request::hash_key`].
    pub fn needs_hash_key(&self, method: &'static MethodDescriptor) -> bool {
        let balancer = match self.resolved(method) {
            Some(policy) => &policy.balancer,
            None => &self.defaults.balancer,
        };
        method.hash_arg.is_some() || balancer.needs_hash_key()
    }

    fn resolved(&self, method: &'static MethodDescriptor) -> Option<&Policy> {
        self.methods
            .iter()
            .find(|(m, _)| std::ptr::eq(*m, method))
            .map(|(_, policy)| policy)
    }
}

impl Service<Request> for Cluster {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.dispatch(request).await })
    }
}

impl Cluster {
    /// Runs one call through the cluster stage: the method's policy, its providers, its
    /// attempts. The future borrows the cluster: a client without user layers awaits it
    /// in place, with nothing boxed and no reference count touched per call.
    pub async fn dispatch(&self, request: Request) -> Result<Response> {
        let mut providers = self.directory.providers();
        let owned;
        let policy = match self.resolved(request.method) {
            Some(policy) => policy,
            // A method the client was not built for (an untyped client): its mode and
            // retries are read now; it uses the client's load balancer.
            None => {
                let configured = self.configured.get(request.method.name);
                owned = Policy::for_method(request.method, configured, &self.defaults, false)?;
                &owned
            }
        };
        let service = &self.service;
        let traffic = (!self.traffic.is_idle()).then_some(&self.traffic);
        if let Some(traffic) = traffic {
            traffic.admit_call(&request).await?;
        }
        if providers.is_empty() {
            let listed = self.directory.listed();
            let _ = tokio::time::timeout_at(request.deadline.into(), listed).await;
            providers = self.directory.providers();
            if providers.is_empty() {
                return Err(Error::NoProvider(service.to_string()));
            }
        }
        let call = Invocation {
            providers: &providers,
            request: &request,
            policy,
            service,
            traffic,
            failback: &self.failback,
        };
        match &policy.strategy {
            Strategy::Mode(mode) => mode.run(call).await,
            Strategy::Custom(strategy) => strategy.invoke(call).await,
        }
    }
}

impl ClusterStrategy for ClusterMode {
    fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a> {
        Box::pin(self.run(call))
    }

    fn needs_default(&self) -> bool {
        matches!(self, ClusterMode::Failsafe | ClusterMode::Failback)
    }
}

impl ClusterMode {
    /// Runs `call` in this mode: what [`ClusterStrategy::invoke`] boxes, and what the
    /// cluster awaits in place.
    async fn run(self, call: Invocation<'_>) -> Result<Response> {
        match self {
            ClusterMode::Failover => {
                failover(call, call.policy.retries.saturating_add(1), true).await
            }
            ClusterMode::Failfast => failover(call, 1, false).await,
            ClusterMode::Forking => forking(call).await,
            ClusterMode::Broadcast => broadcast(call).await,
            ClusterMode::Available => available(call).await,
            ClusterMode::Failsafe => failsafe(call, false).await,
            ClusterMode::Failback => failsafe(call, true).await,
        }
    }
}

/// The first provider in list order that is usable (see [`Invocation::candidates`]), else
/// the first reachable one; one attempt.
async fn available(call: Invocation<'_>) -> Result<Response> {
    let providers = call.providers;
    let reachable = providers
        .iter()
        .position(|p| call.is_usable(p))
        .or_else(|| {
            providers
                .iter()
                .position(|p| p.stats.is_reachable(REACHABLE_AGAIN_AFTER))
        });
    match reachable {
        Some(index) => call.call(&providers[index], 0).await,
        None => Err(Error::NoProvider(format!(
            "{}: no provider is reachable",
            call.service
        ))),
    }
}

/// One attempt; a failure is logged and becomes [`Error::Failsafe`] (the stub gives the
/// return type's `Default`); with `failback`, the failed call is queued for retries too.
async fn failsafe(call: Invocation<'_>, failback: bool) -> Result<Response> {
    // The caller's deadline is enforced here too, so that a timeout is swallowed like any
    // other failure (both timers share the instant; the inner one is polled first).
    let request = call.request;
    let service = call.service;
    let method = request.method.name;
    let once = failover(call, 1, true);
    let error = match tokio::time::timeout_at(request.deadline.into(), once).await {
        Ok(Ok(response)) => return Ok(response),
        Ok(Err(error)) => error,
        Err(_) => Error::Timeout(request.timeout),
    };
    if failback {
        tracing::info!(service = %service, method, %error, "call failed, retrying it in the background");
        call.failback.push(request.clone(), call.policy.clone());
    } else {
        tracing::warn!(service = %service, method, %error, "failsafe call failed, returning the default")
    }
    Err(Error::Failsafe(Box::new(error)))
}

/// `request` as sent to `provider` for attempt number `attempt`.
pub(super) fn attempt_of(request: &Request, provider: &Provider, attempt: u32) -> Request {
    let mut this = request.clone();
    this.attempt = attempt;
    this.provider = Some(provider.address.clone());
    this
}

/// One attempt, then the next candidate while the failure allows a retry. When the
/// attempts run out on more than one provider the error names each attempt
/// ([`Error::Exhausted`]).
///
/// With `wait_for_ready`, the last attempt may wait (within the deadline) for a connection
/// that is down and being retried; failfast does not.
async fn failover(call: Invocation<'_>, attempts: u32, wait_for_ready: bool) -> Result<Response> {
    let (providers, request, service) = (call.providers, call.request, call.service);
    let mut candidates = call.candidates();
    // Filled only once an attempt failed: the success path allocates nothing here.
    let mut failed: Vec<(String, Error)> = Vec::new();
    let mut attempt = 0;
    loop {
        let Some(provider) = candidates.next() else {
            return Err(Error::NoProvider(service.to_string()));
        };
        let mut this = call.request_for(provider, attempt);
        // No other provider will be tried for this call: the transport may wait, within
        // the deadline, for a connection that is down and being retried.
        this.wait_for_ready =
            wait_for_ready && (attempt + 1 >= attempts || attempt as usize + 1 >= providers.len());
        let error = match call.send(provider, this).await {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        attempt += 1;
        if !may_retry(&error, request) {
            return Err(error);
        }
        failed.push((provider.address.to_string(), error));
        // A retry never outlives the caller's deadline (the client may arm no timer of
        // its own: the transport's ends each attempt).
        if attempt < attempts && std::time::Instant::now() >= request.deadline {
            return Err(Error::Timeout(request.timeout));
        }
        if attempt >= attempts {
            let distinct = failed
                .iter()
                .map(|(address, _)| address.as_str())
                .collect::<std::collections::HashSet<_>>()
                .len();
            return Err(match failed.pop() {
                Some((_, last)) if distinct < 2 => last,
                Some(last) => {
                    failed.push(last);
                    Error::Exhausted { attempts: failed }
                }
                None => Error::NoProvider(service.to_string()),
            });
        }
        if let Some((_, error)) = failed.last() {
            tracing::debug!(
                service = %service,
                method = request.method.name,
                provider = %provider.address,
                %error,
                attempt,
                "call failed, trying another provider"
            );
        }
    }
}

/// `forks` candidates at once; the first success wins. Dropping the others cancels them,
/// and the transport tells their providers to abort.
async fn forking(call: Invocation<'_>) -> Result<Response> {
    let forks = call.forks().min(call.providers.len());
    let calls: Vec<_> = call
        .candidates()
        .take(forks)
        .enumerate()
        .map(|(index, provider)| Box::pin(call.call(provider, index as u32)))
        .collect();
    futures_util::future::select_ok(calls)
        .await
        .map(|(response, _losers)| response)
}

/// Every provider at once; the answer of the last one when all succeed.
async fn broadcast(call: Invocation<'_>) -> Result<Response> {
    let providers = call.providers;
    let calls = providers
        .iter()
        .enumerate()
        .map(|(index, provider)| call.call(provider, index as u32));
    let results = futures_util::future::join_all(calls).await;
    let total = results.len();
    let mut failed = Vec::new();
    let mut last = None;
    for (provider, result) in providers.iter().zip(results) {
        match result {
            Ok(response) => last = Some(response),
            Err(error) => failed.push((provider.address.to_string(), error)),
        }
    }
    match last {
        Some(response) if failed.is_empty() => Ok(response),
        _ => Err(Error::Broadcast { failed, total }),
    }
}

/// Whether a failed attempt may be repeated on another provider.
pub(super) fn may_retry(error: &Error, request: &Request) -> bool {
    let idempotent = request.method.idempotent && !request.oneway;
    match error {
        // The provider never ran it: not sent, refused before running, or not served there.
        Error::Unavailable { .. } | Error::Rejected(_) => true,
        Error::Remote {
            code: Code::NotFound,
            ..
        } => true,
        // It may have run, wholly or partly.
        Error::Transport { .. } | Error::Cancelled => idempotent,
        Error::Remote {
            code: Code::ServerError,
            ..
        } => idempotent,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::directory::StaticDirectory;
    use crate::client::loadbalance::Random;

    static METHODS: [MethodDescriptor; 2] = [
        {
            let mut method = MethodDescriptor::new("pinned");
            method.cluster = Some("failfast");
            method.retries = Some(5);
            method
        },
        MethodDescriptor::new("plain"),
    ];
    static SERVICE: ServiceDescriptor = ServiceDescriptor {
        name: "demo.S",
        version: "",
        methods: &METHODS,
        codecs: &[],
    };

    #[test]
    fn configured_methods_sit_between_attributes_and_defaults() {
        let configured: BTreeMap<String, MethodConfig> =
            [("pinned", "broadcast"), ("plain", "forking")]
                .into_iter()
                .map(|(name, mode)| {
                    let config = MethodConfig {
                        cluster: Some(mode.into()),
                        retries: Some(1),
                        loadbalance: Some("roundrobin".into()),
                        ..MethodConfig::default()
                    };
                    (name.to_owned(), config)
                })
                .collect();
        let directory = Arc::new(StaticDirectory::new(Vec::new()));
        let cluster = Cluster::new("demo.S".into(), directory, Arc::new(Random::default()))
            .mode(ClusterMode::Failover)
            .retries(2)
            .configured_methods(configured)
            .with_methods(&SERVICE)
            .unwrap();
        assert_eq!(
            cluster.mode_of(&METHODS[0]),
            Some(ClusterMode::Failfast),
            "attribute"
        );
        assert_eq!(
            cluster.mode_of(&METHODS[1]),
            Some(ClusterMode::Forking),
            "section"
        );
        let retries = |method| cluster.resolved(method).unwrap().retries;
        assert_eq!(retries(&METHODS[0]), 5);
        assert_eq!(retries(&METHODS[1]), 1);

        let unknown = MethodConfig {
            loadbalance: Some("fastest".into()),
            ..MethodConfig::default()
        };
        let directory = Arc::new(StaticDirectory::new(Vec::new()));
        let error = Cluster::new("demo.S".into(), directory, Arc::new(Random::default()))
            .configured_methods([("plain".to_owned(), unknown)].into())
            .with_methods(&SERVICE)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("plain") && error.contains("fastest"),
            "{error}"
        );
    }
}
