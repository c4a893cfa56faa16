//! Cluster strategies as values: what the cluster stage does with one call once it has the
//! provider list, behind one small trait a user can implement.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::failback::FailbackQueue;
use super::{Policy, REACHABLE_AGAIN_AFTER, attempt_of, may_retry};
use crate::client::loadbalance::{LoadBalance, Picker};
use crate::client::provider::Provider;
use crate::client::providers::Providers;
use crate::client::traffic::Traffic;
use crate::request::Name;
use crate::{Request, Response, Result};

/// What a [`ClusterStrategy`] hands back: the call's outcome, later.
pub type StrategyFuture<'a> = BoxFuture<'a, Result<Response>>;

/// How the cluster stage runs one call over the provider list: how many providers it
/// tries, in which order, at once or one after another, and what the caller gets when
/// they fail. Dubbo's `Cluster` extension point.
///
/// The seven built-in modes are the values of [`ClusterMode`](super::ClusterMode), picked
/// by name (`#[rpc(cluster = "...")]`, configuration files) or by value
/// ([`ClientBuilder::cluster`](crate::ClientBuilder::cluster)); a strategy of your own is
/// given by value with [`ClientBuilder::cluster_strategy`](crate::ClientBuilder::cluster_strategy)
/// and runs every method that does not name a mode. It may wrap a built-in one: a
/// [`ClusterMode`](super::ClusterMode) is itself a strategy.
///
/// The strategy sees the call through an [`Invocation`]: the request, the providers (never
/// empty), the method's load balancer as an iterator of candidates, and a way to send an
/// attempt to one provider through the client's traffic guards (rate limits, `actives`,
/// circuit breakers), counted in the provider's statistics. The caller's deadline is
/// enforced around the strategy: a strategy never extends it, and one that is still
/// waiting when it passes is dropped, which cancels its attempts.
///
/// ```
/// use rpc_core::client::cluster::{ClusterStrategy, Invocation, StrategyFuture};
///
/// /// Tries the candidates one after another until one answers, whatever the error.
/// struct Stubborn;
///
/// impl ClusterStrategy for Stubborn {
///     fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a> {
///         Box::pin(async move {
///             let mut last = None;
///             for (attempt, provider) in call.candidates().take(call.providers().len()).enumerate() {
///                 match call.call(provider, attempt as u32).await {
///                     Ok(response) => return Ok(response),
///                     Err(error) => last = Some(error),
///                 }
///             }
///             Err(last.unwrap_or_else(|| rpc_core::Error::NoProvider(call.service().into())))
///         })
///     }
/// }
/// ```
pub trait ClusterStrategy: Send + Sync + 'static {
    /// Runs `call`: sends attempts to providers and settles on the call's outcome.
    fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a>;

    /// True when a failed call ends in [`crate::Error::Failsafe`], which a generated stub
    /// turns into the return type's `Default` (failsafe, failback): the client then refuses
    /// to build for a method whose return type has none. Default: false.
    fn needs_default(&self) -> bool {
        false
    }
}

impl<T: ClusterStrategy + ?Sized> ClusterStrategy for Arc<T> {
    fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a> {
        (**self).invoke(call)
    }

    fn needs_default(&self) -> bool {
        (**self).needs_default()
    }
}

/// One call as a [`ClusterStrategy`] sees it. Cheap to copy: it only borrows.
#[derive(Clone, Copy)]
pub struct Invocation<'a> {
    pub(super) providers: &'a Providers,
    pub(super) request: &'a Request,
    pub(super) policy: &'a Policy,
    pub(super) service: &'a Name,
    pub(super) traffic: Option<&'a Traffic>,
    pub(super) failback: &'a Arc<FailbackQueue>,
}

impl std::fmt::Debug for Invocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("service", &self.service)
            .field("method", &self.request.method.name)
            .field("providers", &self.providers.len())
            .field("retries", &self.policy.retries)
            .field("forks", &self.policy.forks)
            .finish_non_exhaustive()
    }
}

