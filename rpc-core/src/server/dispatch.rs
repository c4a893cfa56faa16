//! The innermost provider service: runs the skeleton under the call's deadline.

use std::panic::AssertUnwindSafe;
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::{Error, Response, Result, ServerRequest};

/// Calls the resolved skeleton method. Work past the caller's deadline is dropped (the
/// caller has given up, so finishing it only steals capacity), and a panicking handler
/// becomes an [`Error::Handler`] instead of taking the connection down.
#[derive(Clone, Debug, Default)]
pub struct Dispatch {
    _private: (),
}

impl Dispatch {
    /// The dispatch service.
    pub fn new() -> Dispatch {
        Dispatch { _private: () }
    }
}

impl tower::Service<ServerRequest> for Dispatch {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ServerRequest) -> Self::Future {
        let ServerRequest {
            method,
            context,
            codec,
            body,
        } = req;
        let (deadline, received) = (context.deadline(), context.received_at());
        let work = AssertUnwindSafe(method.skeleton.call(method.index, context, codec, body))
            .catch_unwind();
        Box::pin(async move {
            let outcome = match deadline {
                Some(deadline) => {
                    let budget = deadline.saturating_duration_since(
                        received.unwrap_or_else(std::time::Instant::now),
                    );
                    match tokio::time::timeout_at(deadline.into(), work).await {
                        Ok(outcome) => outcome,
                        Err(_) => return Err(Error::Timeout(budget)),
                    }
                }
                None => work.await,
            };
            match outcome {
                Ok(result) => result,
                Err(panic) => Err(Error::Handler(panic_message(panic.as_ref()))),
            }
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("handler panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("handler panicked: {s}")
    } else {
        "handler panicked".to_owned()
    }
}
