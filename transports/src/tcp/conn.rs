//! What both ends of a connection share: the batched writer and the heartbeat timer.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::frame::{FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, Header};
use rpc_core::{Error, Result};

/// How many times the writer yields before taking a batch while other calls are in flight.
const BATCH_YIELDS: usize = 2;

/// Capacity a write buffer starts with, and returns to after a burst grew it past
/// [`SHRINK_ABOVE`]: an idle connection must not keep the memory of its largest burst.
pub(crate) const BUFFER_CAPACITY: usize = 8 * 1024;

/// Buffers larger than this are given back once empty.
pub(crate) const SHRINK_ABOVE: usize = 1024 * 1024;

/// Frame bodies at least this long are written from their own memory (vectored) rather
/// than copied into the batch: below it a copy costs less than another I/O slice.
const VECTORED_BODY: usize = 32 * 1024;

/// Most I/O slices handed to one vectored write (Linux takes up to 1024).
const MAX_SLICES: usize = 64;

/// Reads how many calls on a connection will put a frame in its outbox soon (client:
/// calls awaiting answers; server: calls running). The call table owns that count.
pub(crate) type InFlightProbe = Box<dyn Fn() -> usize + Send + Sync>;

/// Where a connection's bytes go: the socket itself, or a stream over it (TLS).
pub(crate) enum Sink {
    /// A plain socket: any task may write to it directly (`try_write` through `&self`).
    Plain(OwnedWriteHalf),
    /// A stream that needs `&mut` to write (TLS encrypts as it goes); only the writer task
    /// writes to it, so the lock is never contended.
    Stream(tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>),
}

impl Sink {
    /// A sink over an encrypting (or any other) stream.
    pub(crate) fn stream(stream: impl AsyncWrite + Send + Unpin + 'static) -> Sink {
        Sink::Stream(tokio::sync::Mutex::new(Box::new(stream)))
    }
}

/// Frames waiting to be written.
///
/// Every task appends its encoded frame to one buffer under a short lock; the writer task
/// swaps the whole buffer out and writes it with one syscall. Under load many frames go out
/// per write, and nothing is allocated per frame. A large body (at least [`VECTORED_BODY`])
/// is not copied: it joins the queue as its own `Bytes`, after the bytes before it, and the
/// writer hands the queue to one vectored write. A lone frame (nothing queued, nothing
/// being written, no other call in flight) is written at once by the task that made it,
/// which saves the writer task's wake-up on the ping-pong path.
///
/// Two kinds of frames enter: new calls ([`Outbox::push_call`]), refused once `limit`
/// bytes wait, and answers and events ([`Outbox::push`]), which are never refused while
/// the connection is open, because an answer owed must not vanish. A server bounds its
/// answers by not reading new requests while the outbox is over its limit
/// ([`Outbox::wait_below_limit`]); a peer that stops reading altogether is cut off by the
/// writer's stall timeout.
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    wake: Notify,
    /// Woken after every finished write, and when the writer ends.
    drained: Notify,
    /// Cancelled when the writer ends: the connection can no longer send. The owner passes
    /// in a token it already watches, so its read loop needs no extra branch for this.
    ended: CancellationToken,
    limit: usize,
    /// Bytes queued or being written, mirrored out of the lock so the read loop can check
    /// it per frame without contending with the writer.
    queued: AtomicUsize,
    /// How long one write may make no progress before the peer is given up on.
    stall_timeout: Duration,
    in_flight: InFlightProbe,
    activity: Arc<Activity>,
}

struct OutboxState {
    /// Large bodies and what was queued before each of them, to be written before `buf`.
    parts: VecDeque<Bytes>,
    buf: BytesMut,
    closed: bool,
    /// While held, appends do not wake the writer; releasing does, once.
    held: bool,
    /// Bytes of the batch the writer task took last (0 once it found nothing to take).
    writing: usize,
    /// The socket, shared with the writer task; dropped (sending FIN) when it ends.
    socket: Option<Arc<Sink>>,
}

