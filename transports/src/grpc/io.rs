//! Write batching under h2's connections (both ends).
//!
//! h2 encodes every frame it has into its buffer and writes the buffer out each time the
//! connection is polled: under load, one `writev` per request or answer, about 0.7 per
//! call on each side. [`Coalesce`] holds a connection's write back once while other calls
//! are in flight: it defers the write until the runtime has run the other ready tasks
//! (the callers queueing their requests, the handlers finishing their answers) and polled
//! the socket, so h2 writes all their frames in one go. With one call in flight it writes
//! at once, so ping-pong latency does not pay for it. The TCP transport's writer does the
//! same (`tcp::conn::write_loop`).
//!
//! The provider runs the calls that finish at once inside its connection task, so their
//! answers are batched by that loop already; the hold-back still gathers the answers of
//! handlers that run on tasks of their own. (Measured on the echo benchmark, where every
//! handler finishes at once: no difference with and without it.)

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Calls in flight on one connection, counted by whoever starts and ends them, and the
/// reads that brought something (for the consumer's keepalive).
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    /// Calls started and not yet over (see [`InFlight::start_until_written`]).
    calls: AtomicUsize,
    /// Calls answered whose answers are not yet written out.
    answered: AtomicUsize,
    /// Reads from the socket that returned data.
    reads: AtomicUsize,
}

impl InFlight {
    /// Counts one call until the guard is dropped.
    pub(crate) fn start(&self) -> InFlightGuard {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            counts: self.0.clone(),
            until_written: false,
        }
    }

    /// Counts one call until the guard is dropped and the connection's next flush: a
    /// provider's answer is still to be written when its handler is done.
    pub(crate) fn start_until_written(&self) -> InFlightGuard {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            counts: self.0.clone(),
            until_written: true,
        }
    }

    /// How many reads returned data so far: unchanged means the peer sent nothing.
    pub(crate) fn reads(&self) -> usize {
        self.0.reads.load(Ordering::Relaxed)
    }

    fn others(&self) -> bool {
        self.0.calls.load(Ordering::Relaxed) > 1
    }

    /// Everything answered so far went out.
    fn flushed(&self) {
        let written = self.0.answered.swap(0, Ordering::Relaxed);
        if written > 0 {
            self.0.calls.fetch_sub(written, Ordering::Relaxed);
        }
    }
}

/// One call counted in an [`InFlight`].
pub(crate) struct InFlightGuard {
    counts: Arc<Counts>,
    until_written: bool,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        match self.until_written {
            true => self.counts.answered.fetch_add(1, Ordering::Relaxed),
            false => self.counts.calls.fetch_sub(1, Ordering::Relaxed),
        };
    }
}

type Yield = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An I/O stream whose first write after each flush waits for one turn of the runtime
/// while other calls are in flight (module docs).
pub(crate) struct Coalesce<S> {
    inner: S,
    in_flight: InFlight,
    /// The pending yield of the current batch, if it started one.
    waiting: Option<Yield>,
    /// This batch has had its turn: write through until the next flush.
    yielded: bool,
}

impl<S> Coalesce<S> {
    pub(crate) fn new(inner: S, in_flight: InFlight) -> Coalesce<S> {
        Coalesce {
            inner,
            in_flight,
            waiting: None,
            yielded: false,
        }
    }

    /// Ready once this batch may be written.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        if self.waiting.is_none() {
            if !self.in_flight.others() {
                self.yielded = true;
                return Poll::Ready(());
            }
            self.waiting = Some(Box::pin(tokio::task::yield_now()));
        }
        if let Some(waiting) = &mut self.waiting {
            std::task::ready!(waiting.as_mut().poll(cx));
        }
        self.waiting = None;
        self.yielded = true;
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.in_flight.0.reads.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_turn(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_turn(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        // The batch is out; the next write starts another.
        self.yielded = false;
        self.in_flight.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
