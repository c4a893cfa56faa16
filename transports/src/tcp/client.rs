//! The consumer end: one multiplexed connection per provider, reconnected with backoff.
//!
//! # While the provider is down
//!
//! A per-address manager task connects, and after a failed attempt waits out a backoff
//! (100 ms, doubling up to 5 s by default) before the next. A call that finds the last
//! attempt failed has two choices: fail at once with that attempt's error
//! ([`Error::Unavailable`], so a cluster moves on to another provider), or wait for the
//! next attempt. The rule:
//!
//! - it waits only when the request says no other provider is left to try
//!   ([`Request::wait_for_ready`], set per attempt by the cluster), since waiting on a
//!   down provider while another could answer only adds latency; a transport cannot know
//!   this itself: its channel is per address and shared by every client, and
//!   [`Request::attempt`] does not say whether the next attempt would go elsewhere;
//! - and only when the next attempt starts before the call's deadline: a caller whose
//!   budget ends during the backoff gets the cached error at once, as it would after
//!   waiting;
//! - then it waits for that attempt and applies the same rule to its outcome, so a call
//!   with a generous deadline rides out several failed attempts and succeeds as soon as
//!   the provider is back; if the deadline passes first, the error is a timeout naming the
//!   address and the last attempt's failure.
//!
//! While an attempt runs, every call waits for it (until its deadline), as before.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rpc_core::transport::IdMap;
use rpc_core::{Code, Error, Request, Response, Result};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::conn::{Activity, Outbox, Sink, keepalive, until_cancelled, write_loop};
use super::frame::{
    FLAG_EVENT, FLAG_REPLY_ATTACHMENTS, FLAG_REQUEST, FLAG_TWO_WAY, Frame, Header, Incoming,
    SkippingDecoder, codec_for_id, not_this_protocol, serialization_id,
};
use super::head;
use super::status::Status;
use super::{MAX_FRAME_LEN_SETTING, TcpConfig};

/// A [`rpc_core::Channel`] to one provider address.
#[derive(Clone)]
pub(crate) struct TcpChannel {
    endpoint: Arc<Endpoint>,
}

/// The endpoints of one transport by address, so every channel to an address shares one
/// connection (two clients, or a registry update re-listing a provider). Entries are weak:
/// when the last channel to an address goes, its connection closes.
#[derive(Default)]
pub(crate) struct Endpoints {
    by_address: Mutex<std::collections::HashMap<Arc<str>, std::sync::Weak<Endpoint>>>,
}

impl Endpoints {
    /// A channel to `address`, sharing the live endpoint if there is one.
    pub(crate) fn channel(&self, address: &str, config: &Arc<TcpConfig>) -> TcpChannel {
        let mut by_address = self
            .by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(endpoint) = by_address.get(address).and_then(std::sync::Weak::upgrade) {
            return TcpChannel { endpoint };
        }
        by_address.retain(|_, endpoint| endpoint.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::new(address, config.clone()));
        by_address.insert(endpoint.address.clone(), Arc::downgrade(&endpoint));
        TcpChannel { endpoint }
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
            let connection = endpoint.connection(&req).await?;
            connection.call(req).await
        })
    }
}

#[derive(Clone)]
enum ConnState {
    /// An attempt is running; `last_error` is why the connection before it failed or
    /// ended, if one did (for the timeout message of calls waiting on it).
    Connecting {
        last_error: Option<Error>,
    },
    Connected(Arc<ClientConnection>),
    /// The last attempt failed (or the connection it opened dropped at once); the next
    /// starts at `retry_at`.
    Failed {
        error: Error,
        retry_at: Instant,
    },
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
    fn new(address: &str, config: Arc<TcpConfig>) -> Endpoint {
        let (sender, state) = watch::channel(ConnState::Connecting { last_error: None });
        Endpoint {
            address: address.into(),
            config,
            state,
            started: AtomicBool::new(false),
            sender: Mutex::new(Some(sender)),
        }
    }

