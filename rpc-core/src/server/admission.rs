//! The one path by which a decoded call enters the provider, whatever the transport.
//!
//! A transport decodes a call's names, codec, attachments and deadline, then hands it to
//! its connection's [`Session`]. The session answers every call exactly once through the
//! transport's [`Reply`]: a refusal at once (codec not enabled, shutting down, unknown
//! service, a `poll_ready` error), or the handler's outcome. It never makes the transport
//! wait: a provider stack that is not ready moves the call to its own task, which waits
//! under the call's deadline, so the transport keeps reading (cancel events included).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};

use bytes::Bytes;
use tokio::task::AbortHandle;
use tower::Service;

use super::{Dispatcher, ProviderService};
use crate::transport::IdMap;
use crate::{Codec, Context, Error, Response, Result, ServerRequest};

/// How a transport sends one call's answer. Called at most once per call.
pub trait Reply: Send + 'static {
    /// Sends the outcome of the call: the encoded result, or an error the transport maps
    /// to its wire ([`Error::code`], [`Error::remote_message`]).
    fn send(self, result: Result<Response>);
}

/// A call as a transport decoded it, before it is resolved to a method.
#[derive(Debug)]
pub struct IncomingCall<'a> {
    /// Service name as requested.
    pub service: &'a str,
    /// Version as requested (may be empty).
    pub version: &'a str,
    /// Method name as requested.
    pub method: &'a str,
    /// The codec the arguments are in; the answer uses it too.
    pub codec: Codec,
    /// Attachments, deadline (computed on receipt) and peer.
    pub context: Context,
    /// The encoded arguments.
    pub body: Bytes,
}

/// The calls of one connection: admission, the table of running calls (for cancellation
/// and for answering abandoned calls), and the in-flight count that table owns.
pub struct Session<R: Reply> {
    dispatcher: Dispatcher,
    /// This connection's clone of the provider stack, polled ready inline. When it is not
    /// ready the clone moves into the waiting call's task (keeping its place in any
    /// queue, e.g. a concurrency limit's semaphore) and a fresh clone takes its place.
    service: ProviderService,
    table: Arc<CallTable<R>>,
}

struct CallTable<R> {
    running: Mutex<IdMap<Running<R>>>,
    in_flight: AtomicUsize,
}

struct Running<R> {
    task: AbortHandle,
    reply: R,
}

impl<R> CallTable<R> {
    fn lock(&self) -> MutexGuard<'_, IdMap<Running<R>>> {
        // Only map operations run under this lock; a poisoned map is still a valid map.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, id: u64) -> Option<Running<R>> {
        let mut running = self.lock();
        let call = running.remove(&id);
        self.in_flight.store(running.len(), Ordering::Relaxed);
        call
    }
}

