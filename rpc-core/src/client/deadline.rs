//! Consumer-side deadline enforcement as a tower layer.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use crate::{Error, Request, Response, Result};

/// Fails a call with [`Error::Timeout`] when its [`Request::deadline`] passes.
///
/// Dropping the inner future at the deadline is what cancels the call downstream: the
/// transport sees its call future dropped and tells the provider to abort.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// The service made by [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
}

impl<S> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = Response, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let deadline = req.deadline;
        let budget = req.timeout;
        let call = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), call).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(budget)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use std::time::Duration;
    use tower::ServiceExt;

    fn request(timeout: Duration) -> Request {
        let mut request = crate::client::loadbalance::tests::request();
        request.timeout = timeout;
        request.deadline = std::time::Instant::now() + timeout;
        request
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_fails_with_timeout() {
        let slow = tower::service_fn(|_req: Request| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Error>(Response::new(Codec::Json, Default::default()))
        });
        let result = DeadlineLayer
            .layer(slow)
            .oneshot(request(Duration::from_millis(100)))
            .await;
        assert!(matches!(result, Err(Error::Timeout(d)) if d == Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_within_its_deadline_passes_through() {
        let fast = tower::service_fn(|req: Request| async move {
            Ok::<_, Error>(Response::new(req.codec, bytes::Bytes::from_static(b"ok")))
        });
        let response = DeadlineLayer
            .layer(fast)
            .oneshot(request(Duration::from_millis(100)))
            .await;
        assert_eq!(
            response.map(|r| r.body).ok(),
            Some(bytes::Bytes::from_static(b"ok"))
        );
    }
}
