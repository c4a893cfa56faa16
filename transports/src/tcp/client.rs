//! The consumer end: one multiplexed connection per provider, reconnected with backoff.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rpc_core::{Codec, Error, Request, Response, Result, Status};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{oneshot, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::TcpConfig;
use super::conn::{Activity, Outbox, keepalive, until_cancelled, write_loop};
use super::frame::{FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, Frame, FrameDecoder, Header};
use super::head;

/// A [`rpc_core::Channel`] to one provider address.
#[derive(Clone)]
pub(crate) struct TcpChannel {
    endpoint: Arc<Endpoint>,
}

impl TcpChannel {
    pub(crate) fn new(address: &str, config: Arc<TcpConfig>) -> TcpChannel {
        let (sender, state) = watch::channel(ConnState::Connecting);
        TcpChannel {
            endpoint: Arc::new(Endpoint {
                address: address.into(),
                config,
                state,
                started: AtomicBool::new(false),
                sender: Mutex::new(Some(sender)),
            }),
        }
    }
}

impl Service<Request> for TcpChannel {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            let connection = endpoint.connection(req.deadline, req.timeout).await?;
            connection.call(req).await
        })
    }
}

#[derive(Clone)]
enum ConnState {
    Connecting,
    Connected(Arc<Connection>),
    Failed(Error),
}

/// The connection state of one address, kept current by a manager task that lives as long
/// as some channel to the address does.
struct Endpoint {
    address: Arc<str>,
    config: Arc<TcpConfig>,
    state: watch::Receiver<ConnState>,
    started: AtomicBool,
    sender: Mutex<Option<watch::Sender<ConnState>>>,
}

impl Endpoint {
    /// The live connection, waiting (until the deadline) while one is being opened.
    ///
    /// After a failed attempt calls fail at once with that attempt's error instead of
    /// waiting for the next one: a caller with other providers should move on.
    async fn connection(&self, deadline: Instant, budget: Duration) -> Result<Arc<Connection>> {
        self.start();
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                ConnState::Connected(connection) => return Ok(connection.clone()),
                ConnState::Failed(error) => return Err(error.clone()),
                ConnState::Connecting => {}
            }
            match tokio::time::timeout_at(deadline.into(), state.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::transport("connection manager stopped")),
                Err(_) => return Err(Error::Timeout(budget)),
            }
        }
    }

    fn start(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            self.started.store(true, Ordering::Release);
            tokio::spawn(manage(self.address.clone(), self.config.clone(), sender));
        }
    }
}

