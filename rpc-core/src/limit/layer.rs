//! The provider's limit layer: rate limit, then `executes`, before anything else runs.

use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, Either};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::table::{Limits, Resolved};
use super::{APPLICATION_ATTACHMENT, Acquire, Permit, RateLimiter, acquire_from};
use crate::{Error, Response, Result, ServerRequest};

/// Applies a provider's [`Limits`] to every call: the method's rate limit (waiting up to
/// its `max_wait`, within the call's deadline), then its `executes` cap. A refused call
/// gets [`Error::Rejected`] naming the limit and never reaches the inner service.
#[derive(Clone, Debug)]
pub struct LimitLayer {
    limits: Limits,
}

impl LimitLayer {
    /// A layer enforcing `limits` (shared: changes through any clone apply at once).
    pub fn new(limits: Limits) -> LimitLayer {
        LimitLayer { limits }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = LimitService<S>;

    fn layer(&self, inner: S) -> LimitService<S> {
        LimitService {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service made by [`LimitLayer`].
#[derive(Clone, Debug)]
pub struct LimitService<S> {
    inner: S,
    limits: Limits,
}

impl<S> Service<ServerRequest> for LimitService<S>
where
    S: Service<ServerRequest, Response = Response, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response>>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ServerRequest) -> Self::Future {
        let service = request.method.service().name;
        let Some(limits) = self.limits.resolve(service, request.method.descriptor()) else {
            return Either::Left(self.inner.call(request));
        };
        // The rate limit first: a call refused there never takes an `executes` slot.
        let mut wait_for = None;
        if let Some(rate) = &limits.rate {
            let application = request.context.attachment(APPLICATION_ATTACHMENT);
            let limiter = rate.limiter(&limits.label, application);
            let max_wait = max_wait(rate.limit.max_wait, &request);
            let now = Instant::now();
            match limiter.acquire(now, max_wait) {
                Acquire::Ready(Permit::Granted) => {}
                Acquire::Ready(Permit::Denied { retry_after }) => {
                    return Either::Right(Box::pin(std::future::ready(Err(rate_refused(
                        &limits,
                        retry_after,
                    )))));
                }
                // Waiting, or asking elsewhere: the rest happens in the future below.
                first => wait_for = Some((limiter, first, now, now + max_wait)),
            }
        }
        match wait_for {
            None => {
                let Some(executes) = &limits.executes else {
                    return Either::Left(self.inner.call(request));
                };
                let Some(slot) = executes.try_acquire() else {
                    return Either::Right(Box::pin(std::future::ready(Err(executes_refused(
                        &limits,
                    )))));
                };
                let call = self.inner.call(request);
                Either::Right(Box::pin(async move {
                    let result = call.await;
                    drop(slot);
                    result
                }))
            }
            Some(wait) => {
                // The inner service was made ready for this call; a clone waits instead
                // and becomes ready again after the wait.
                let inner = self.inner.clone();
                Either::Right(Box::pin(wait_then_call(inner, request, limits, wait)))
            }
        }
    }
}

async fn wait_then_call<S>(
    inner: S,
    request: ServerRequest,
    limits: std::sync::Arc<Resolved>,
    (limiter, first, now, deadline): Waiting,
) -> Result<Response>
where
    S: Service<ServerRequest, Response = Response, Error = Error>,
{
    if let Err(retry_after) = acquire_from(limiter.as_ref(), first, now, deadline).await {
        return Err(rate_refused(&limits, retry_after));
    }
    let _slot = match &limits.executes {
        Some(executes) => Some(
            executes
                .try_acquire()
                .ok_or_else(|| executes_refused(&limits))?,
        ),
        None => None,
    };
    inner.oneshot(request).await
}

/// A call waiting for a permit: the limiter, its first answer, when it was asked, and
/// until when the call may wait.
type Waiting = (std::sync::Arc<dyn RateLimiter>, Acquire, Instant, Instant);

/// How long a call may wait for a permit: the limit's wait, cut at the call's deadline.
fn max_wait(limit: Duration, request: &ServerRequest) -> Duration {
    match request.context.deadline() {
        Some(deadline) => limit.min(deadline.saturating_duration_since(std::time::Instant::now())),
        None => limit,
    }
}

pub(crate) fn rate_refused(limits: &Resolved, retry_after: Duration) -> Error {
    let limit = limits.rate.as_ref().map(|rate| &rate.limit);
    let (what, waited) = match limit {
        Some(limit) => (limit.to_string(), limit.max_wait),
        None => (String::from("rate limit"), Duration::ZERO),
    };
    Error::Rejected(format!(
        "rate limit of {} exceeded: {what}, waited {waited:?}; next permit in about {retry_after:?}",
        limits.label
    ))
}

fn executes_refused(limits: &Resolved) -> Error {
    let limit = limits.executes.as_ref().map_or(0, |c| c.limit());
    Error::Rejected(format!(
        "executes limit of {} reached: {limit} calls running",
        limits.label
    ))
}