impl Outbox {
    pub(crate) fn new(
        limit: usize,
        stall_timeout: Duration,
        socket: Sink,
        activity: Arc<Activity>,
        in_flight: InFlightProbe,
        ended: CancellationToken,
    ) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState {
                parts: VecDeque::new(),
                buf: BytesMut::with_capacity(BUFFER_CAPACITY),
                closed: false,
                held: false,
                writing: 0,
                socket: Some(Arc::new(socket)),
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            ended,
            limit,
            queued: AtomicUsize::new(0),
            stall_timeout,
            in_flight,
            activity,
        }
    }

    /// Appends a new call's frame: what `encode` writes, then `body`. Fails when the
    /// connection is closed (the call was not sent: [`Error::Unavailable`]), when the peer
    /// reads so slowly that `limit` bytes already wait, or when `encode` fails (nothing of
    /// it stays queued).
    pub(crate) fn push_call(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<()>,
        body: &Bytes,
    ) -> Result<()> {
        self.append(true, encode, body)
    }

    /// Appends an answer (what `encode` writes, then `body`) or an event (an empty `body`).
    /// Fails only when the connection is closed.
    pub(crate) fn push(&self, encode: impl FnOnce(&mut BytesMut), body: &Bytes) -> Result<()> {
        let encode = |buf: &mut BytesMut| {
            encode(buf);
            Ok(())
        };
        self.append(false, encode, body)
    }

    /// Bytes queued or being written.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Returns once fewer than `limit` bytes are queued, or the connection can no longer
    /// send (the caller then finds out on its next push or read).
    pub(crate) async fn wait_below_limit(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued() < self.limit || self.ended.is_cancelled() {
                return;
            }
            drained.await;
        }
    }

    /// True once the writer has ended (the peer is gone or stalled, or the connection was
    /// closed and flushed).
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    fn append(
        &self,
        limited: bool,
        encode: impl FnOnce(&mut BytesMut) -> Result<()>,
        body: &Bytes,
    ) -> Result<()> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Error::unavailable("connection closed", None));
            }
            let queued = self.queued.load(Ordering::Relaxed);
            if limited && queued >= self.limit {
                return Err(Error::Rejected(format!(
                    "{queued} bytes already waiting to be written to this connection"
                )));
            }
            let alone = state.buf.is_empty()
                && state.parts.is_empty()
                && state.writing == 0
                && !state.held
                && (self.in_flight)() <= 1;
            let before = state.buf.len();
            encode(&mut state.buf)?;
            let large = body.len() >= VECTORED_BODY;
            if !large {
                state.buf.extend_from_slice(body);
            }
            // The part of a large body not written yet.
            let mut body_left = if large { body.clone() } else { Bytes::new() };
            // A full write leaves nothing for the writer; anything else (a partial write,
            // WouldBlock, an error) is left to it, in order.
            if alone
                && let Some(socket) = &state.socket
                && let Sink::Plain(socket) = &**socket
                && let Ok(written) = match large {
                    false => socket.try_write(&state.buf),
                    true => {
                        socket.try_write_vectored(&[IoSlice::new(&state.buf), IoSlice::new(body)])
                    }
                }
            {
                let from_buf = written.min(state.buf.len());
                state.buf.advance(from_buf);
                body_left.advance(written - from_buf);
                if state.buf.is_empty() && body_left.is_empty() {
                    self.activity.wrote();
                    return Ok(());
                }
            }
            // `before` is 0 whenever the direct write above ran.
            let added = state.buf.len() - before + body_left.len();
            if !body_left.is_empty() {
                let ahead = state.buf.split().freeze();
                if !ahead.is_empty() {
                    state.parts.push_back(ahead);
                }
                state.parts.push_back(body_left);
            }
            self.queued.fetch_add(added, Ordering::Relaxed);
            if state.held {
                return Ok(());
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Holds back the writer while the caller is about to append several frames (a
    /// server answering a batch of requests read at once), so they leave in one write.
    pub(crate) fn hold(&self) {
        self.lock().held = true;
    }

    /// Ends [`Outbox::hold`] and wakes the writer for what was appended meanwhile.
    pub(crate) fn release(&self) {
        let pending = {
            let mut state = self.lock();
            state.held = false;
            !state.buf.is_empty() || !state.parts.is_empty()
        };
        if pending {
            self.wake.notify_one();
        }
    }

    /// Stops accepting frames; the writer flushes what is queued, then ends.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic while holding this lock can only come from `encode` writing to a BytesMut
        // (allocation failure); the buffer is still consistent, so keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes queued frames until the outbox is closed and drained, or the socket fails or
/// stalls.
pub(crate) async fn write_loop(outbox: Arc<Outbox>) -> std::io::Result<()> {
    let Some(socket) = outbox.lock().socket.clone() else {
        return Ok(());
    };
    let result = write_batches(&outbox, &socket).await;
    if let Sink::Stream(stream) = &*socket {
        // TLS says goodbye (close_notify) before the socket closes, so the peer can tell
        // an orderly end from a truncation.
        let mut stream = stream.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }
    {
        let mut state = outbox.lock();
        state.socket = None;
        state.closed = true;
        state.writing = 0;
        state.buf.clear();
        state.parts.clear();
        outbox.queued.store(0, Ordering::Relaxed);
    }
    outbox.ended.cancel();
    outbox.drained.notify_waiters();
    result
}

async fn write_batches(outbox: &Outbox, socket: &Sink) -> std::io::Result<()> {
    let mut batch = BytesMut::with_capacity(BUFFER_CAPACITY);
    loop {
        // When other calls are in flight their frames are about to follow: step back so
        // they join this write. Without it the first frame of a burst wakes this task (often
        // on the other core) and goes out alone: 0.8 syscalls per frame at 64 concurrent
        // calls. One yield lets the tasks already queued append; the second also lets the
        // ones they woke (callers whose answers were just read) append. Measured at c64,
        // same run: one yield p99 540-690 us, two 380-500 us, same QPS. With a single call
        // in flight there is nothing to wait for, so ping-pong latency is untouched.
        if (outbox.in_flight)() > 1 {
            for _ in 0..BATCH_YIELDS {
                tokio::task::yield_now().await;
            }
        }
        let (closed, mut parts, total) = {
            let mut state = outbox.lock();
            std::mem::swap(&mut state.buf, &mut batch);
            let parts = std::mem::take(&mut state.parts);
            state.writing = batch.len() + parts.iter().map(Bytes::len).sum::<usize>();
            (state.closed, parts, state.writing)
        };
        if total == 0 {
            if closed {
                return Ok(());
            }
            outbox.wake.notified().await;
            continue;
        }
        if parts.is_empty() {
            match socket {
                Sink::Plain(socket) => write_all(socket, &batch, outbox.stall_timeout).await?,
                Sink::Stream(stream) => {
                    write_stream(&mut **stream.lock().await, &batch, outbox.stall_timeout).await?
                }
            }
        } else {
            if !batch.is_empty() {
                parts.push_back(batch.split().freeze());
            }
            match socket {
                Sink::Plain(socket) => {
                    write_all_vectored(socket, &mut parts, outbox.stall_timeout).await?
                }
                Sink::Stream(stream) => {
                    // An encrypting stream copies anyway: one part at a time.
                    let mut stream = stream.lock().await;
                    for part in &parts {
                        write_stream(&mut **stream, part, outbox.stall_timeout).await?;
                    }
                }
            }
        }
        outbox.activity.wrote();
        // Only a reader paused at the limit waits on `drained`; wake it when this write
        // may have taken the outbox below the limit.
        if outbox.queued.fetch_sub(total, Ordering::Relaxed) >= outbox.limit {
            outbox.drained.notify_waiters();
        }
        batch.clear();
        // `batch` and the outbox's buffer swap places, so shrinking this one after a burst
        // shrinks both in turn.
        if batch.capacity() > SHRINK_ABOVE {
            batch = BytesMut::with_capacity(BUFFER_CAPACITY);
        }
    }
}

/// `write_all` through `&OwnedWriteHalf`, so the socket can be shared with direct writers.
/// Fails with `TimedOut` when the socket accepts nothing for `stall_timeout`: a peer that
/// stopped reading must not hold the connection's memory forever.
async fn write_all(
    socket: &OwnedWriteHalf,
    mut bytes: &[u8],
    stall_timeout: Duration,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        writable(socket, stall_timeout).await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`write_all`] of several parts in order, up to [`MAX_SLICES`] of them per syscall;
/// `parts` is consumed as it is written.
async fn write_all_vectored(
    socket: &OwnedWriteHalf,
    parts: &mut VecDeque<Bytes>,
    stall_timeout: Duration,
) -> std::io::Result<()> {
    while !parts.is_empty() {
        writable(socket, stall_timeout).await?;
        let result = {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = parts.len().min(MAX_SLICES);
            for (slice, part) in slices.iter_mut().zip(parts.iter()) {
                *slice = IoSlice::new(part);
            }
            socket.try_write_vectored(&slices[..count])
        };
        match result {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(mut written) => {
                while let Some(first) = parts.front_mut() {
                    if written < first.len() {
                        first.advance(written);
                        break;
                    }
                    written -= first.len();
                    parts.pop_front();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `socket` takes bytes, failing with `TimedOut` after `stall_timeout`.
async fn writable(socket: &OwnedWriteHalf, stall_timeout: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(stall_timeout, socket.writable()).await {
        Ok(ready) => ready,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("peer read nothing for {stall_timeout:?}"),
        )),
    }
}

/// `write_all` and `flush` on a stream, failing like [`write_all`] when it accepts nothing
/// for `stall_timeout`.
async fn write_stream(
    stream: &mut (dyn AsyncWrite + Send + Unpin),
    mut bytes: &[u8],
    stall_timeout: Duration,
) -> std::io::Result<()> {
    let stalled = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("peer read nothing for {stall_timeout:?}"),
        )
    };
    while !bytes.is_empty() {
        match tokio::time::timeout(stall_timeout, stream.write(bytes)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(written)) => bytes = &bytes[written..],
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stalled()),
        }
    }
    tokio::time::timeout(stall_timeout, stream.flush())
        .await
        .map_err(|_| stalled())?
}

/// When the connection last read and wrote, for heartbeats and idle detection.
pub(crate) struct Activity {
    origin: Instant,
    last_read_ms: AtomicU64,
    last_write_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub(crate) fn read(&self) {
        self.last_read_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn wrote(&self) {
        self.last_write_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }
}

/// Sends a heartbeat request after `heartbeat` without traffic in either direction, and
/// returns once nothing was read for `idle_timeout` (the caller then closes).
pub(crate) async fn keepalive(
    outbox: &Outbox,
    activity: &Activity,
    heartbeat: Duration,
    idle_timeout: Duration,
    next_id: impl Fn() -> u64,
) {
    loop {
        let last_read = activity.at(activity.last_read_ms.load(Ordering::Relaxed));
        let last_write = activity.at(activity.last_write_ms.load(Ordering::Relaxed));
        let now = Instant::now();
        if now >= last_read + idle_timeout {
            return;
        }
        let quiet_since = last_read.min(last_write);
        if now >= quiet_since + heartbeat {
            let id = next_id();
            let sent = outbox.push(
                |buf| {
                    Header {
                        flags: FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT,
                        status: 0,
                        request_id: id,
                        body_len: 0,
                    }
                    .encode(buf)
                },
                &Bytes::new(),
            );
            if sent.is_err() {
                return;
            }
            // The write time updates once the writer runs; wait a full period before the
            // next heartbeat rather than re-reading a stale timestamp.
            tokio::time::sleep(heartbeat.min(last_read + idle_timeout - now)).await;
            continue;
        }
        let wake = (quiet_since + heartbeat).min(last_read + idle_timeout);
        tokio::time::sleep_until(wake).await;
    }
}

/// Ends `work` when `token` is cancelled.
pub(crate) async fn until_cancelled<F: std::future::Future<Output = ()>>(
    token: &CancellationToken,
    work: F,
) {
    tokio::select! {
        _ = token.cancelled() => {}
        _ = work => {}
    }
}