/// Connects, waits for the connection to close, reconnects: the first retry comes right
/// after a disconnect, later ones back off exponentially up to the configured maximum.
/// Ends when every channel to the address is dropped.
async fn manage(address: Arc<str>, config: Arc<TcpConfig>, state: watch::Sender<ConnState>) {
    let mut backoff = config.reconnect_backoff;
    loop {
        state.send_replace(ConnState::Connecting);
        let attempt = tokio::select! {
            attempt = Connection::open(&address, &config) => attempt,
            _ = state.closed() => return,
        };
        match attempt {
            Ok(connection) => {
                let opened = Instant::now();
                tracing::debug!(%address, "connected");
                state.send_replace(ConnState::Connected(connection.clone()));
                tokio::select! {
                    _ = connection.closed.cancelled() => {}
                    _ = state.closed() => {
                        connection.fail(Error::transport("channel dropped"));
                        return;
                    }
                }
                tracing::info!(%address, "connection lost, reconnecting");
                // A provider that accepts and drops at once must not make us spin.
                if opened.elapsed() >= Duration::from_secs(1) {
                    backoff = config.reconnect_backoff;
                    continue;
                }
            }
            Err(error) => {
                tracing::debug!(%address, %error, "connect failed");
                state.send_replace(ConnState::Failed(error));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = state.closed() => return,
        }
        backoff = (backoff * 2).min(config.reconnect_backoff_max);
    }
}

/// Request ids are sequential, so they are their own hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

struct Waiter {
    tx: oneshot::Sender<Result<Response>>,
    budget: Duration,
}

struct Pending {
    calls: IdMap<Waiter>,
    /// Set once: the error every later call on this connection fails with.
    closed: Option<Error>,
}

/// One open TCP connection multiplexing many calls.
pub(crate) struct Connection {
    peer: Arc<str>,
    outbox: Arc<Outbox>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    max_frame_len: u32,
    closed: CancellationToken,
}

impl Connection {
    async fn open(address: &str, config: &TcpConfig) -> Result<Arc<Connection>> {
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| {
                Error::transport(format!(
                    "connect to {address} timed out after {:?}",
                    config.connect_timeout
                ))
            })?
            .map_err(|e| Error::io(format!("connect to {address} failed"), e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io(format!("set TCP_NODELAY on {address}"), e))?;
        let (read, write) = stream.into_split();
        let activity = Arc::new(Activity::new());
        let connection = Arc::new(Connection {
            peer: address.into(),
            outbox: Arc::new(Outbox::new(
                config.max_write_buffer,
                write,
                activity.clone(),
            )),
            pending: Mutex::new(Pending {
                calls: IdMap::default(),
                closed: None,
            }),
            next_id: AtomicU64::new(1),
            max_frame_len: config.max_frame_len,
            closed: CancellationToken::new(),
        });

        let writer = connection.clone();
        tokio::spawn(async move {
            let result = write_loop(writer.outbox.clone()).await;
            let error = match result {
                Ok(()) => Error::transport(format!("connection to {} closed", writer.peer)),
                Err(e) => Error::io(format!("write to {} failed", writer.peer), e),
            };
            writer.fail(error);
        });

        let reader = connection.clone();
        let read_activity = activity.clone();
        let read_limit = config.max_frame_len;
        tokio::spawn(async move {
            let token = reader.closed.clone();
            until_cancelled(&token, reader.read_loop(read, read_activity, read_limit)).await;
        });

        let keeper = connection.clone();
        let (heartbeat, idle_timeout) = (config.heartbeat_interval, config.idle_timeout);
        tokio::spawn(async move {
            let token = keeper.closed.clone();
            until_cancelled(&token, async {
                keepalive(&keeper.outbox, &activity, heartbeat, idle_timeout, || {
                    keeper.next_id.fetch_add(1, Ordering::Relaxed)
                })
                .await;
                keeper.fail(Error::transport(format!(
                    "connection to {} idle for {idle_timeout:?}",
                    keeper.peer
                )));
            })
            .await;
        });
        Ok(connection)
    }

    async fn read_loop(self: &Arc<Self>, read: OwnedReadHalf, activity: Arc<Activity>, limit: u32) {
        let mut frames = FramedRead::with_capacity(read, FrameDecoder::new(limit), 64 * 1024);
        while let Some(frame) = frames.next().await {
            match frame {
                Ok(frame) => {
                    activity.read();
                    self.on_frame(frame);
                }
                Err(error) => {
                    tracing::warn!(peer = %self.peer, %error, "bad frame from provider, closing");
                    self.fail(error.into());
                    return;
                }
            }
        }
        self.fail(Error::transport(format!(
            "connection to {} closed by peer",
            self.peer
        )));
    }

    fn on_frame(&self, frame: Frame) {
        let header = frame.header;
        if header.is_request() {
            if header.is_event() && header.is_two_way() {
                let _ = self.outbox.push(|buf| {
                    Header {
                        flags: FLAG_EVENT,
                        status: Status::Ok.code(),
                        request_id: header.request_id,
                        body_len: 0,
                    }
                    .encode(buf)
                });
            }
            return;
        }
        if header.is_event() {
            return;
        }
        let Some(waiter) = self.remove(header.request_id) else {
            // The caller already gave up (timeout or cancellation).
            return;
        };
        let result = match Status::from_code(header.status) {
            Status::Ok => Codec::from_id(header.serialization_id()).map(|codec| Response {
                codec,
                body: frame.body,
            }),
            status => Err(Error::from_status(
                status,
                String::from_utf8_lossy(&frame.body).into_owned(),
                waiter.budget,
            )),
        };
        let _ = waiter.tx.send(result);
    }

    /// Closes the connection and fails every call in flight on it with `error`.
    fn fail(&self, error: Error) {
        let waiters = {
            let mut pending = self.lock();
            if pending.closed.is_none() {
                pending.closed = Some(error.clone());
            }
            self.outbox.set_in_flight(0);
            std::mem::take(&mut pending.calls)
        };
        self.outbox.close();
        self.closed.cancel();
        for (_, waiter) in waiters {
            let _ = waiter.tx.send(Err(error.clone()));
        }
    }

    /// Takes the waiter of call `id` out of the in-flight table.
    fn remove(&self, id: u64) -> Option<Waiter> {
        let mut pending = self.lock();
        let waiter = pending.calls.remove(&id);
        self.outbox.set_in_flight(pending.calls.len());
        waiter
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Only map operations run under this lock; a poisoned map is still a valid map.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn call(self: Arc<Self>, req: Request) -> Result<Response> {
        let remaining = req.deadline.saturating_duration_since(Instant::now());
        let timeout_ms =
            head::Decimal::new(remaining.as_millis().clamp(1, u64::MAX as u128) as u64);
        let timeout_ms = timeout_ms.as_str();
        let head_len = head::head_len(&req, timeout_ms)?;
        let body_len = head_len + req.body.len();
        if body_len > self.max_frame_len as usize {
            return Err(Error::FrameTooLarge {
                size: body_len as u64,
                limit: self.max_frame_len,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let two_way = !req.oneway;
        let receiver = if two_way {
            let (tx, rx) = oneshot::channel();
            let mut pending = self.lock();
            if let Some(error) = &pending.closed {
                return Err(error.clone());
            }
            pending.calls.insert(
                id,
                Waiter {
                    tx,
                    budget: req.timeout,
                },
            );
            self.outbox.set_in_flight(pending.calls.len());
            Some(rx)
        } else {
            None
        };
        let flags = FLAG_REQUEST | if two_way { FLAG_TWO_WAY } else { 0 } | req.codec.id();
        let pushed = self.outbox.push(|buf| {
            Header {
                flags,
                status: 0,
                request_id: id,
                body_len: body_len as u32,
            }
            .encode(buf);
            head::encode_head(&req, timeout_ms, buf);
            buf.extend_from_slice(&req.body);
        });
        if let Err(error) = pushed {
            self.remove(id);
            return Err(error);
        }
        let Some(receiver) = receiver else {
            return Ok(Response {
                codec: req.codec,
                body: Bytes::new(),
            });
        };
        let mut guard = CancelOnDrop {
            connection: &self,
            id,
            armed: true,
        };
        let result = receiver.await;
        guard.armed = false;
        match result {
            Ok(result) => result,
            Err(_) => Err(Error::transport(format!(
                "connection to {} closed",
                self.peer
            ))),
        }
    }
}

/// Tells the provider to abort a call whose caller stopped waiting.
struct CancelOnDrop<'a> {
    connection: &'a Connection,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.connection.remove(self.id).is_some() {
            let id = self.id;
            let _ = self.connection.outbox.push(|buf| {
                Header {
                    flags: FLAG_REQUEST | FLAG_EVENT,
                    status: 0,
                    request_id: id,
                    body_len: 0,
                }
                .encode(buf)
            });
        }
    }
}
