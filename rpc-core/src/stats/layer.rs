//! [`StatsLayer`]: statistics as a tower middleware, for either side.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{ErrorKind, MethodStats, MethodTable};
use crate::{Error, MethodDescriptor, Request, Response, Result, ServerRequest};

/// A request the statistics layer can attribute to a method.
pub trait Observed {
    /// The service called.
    fn service(&self) -> &str;
    /// The method called.
    fn method(&self) -> &'static MethodDescriptor;
    /// Length of the encoded arguments.
    fn body_len(&self) -> usize;
    /// When the call started, if the request knows (a provider's: when the transport read
    /// it); otherwise the layer reads the clock.
    fn started(&self) -> Option<Instant> {
        None
    }
}

impl Observed for Request {
    fn service(&self) -> &str {
        &self.service
    }

    fn method(&self) -> &'static MethodDescriptor {
        self.method
    }

    fn body_len(&self) -> usize {
        self.body.len()
    }
}

impl Observed for ServerRequest {
    fn service(&self) -> &str {
        self.method.service().name
    }

    fn method(&self) -> &'static MethodDescriptor {
        self.method.descriptor()
    }

    fn body_len(&self) -> usize {
        self.body.len()
    }

    fn started(&self) -> Option<Instant> {
        self.context.received_at()
    }
}

/// Counts every call through the wrapped service in a [`MethodTable`]: in flight, outcome
/// by [`ErrorKind`], latency, bytes. `ServerBuilder` puts one around its provider stack.
#[derive(Clone, Debug)]
pub struct StatsLayer {
    table: MethodTable,
}

impl StatsLayer {
    /// Counts into `table` (from [`super::Stats::table`]).
    pub fn new(table: MethodTable) -> StatsLayer {
        StatsLayer { table }
    }
}

impl<S> tower::Layer<S> for StatsLayer {
    type Service = StatsService<S>;

    fn layer(&self, inner: S) -> StatsService<S> {
        StatsService {
            inner,
            table: self.table.clone(),
        }
    }
}

/// The service of [`StatsLayer`].
#[derive(Clone, Debug)]
pub struct StatsService<S> {
    inner: S,
    table: MethodTable,
}

impl<S, R> tower::Service<R> for StatsService<S>
where
    R: Observed,
    S: tower::Service<R, Response = Response, Error = Error>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Error;
    type Future = StatsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> StatsFuture<S::Future> {
        let stats = self.table.get(request.service(), request.method());
        let bytes = request.body_len();
        let started = request.started().unwrap_or_else(Instant::now);
        stats.in_flight_add(bytes);
        StatsFuture {
            inner: self.inner.call(request),
            stats: Some(stats),
            started,
        }
    }
}

/// The future of [`StatsService`]: counts the call when it ends, or as cancelled when
/// dropped before.
pub struct StatsFuture<F> {
    inner: F,
    stats: Option<&'static MethodStats>,
    started: Instant,
}

impl<F> Future for StatsFuture<F>
where
    F: Future<Output = Result<Response>> + Unpin,
{
    type Output = Result<Response>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Response>> {
        let result = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if let Some(stats) = self.stats.take() {
            stats.end(
                self.started,
                match &result {
                    Ok(response) => Ok(response.body.len()),
                    Err(error) => Err(ErrorKind::of(error)),
                },
            );
        }
        Poll::Ready(result)
    }
}

impl<F> Drop for StatsFuture<F> {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.end(self.started, Err(ErrorKind::Cancelled));
        }
    }
}