    /// The live connection for `req`, waiting (until its deadline) while one is being
    /// opened, and after a failed attempt only as the module docs say: with
    /// [`Request::wait_for_ready`] and a next attempt due before the deadline. Otherwise
    /// the failed attempt's error comes back at once, so a caller with other providers
    /// moves on.
    async fn connection(&self, req: &Request) -> Result<Arc<ClientConnection>> {
        self.start();
        let mut state = self.state.clone();
        loop {
            // The guard must not live across the await below.
            let last_error = match &*state.borrow_and_update() {
                ConnState::Connected(connection) => return Ok(connection.clone()),
                ConnState::Failed { error, retry_at } => {
                    if !req.wait_for_ready || *retry_at >= req.deadline {
                        return Err(error.clone());
                    }
                    Some(error.clone())
                }
                ConnState::Connecting { last_error } => last_error.clone(),
            };
            match tokio::time::timeout_at(req.deadline.into(), state.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(Error::unavailable("connection manager stopped", None));
                }
                // Shares the instant of the client's own deadline timer and is polled
                // first, so the caller learns that the call never got a connection.
                Err(_) => {
                    return Err(Error::timeout_connecting(
                        req.timeout,
                        &*self.address,
                        last_error.as_ref(),
                    ));
                }
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
    let mut last_error = None;
    loop {
        state.send_replace(ConnState::Connecting {
            last_error: last_error.take(),
        });
        let attempt = tokio::select! {
            attempt = ClientConnection::open(&address, &config) => attempt,
            _ = state.closed() => return,
        };
        let error = match attempt {
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
                let error = never_sent(&connection.closed_error());
                // A provider that accepts and drops at once must not make us spin.
                if opened.elapsed() >= Duration::from_secs(1) {
                    backoff = config.reconnect_backoff;
                    last_error = Some(error);
                    continue;
                }
                error
            }
            Err(error) => {
                tracing::debug!(%address, %error, "connect failed");
                error
            }
        };
        state.send_replace(ConnState::Failed {
            error: error.clone(),
            retry_at: Instant::now() + backoff,
        });
        last_error = Some(error);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = state.closed() => return,
        }
        backoff = (backoff * 2).min(config.reconnect_backoff_max);
    }
}

struct Waiter {
    tx: oneshot::Sender<Result<Response>>,
    budget: Duration,
}

/// The calls awaiting answers on one connection. It owns the in-flight count the outbox
/// reads, so the count changes only where the table does.
struct CallTable {
    calls: IdMap<Waiter>,
    /// Set once: the error every later call on this connection fails with.
    closed: Option<Error>,
    in_flight: Arc<AtomicUsize>,
}

impl CallTable {
    fn insert(&mut self, id: u64, waiter: Waiter) {
        self.calls.insert(id, waiter);
        self.in_flight.store(self.calls.len(), Ordering::Relaxed);
    }

    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.calls.remove(&id);
        self.in_flight.store(self.calls.len(), Ordering::Relaxed);
        waiter
    }

    fn take_all(&mut self) -> IdMap<Waiter> {
        self.in_flight.store(0, Ordering::Relaxed);
        std::mem::take(&mut self.calls)
    }
}

/// Connects to `address`, from `local_ip` when given.
async fn dial(address: &str, local_ip: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(local_ip) = local_ip else {
        return TcpStream::connect(address).await;
    };
    let mut last_error = None;
    for remote in tokio::net::lookup_host(address).await? {
        if remote.is_ipv4() != local_ip.is_ipv4() {
            continue;
        }
        let socket = if remote.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(local_ip, 0))?;
        match socket.connect(remote).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address of the same family as {local_ip}"),
        )
    }))
}

/// One open TCP connection to a provider, multiplexing many calls.
pub(crate) struct ClientConnection {
    peer: Arc<str>,
    outbox: Arc<Outbox>,
    pending: Mutex<CallTable>,
    next_id: AtomicU64,
    closed: CancellationToken,
}