impl<'a> Invocation<'a> {
    /// The call as the caller made it (attempt 0, no provider yet).
    pub fn request(&self) -> &'a Request {
        self.request
    }

    /// The providers the directory lists now; never empty.
    pub fn providers(&self) -> &'a Providers {
        self.providers
    }

    /// The service called.
    pub fn service(&self) -> &'a str {
        self.service
    }

    /// The method's `retries` (attribute, configuration, builder, else 2).
    pub fn retries(&self) -> u32 {
        self.policy.retries
    }

    /// The method's `forks` (attribute, builder, else 2), at least 1.
    pub fn forks(&self) -> usize {
        self.policy.forks.max(1)
    }

    /// The method's load balancer.
    pub fn load_balance(&self) -> &'a dyn LoadBalance {
        self.policy.balancer.as_ref()
    }

    /// The load balancer's candidates for this call, best first, each handed out once
    /// before any repeats ([`Picker`]), passing over providers that are no use now while
    /// another one is: one whose connection was refused or lost in the last second, and
    /// one whose circuit breaker is open for the method. When every provider is such, the
    /// balancer's pick all the same (it then fails fast, or finds the provider back).
    pub fn candidates(&self) -> Candidates<'a> {
        Candidates {
            picker: Picker::new(self.providers, self.request, self.policy.balancer.as_ref()),
            request: self.request,
            traffic: self.traffic,
            providers: self.providers.len(),
        }
    }

    /// True unless `provider` is no use now (see [`Invocation::candidates`]).
    pub fn is_usable(&self, provider: &Provider) -> bool {
        usable(provider, self.traffic, self.request)
    }

    /// The request as sent to `provider` for attempt number `attempt` (0 for the first):
    /// [`Request::attempt`] and [`Request::provider`] set.
    pub fn request_for(&self, provider: &Provider, attempt: u32) -> Request {
        attempt_of(self.request, provider, attempt)
    }

    /// Sends attempt number `attempt` of the call to `provider`.
    pub fn call(
        &self,
        provider: &'a Provider,
        attempt: u32,
    ) -> impl Future<Output = Result<Response>> + Send + use<'a> {
        self.send(provider, self.request_for(provider, attempt))
    }

    /// Sends `request` (usually from [`Invocation::request_for`], perhaps changed) to
    /// `provider`: through the client's traffic guards when it has any, counted in the
    /// provider's statistics.
    pub fn send(
        &self,
        provider: &'a Provider,
        request: Request,
    ) -> impl Future<Output = Result<Response>> + Send + use<'a> {
        call_one(self.traffic, provider, request)
    }

    /// Whether an attempt that failed with `error` may be repeated on another provider:
    /// always when the provider never ran the call (no connection, refused before running,
    /// service not there); when it may have run, only for an `idempotent` method. The
    /// rule failover follows.
    pub fn may_retry(&self, error: &crate::Error) -> bool {
        may_retry(error, self.request)
    }
}

/// The candidates of one call: see [`Invocation::candidates`].
pub struct Candidates<'a> {
    picker: Picker<'a>,
    request: &'a Request,
    traffic: Option<&'a Traffic>,
    providers: usize,
}

impl std::fmt::Debug for Candidates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Provider;

    /// Without the passing over, a dead provider would draw calls: it has nothing in
    /// flight, so least-active prefers it, and several dead entries (a crashed provider's
    /// nodes wait for their session to expire) could take every attempt of a call.
    fn next(&mut self) -> Option<&'a Provider> {
        let first = self.picker.next()?;
        if usable(first, self.traffic, self.request) {
            return Some(first);
        }
        for _ in 1..self.providers {
            let next = self.picker.next()?;
            if usable(next, self.traffic, self.request) {
                return Some(next);
            }
        }
        Some(first)
    }
}

fn usable(provider: &Provider, traffic: Option<&Traffic>, request: &Request) -> bool {
    provider.stats.is_reachable(REACHABLE_AGAIN_AFTER)
        && !traffic.is_some_and(|t| t.skips(provider, request.method))
}

/// One attempt on `provider`: through the client's traffic guards when it has any.
async fn call_one(
    traffic: Option<&Traffic>,
    provider: &Provider,
    request: Request,
) -> Result<Response> {
    match traffic {
        None => provider.call(request).await,
        Some(traffic) => traffic.call(provider, request).await,
    }
}