impl<R: Reply> Session<R> {
    pub(super) fn new(dispatcher: Dispatcher) -> Session<R> {
        Session {
            service: dispatcher.stack.clone(),
            dispatcher,
            table: Arc::new(CallTable {
                running: Mutex::new(IdMap::default()),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Admits call `id` and answers it through `reply` (`None` for one-way calls, which
    /// get no answer and cannot be cancelled).
    ///
    /// A handler that finishes without waiting is answered before this returns, with no
    /// task spawned; anything else runs on its own task.
    pub fn dispatch(&mut self, id: u64, call: IncomingCall<'_>, reply: Option<R>) {
        let request = match self.admit(call) {
            Ok(request) => request,
            Err(error) => return answer(reply, Err(error)),
        };
        // Ids identify calls for cancellation; a second call under a live id would make the
        // first one impossible to cancel, so it is refused instead.
        if reply.is_some() && self.table.lock().contains_key(&id) {
            let error = Error::Protocol(format!("request id {id} is already in flight"));
            return answer(reply, Err(error));
        }
        // Polled with a no-op waker: if anything is pending, the task spawned below polls
        // again with its own waker before it sleeps, so no wake-up is lost.
        let mut cx = TaskContext::from_waker(Waker::noop());
        match self.service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {
                let mut call = self.service.call(request);
                match call.as_mut().poll(&mut cx) {
                    Poll::Ready(result) => answer(reply, result),
                    Poll::Pending => self.spawn(id, reply, call),
                }
            }
            Poll::Ready(Err(error)) => answer(reply, Err(error)),
            Poll::Pending => {
                let service = std::mem::replace(&mut self.service, self.dispatcher.stack.clone());
                self.spawn(id, reply, when_ready(service, request));
            }
        }
    }

    /// The caller gave up on call `id`: abort it, without answering. False when no such
    /// call runs (it finished, or was one-way).
    pub fn cancel(&self, id: u64) -> bool {
        match self.table.take(id) {
            Some(call) => {
                call.task.abort();
                true
            }
            None => false,
        }
    }

    /// Two-way calls running on this connection.
    pub fn in_flight(&self) -> usize {
        self.table.in_flight.load(Ordering::Relaxed)
    }

    /// A reader of [`Session::in_flight`] that outlives a borrow of the session (for a
    /// writer deciding whether more answers are about to follow).
    pub fn in_flight_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let table = self.table.clone();
        move || table.in_flight.load(Ordering::Relaxed)
    }

    /// Aborts every running call and answers each with [`Error::Cancelled`], so a caller
    /// still connected learns why instead of waiting for its deadline. For a connection
    /// that is closing; also done when the session is dropped.
    pub fn abandon_all(&self) {
        let calls: Vec<Running<R>> = {
            let mut running = self.table.lock();
            self.table.in_flight.store(0, Ordering::Relaxed);
            running.drain().map(|(_, call)| call).collect()
        };
        for call in calls {
            call.task.abort();
            call.reply.send(Err(Error::Cancelled));
        }
    }

    fn admit(&self, call: IncomingCall<'_>) -> Result<ServerRequest> {
        self.dispatcher.check_codec(call.codec)?;
        if self.dispatcher.is_draining() {
            return Err(Error::Rejected("server is shutting down".into()));
        }
        let method = self
            .dispatcher
            .resolve(call.service, call.version, call.method)?;
        if let Some(security) = &self.dispatcher.security {
            security.admits_call(method.service().name, call.method, &call.context)?;
        }
        Ok(ServerRequest {
            method,
            context: call.context,
            codec: call.codec,
            body: call.body,
        })
    }

    fn spawn<F>(&self, id: u64, reply: Option<R>, work: F)
    where
        F: Future<Output = Result<Response>> + Send + 'static,
    {
        let tracker = &self.dispatcher.state.calls;
        let Some(reply) = reply else {
            tracker.spawn(async move {
                let _ = work.await;
            });
            return;
        };
        let table = self.table.clone();
        // Holding the lock across the spawn keeps a fast call from finishing (and looking
        // for its entry) before the entry exists.
        let mut running = self.table.lock();
        let task = tracker.spawn(async move {
            let result = work.await;
            // Whoever takes the entry answers: this task, or `abandon_all`.
            if let Some(call) = table.take(id) {
                call.reply.send(result);
            }
        });
        running.insert(
            id,
            Running {
                task: task.abort_handle(),
                reply,
            },
        );
        self.table.in_flight.store(running.len(), Ordering::Relaxed);
    }
}

impl<R: Reply> Drop for Session<R> {
    fn drop(&mut self) {
        self.abandon_all();
    }
}

fn answer<R: Reply>(reply: Option<R>, result: Result<Response>) {
    if let Some(reply) = reply {
        reply.send(result);
    }
}

/// Waits for the provider stack to have room, then runs the call. The wait ends at the
/// call's deadline with a refusal: the caller has given up by then.
async fn when_ready(mut service: ProviderService, request: ServerRequest) -> Result<Response> {
    let ready = std::future::poll_fn(|cx| service.poll_ready(cx));
    match request.context.deadline() {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), ready).await {
            Ok(ready) => ready?,
            Err(_) => {
                return Err(Error::Rejected(
                    "no capacity to run the call before its deadline".into(),
                ));
            }
        },
        None => ready.await?,
    }
    service.call(request).await
}