impl ClientConnection {
    async fn open(address: &str, config: &TcpConfig) -> Result<Arc<ClientConnection>> {
        let stream = tokio::time::timeout(config.connect_timeout, dial(address, config.local_ip))
            .await
            .map_err(|_| {
                Error::unavailable(
                    format!(
                        "connect to {address} timed out after {:?}",
                        config.connect_timeout
                    ),
                    None,
                )
            })?
            .map_err(|e| Error::unavailable(format!("connect to {address} failed"), Some(e)))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::unavailable(format!("set TCP_NODELAY on {address}"), Some(e)))?;
        let (read, write): (Box<dyn AsyncRead + Send + Unpin>, Sink) = match &config.client_tls {
            None => {
                let (read, write) = stream.into_split();
                (Box::new(read), Sink::Plain(write))
            }
            Some(tls) => {
                let name = crate::tls::server_name_for(address, tls.server_name.as_deref())?;
                let stream = tokio::time::timeout(
                    config.connect_timeout,
                    tls.connector.connect(name, stream),
                )
                .await
                .map_err(|_| {
                    Error::unavailable(
                        format!(
                            "TLS handshake with {address} timed out after {:?}",
                            config.connect_timeout
                        ),
                        None,
                    )
                })?
                .map_err(|e| {
                    Error::unavailable(format!("TLS handshake with {address} failed"), Some(e))
                })?;
                let (read, write) = tokio::io::split(stream);
                (Box::new(read), Sink::stream(write))
            }
        };
        let activity = Arc::new(Activity::new());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let probe = in_flight.clone();
        let closed = CancellationToken::new();
        let connection = Arc::new(ClientConnection {
            peer: address.into(),
            outbox: Arc::new(Outbox::new(
                config.max_write_buffer,
                config.write_stall_timeout,
                write,
                activity.clone(),
                Box::new(move || probe.load(Ordering::Relaxed)),
                closed.clone(),
            )),
            pending: Mutex::new(CallTable {
                calls: IdMap::default(),
                closed: None,
                in_flight,
            }),
            next_id: AtomicU64::new(1),
            closed,
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

    async fn read_loop(
        self: &Arc<Self>,
        read: Box<dyn AsyncRead + Send + Unpin>,
        activity: Arc<Activity>,
        limit: u32,
    ) {
        let mut frames =
            FramedRead::with_capacity(read, SkippingDecoder::new(limit, false), 64 * 1024);
        while let Some(frame) = frames.next().await {
            match frame {
                Ok(Incoming::Frame(frame)) => {
                    activity.read();
                    self.on_frame(frame);
                }
                Ok(Incoming::TooLarge(header)) => {
                    activity.read();
                    self.on_too_large(header, limit);
                }
                Err(error) if error.is_disconnect() => {
                    tracing::debug!(peer = %self.peer, %error, "provider went away");
                    self.fail(error.into());
                    return;
                }
                Err(crate::Error::BadMagic(_)) => {
                    let error =
                        Error::Protocol(not_this_protocol(&self.peer, frames.read_buffer()));
                    tracing::warn!(peer = %self.peer, %error, "closing");
                    self.fail(error);
                    return;
                }
                Err(error) => {
                    tracing::warn!(peer = %self.peer, %error, "unreadable frame from provider, closing");
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

    /// A response over this side's limit, whose body is being skipped: only its call
    /// fails, and the connection stays.
    fn on_too_large(&self, header: Header, limit: u32) {
        tracing::debug!(peer = %self.peer, id = header.request_id, size = header.body_len, limit,
            "response over the limit, skipped");
        if let Some(waiter) = self.remove(header.request_id) {
            let _ = waiter.tx.send(Err(Error::response_too_large(
                header.body_len.into(),
                limit.into(),
                MAX_FRAME_LEN_SETTING,
            )));
        }
    }

    fn on_frame(&self, frame: Frame) {
        let header = frame.header;
        if header.is_request() {
            if header.is_event() && header.is_two_way() {
                let _ = self.outbox.push(
                    |buf| {
                        Header {
                            flags: FLAG_EVENT,
                            status: Status::Ok.byte(),
                            request_id: header.request_id,
                            body_len: 0,
                        }
                        .encode(buf)
                    },
                    &Bytes::new(),
                );
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
        let result = match Status::from_byte(header.status).to_code() {
            None => match codec_for_id(header.serialization_id()) {
                Ok(codec) if header.flags & FLAG_REPLY_ATTACHMENTS == 0 => {
                    Ok(Response::new(codec, frame.body))
                }
                Ok(codec) => match super::head::decode_reply_attachments(&frame.body) {
                    Ok((attachments, at)) => Ok(Response {
                        codec,
                        body: frame.body.slice(at..),
                        attachments,
                    }),
                    Err(error) => Err(Error::Remote {
                        code: Code::BadResponse,
                        message: error.to_string(),
                    }),
                },
                Err(error) => Err(error.into()),
            },
            Some(Code::Timeout) => Err(Error::timeout_in_handler(waiter.budget, &*self.peer)),
            Some(code) => {
                let message = String::from_utf8_lossy(&frame.body);
                let (code, message) = super::status::read_message(code, &message);
                match request_too_large(code, message) {
                    Some((size, limit)) => {
                        Err(Error::request_too_large(size, limit, MAX_FRAME_LEN_SETTING))
                    }
                    None => Err(Error::from_code(code, message.to_owned(), waiter.budget)),
                }
            }
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
            pending.take_all()
        };
        self.outbox.close();
        self.closed.cancel();
        for (_, waiter) in waiters {
            let _ = waiter.tx.send(Err(error.clone()));
        }
    }

    /// The error the connection closed with (a closed connection has one).
    fn closed_error(&self) -> Error {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| Error::transport(format!("connection to {} closed", self.peer)))
    }

    /// Takes the waiter of call `id` out of the in-flight table.
    fn remove(&self, id: u64) -> Option<Waiter> {
        self.lock().remove(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CallTable> {
        // Only map operations run under this lock; a poisoned map is still a valid map.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `req` and waits for its answer until its deadline.
    ///
    /// The request is not checked against this side's `max_frame_len`: that limits what
    /// this side receives (responses). The provider checks requests against its own limit
    /// and refuses one over it, naming its limit; only a body the frame header cannot
    /// describe (over 4 GiB) is refused here.
    async fn call(self: Arc<Self>, req: Request) -> Result<Response> {
        let remaining = req.deadline.saturating_duration_since(Instant::now());
        let timeout_ms = remaining.as_millis().clamp(1, u64::MAX as u128) as u64;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let two_way = !req.oneway;
        let receiver = if two_way {
            let (tx, rx) = oneshot::channel();
            let mut pending = self.lock();
            if let Some(error) = &pending.closed {
                // Nothing was sent: the caller may try another provider.
                return Err(never_sent(error));
            }
            pending.insert(
                id,
                Waiter {
                    tx,
                    budget: req.timeout,
                },
            );
            Some(rx)
        } else {
            None
        };
        let header = Header {
            flags: FLAG_REQUEST
                | if two_way { FLAG_TWO_WAY } else { 0 }
                | serialization_id(req.codec),
            status: 0,
            request_id: id,
            body_len: 0,
        };
        let pushed = self.outbox.push_call(
            |buf| head::encode_request_head(&req, header, timeout_ms, u32::MAX, buf),
            &req.body,
        );
        if let Err(error) = pushed {
            self.remove(id);
            return Err(error);
        }
        let Some(receiver) = receiver else {
            return Ok(Response::new(req.codec, Bytes::new()));
        };
        let mut guard = CancelOnDrop {
            connection: &self,
            id,
            armed: true,
        };
        // Shares the instant of the client's own deadline timer and is polled first, so
        // the caller learns that the request went out and the answer did not come back.
        let Ok(result) = tokio::time::timeout_at(req.deadline.into(), receiver).await else {
            // The guard, still armed, tells the provider to drop the call.
            return Err(Error::timeout_awaiting_answer(req.timeout, &*self.peer));
        };
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
    connection: &'a ClientConnection,
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
            let _ = self.connection.outbox.push(
                |buf| {
                    Header {
                        flags: FLAG_REQUEST | FLAG_EVENT,
                        status: 0,
                        request_id: id,
                        body_len: 0,
                    }
                    .encode(buf)
                },
                &Bytes::new(),
            );
        }
    }
}

/// `error`, which closed a connection, as the error of a call that never went out on it:
/// [`Error::Unavailable`] (a cluster may retry it anywhere), with the same words and cause.
fn never_sent(error: &Error) -> Error {
    match error {
        Error::Transport { message, source } | Error::Unavailable { message, source } => {
            Error::Unavailable {
                message: message.clone(),
                source: source.clone(),
            }
        }
        other => Error::unavailable(other.to_string(), None),
    }
}

/// The size and limit named by a provider's refusal of a request over its limit (status
/// 40, worded by [`Error::MessageTooLarge`]'s `Display`, or by older providers as
/// `frame length N exceeds limit L`), so the caller sees the same error kind whichever
/// side refused.
fn request_too_large(code: Code, message: &str) -> Option<(u64, u64)> {
    fn number(text: &str) -> Option<(u64, &str)> {
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        Some((text[..end].parse().ok()?, &text[end..]))
    }
    if code != Code::BadRequest {
        return None;
    }
    let (size, rest, middle) = match message.strip_prefix("request of ") {
        Some(rest) => {
            let (size, rest) = number(rest)?;
            (size, rest, " bytes exceeds the provider's limit of ")
        }
        None => {
            let (size, rest) = number(message.strip_prefix("frame length ")?)?;
            (size, rest, " exceeds limit ")
        }
    };
    let (limit, _) = number(rest.strip_prefix(middle)?)?;
    Some((size, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_never_went_out_is_unavailable_with_the_same_words() {
        let closed = Error::transport("connection to 10.0.0.1:9 closed by peer");
        let error = never_sent(&closed);
        assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "provider unavailable: connection to 10.0.0.1:9 closed by peer"
        );
    }

    #[test]
    fn a_providers_refusal_of_a_large_request_is_read_back() {
        let refusal = Error::request_too_large(9_437_226, 8_388_608, MAX_FRAME_LEN_SETTING);
        let message = refusal.remote_message();
        assert_eq!(
            request_too_large(Code::BadRequest, &message),
            Some((9_437_226, 8_388_608)),
            "{message}"
        );
        assert_eq!(
            request_too_large(Code::BadRequest, "frame length 1025 exceeds limit 1024"),
            Some((1025, 1024))
        );
        assert_eq!(request_too_large(Code::BadResponse, &message), None);
        assert_eq!(
            request_too_large(Code::BadRequest, "request head truncated in service"),
            None
        );
    }
}
