//! The provider end: accept connections, read frames, hand calls to core's admission path,
//! write answers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rpc_core::server::{Dispatcher, IncomingCall, Reply, Session};
use rpc_core::transport::Listener;
use rpc_core::{Context, Error, Response, Result};
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::{Activity, BUFFER_CAPACITY, Outbox, SHRINK_ABOVE, Sink, keepalive, write_loop};
use super::frame::{
    FLAG_EVENT, FLAG_REPLY_ATTACHMENTS, Frame, Header, Incoming, SkippingDecoder, codec_for_id,
    not_this_protocol, serialization_id, starts_with_whole_frame,
};
use super::head::decode_head;
use super::status::Status;
use super::{MAX_FRAME_LEN_SETTING, TcpConfig};
use rpc_core::log::RateLimited;

/// Heartbeats a server starts carry ids from 2^63 up. The server tracks none of them (an
/// answer only counts as traffic), so any id would do; ids far from the client's own,
/// which count up from 1, keep the two directions apart in a packet capture.
const SERVER_HEARTBEAT_IDS: u64 = 1 << 63;

/// After refusing a request over the limit, its body is read and dropped as it arrives
/// and the connection goes on; a peer that stops sending it for this long is closed.
const SKIP_IDLE: Duration = Duration::from_secs(1);

static UNREADABLE_FRAMES: RateLimited = RateLimited::new();
static OVERSIZED_REQUESTS: RateLimited = RateLimited::new();
static REFUSED_CONNECTIONS: RateLimited = RateLimited::new();
static FAILED_ACCEPTS: RateLimited = RateLimited::new();
static FAILED_HANDSHAKES: RateLimited = RateLimited::new();

struct Shared {
    config: Arc<TcpConfig>,
    dispatcher: Dispatcher,
    /// Cancelled to stop the accept loop.
    stop_accepting: CancellationToken,
    /// Cancelled to close every connection.
    closing: CancellationToken,
    /// The accept loop and connection tasks.
    connections: TaskTracker,
    slots: Arc<Slots>,
}

/// A bound TCP server.
struct TcpServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

pub(crate) async fn bind(
    address: String,
    dispatcher: Dispatcher,
    config: Arc<TcpConfig>,
) -> Result<Box<dyn Listener>> {
    let listener = listen(&address, config.backlog)
        .await
        .map_err(|e| Error::io(format!("bind {address} failed"), e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io("local address of listener", e))?;
    let shared = Arc::new(Shared {
        slots: Arc::new(Slots::new(config.max_connections)),
        config,
        dispatcher,
        stop_accepting: CancellationToken::new(),
        closing: CancellationToken::new(),
        connections: TaskTracker::new(),
    });
    shared
        .connections
        .spawn(accept_loop(listener, shared.clone()));
    Ok(Box::new(TcpServer { local_addr, shared }))
}

/// A listening socket with our backlog (tokio's `TcpListener::bind` fixes it at 1024, and
/// bursts of connects beyond it wait a second each in the kernel).
pub(crate) async fn listen(address: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "address resolved to nothing",
        )
    }))
}

impl Listener for TcpServer {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn stop_accepting(&self) {
        self.shared.stop_accepting.cancel();
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        shared.stop_accepting.cancel();
        shared.closing.cancel();
        shared.connections.close();
        Box::pin(async move {
            // Connections only flush what is already queued; this does not wait on peers
            // beyond the writers' stall timeout.
            let _ = tokio::time::timeout(Duration::from_secs(5), shared.connections.wait()).await;
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.stop_accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((_, peer)) if !shared.dispatcher.admits_connection(peer) => {
                // Refused by the server's IP rules (counted and logged by the dispatcher);
                // dropping the stream closes it before a byte is read.
            }
            Ok((stream, peer)) => {
                let Some(slot) = shared.slots.admit(&shared.closing) else {
                    REFUSED_CONNECTIONS.warn(|held_back| {
                        tracing::warn!(%peer, limit = shared.config.max_connections, held_back,
                            "connection limit reached and every connection is in use, refusing");
                    });
                    continue;
                };
                shared
                    .connections
                    .spawn(serve_connection(shared.clone(), stream, peer, slot));
            }
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                FAILED_ACCEPTS.warn(|held_back| tracing::warn!(%error, held_back, "accept failed"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The connection slots of a server. At the cap, a new connection evicts the oldest one
/// that never sent a request: a flood of silent connections then only ever competes with
/// itself, while connections that do speak keep their place.
struct Slots {
    max: usize,
    state: Mutex<SlotState>,
}

struct SlotState {
    open: usize,
    /// Connections that have not sent a request yet, oldest first (some may have since).
    unproven: VecDeque<Weak<Slot>>,
}

/// One connection's place.
struct Slot {
    /// The connection sent a request (a call or a heartbeat).
    proven: AtomicBool,
    /// The slot was given back (by eviction or by the connection ending).
    released: AtomicBool,
    /// The slot was taken for a newer connection.
    evicted: AtomicBool,
    /// Cancelled to make the connection close: a child of the server's closing token,
    /// also cancelled on eviction and when the connection's writer ends, so the read loop
    /// watches one token for every reason to stop.
    stop: CancellationToken,
}

/// Holds a slot while its connection is served.
struct SlotGuard {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            max,
            state: Mutex::new(SlotState {
                open: 0,
                unproven: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a new connection, evicting a silent one at the cap; `None` when every
    /// open connection has spoken.
    fn admit(self: &Arc<Self>, closing: &CancellationToken) -> Option<SlotGuard> {
        let mut state = self.lock();
        while state.open >= self.max {
            let victim = state.unproven.pop_front()?;
            if let Some(victim) = victim.upgrade()
                && !victim.proven.load(Ordering::Relaxed)
                && !victim.released.swap(true, Ordering::Relaxed)
            {
                state.open -= 1;
                victim.evicted.store(true, Ordering::Relaxed);
                victim.stop.cancel();
            }
        }
        state.open += 1;
        let slot = Arc::new(Slot {
            proven: AtomicBool::new(false),
            released: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            stop: closing.child_token(),
        });
        state.unproven.push_back(Arc::downgrade(&slot));
        // Connections that spoke or closed leave stale entries; sweep them now and then.
        if state.unproven.len() > 2 * self.max.max(64) {
            state.unproven.retain(|slot| {
                slot.upgrade()
                    .is_some_and(|s| !s.proven.load(Ordering::Relaxed))
            });
        }
        Some(SlotGuard {
            slots: self.clone(),
            slot,
        })
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if !self.slot.released.swap(true, Ordering::Relaxed) {
            self.slots.lock().open -= 1;
        }
    }
}

/// One accepted connection, as the answers to its calls see it.
struct ServerConnection {
    peer: SocketAddr,
    outbox: Arc<Outbox>,
}

impl ServerConnection {
    /// Appends an answer frame. `flags` carries the serialization id (calls) or the event
    /// bit (heartbeat answers). An answer is never refused while the connection is open.
    fn respond(&self, request_id: u64, flags: u8, status: Status, body: &Bytes) {
        let header = Header {
            flags,
            status: status.byte(),
            request_id,
            body_len: body.len() as u32,
        };
        let _ = self.outbox.push(|buf| header.encode(buf), body);
    }

    fn respond_error(&self, request_id: u64, serialization: u8, error: &Error) {
        let message = super::status::wire_message(error.code(), error.remote_message());
        self.respond(
            request_id,
            serialization,
            Status::for_code(error.code()),
            &Bytes::from(message),
        );
    }
}

/// How core's admission path answers a two-way call on this connection.
struct TcpReply {
    connection: Arc<ServerConnection>,
    request_id: u64,
    /// The request's serialization id, used for error answers.
    serialization: u8,
}

impl Reply for TcpReply {
    fn send(self, result: Result<Response>) {
        let connection = &self.connection;
        match result {
            // This side's `max_frame_len` limits what it reads (requests); the caller
            // checks the response against its own. Only a body no header can describe is
            // refused here.
            Ok(response) if u32::try_from(response.body.len()).is_err() => {
                let error =
                    Error::response_too_large(response.body.len() as u64, u32::MAX.into(), "");
                connection.respond_error(self.request_id, self.serialization, &error);
            }
            Ok(response) if response.attachments.is_empty() => connection.respond(
                self.request_id,
                serialization_id(response.codec),
                Status::Ok,
                &response.body,
            ),
            // Rare: the handler sent attachments back. They go first in the body.
            Ok(response) => {
                let mut body = BytesMut::new();
                match super::head::encode_reply_attachments(&response.attachments, &mut body) {
                    Ok(()) if body.len() + response.body.len() <= u32::MAX as usize => {
                        body.extend_from_slice(&response.body);
                        connection.respond(
                            self.request_id,
                            serialization_id(response.codec) | FLAG_REPLY_ATTACHMENTS,
                            Status::Ok,
                            &body.freeze(),
                        )
                    }
                    Ok(()) => {
                        let size = (body.len() + response.body.len()) as u64;
                        let error = Error::response_too_large(size, u32::MAX.into(), "");
                        connection.respond_error(self.request_id, self.serialization, &error);
                    }
                    Err(error) => {
                        let error = Error::Remote {
                            code: rpc_core::Code::BadResponse,
                            message: error.to_string(),
                        };
                        connection.respond_error(self.request_id, self.serialization, &error);
                    }
                }
            }
            Err(error) => {
                tracing::debug!(peer = %connection.peer, id = self.request_id, %error, "call failed");
                connection.respond_error(self.request_id, self.serialization, &error)
            }
        }
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: SlotGuard,
) {
    let _ = stream.set_nodelay(true);
    let config = shared.config.clone();
    let (read, write): (Box<dyn AsyncRead + Send + Unpin>, Sink) = match &config.server_tls {
        None => {
            let (read, write) = stream.into_split();
            (Box::new(read), Sink::Plain(write))
        }
        Some(tls) => {
            let handshake = tokio::select! {
                _ = slot.slot.stop.cancelled() => return,
                handshake = tokio::time::timeout(config.handshake_timeout, tls.acceptor.accept(stream)) => handshake,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    let (read, write) = tokio::io::split(stream);
                    (Box::new(read), Sink::stream(write))
                }
                Ok(Err(error)) => {
                    FAILED_HANDSHAKES.warn(|held_back| {
                        tracing::warn!(%peer, %error, held_back, "TLS handshake failed, closing");
                    });
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, window = ?config.handshake_timeout, "no TLS handshake within the window, closing");
                    return;
                }
            }
        }
    };
    let activity = Arc::new(Activity::new());
    let mut session: Session<TcpReply> = shared.dispatcher.session();
    let connection = Arc::new(ServerConnection {
        peer,
        outbox: Arc::new(Outbox::new(
            config.max_write_buffer,
            config.write_stall_timeout,
            write,
            activity.clone(),
            Box::new(session.in_flight_probe()),
            slot.slot.stop.clone(),
        )),
    });
    let writer = tokio::spawn(write_loop(connection.outbox.clone()));
    let mut frames = FramedRead::with_capacity(
        read,
        SkippingDecoder::new(config.max_frame_len, true),
        8 * 1024,
    );
    let heartbeat_ids = AtomicU64::new(SERVER_HEARTBEAT_IDS);
    let idle = keepalive(
        &connection.outbox,
        &activity,
        config.heartbeat_interval,
        config.idle_timeout,
        || heartbeat_ids.fetch_add(1, Ordering::Relaxed),
    );
    tokio::pin!(idle);
    let handshake = tokio::time::sleep(config.handshake_timeout);
    tokio::pin!(handshake);
    // One token for every reason to stop (server closing, eviction, writer ended), and
    // its future made once: each poll of a `cancelled()` future takes the token's lock.
    let stopped = slot.slot.stop.cancelled();
    tokio::pin!(stopped);
    let mut spoke = false;
    let mut holding = false;
    loop {
        // Backpressure: while the peer has not taken the answers already owed, read no new
        // requests. TCP then pushes back on the caller, and memory stays bounded.
        if connection.outbox.queued() >= config.max_write_buffer {
            if holding {
                connection.outbox.release();
                holding = false;
            }
            tracing::debug!(%peer, "outbox full, pausing reads");
            tokio::select! {
                _ = &mut stopped => break,
                _ = connection.outbox.wait_below_limit() => continue,
            }
        }
        // The body of a refused oversized request is being dropped: give up on a peer that
        // stopped sending it.
        let skipping = frames.decoder().skipping_since();
        let frame = tokio::select! {
            _ = tokio::time::sleep_until(skipping.map_or_else(tokio::time::Instant::now, |at| at + SKIP_IDLE)), if skipping.is_some() => {
                if frames.decoder().skipping_since() == skipping {
                    tracing::debug!(%peer, "the body of a refused request stopped arriving, closing");
                    break;
                }
                continue;
            }
            _ = &mut stopped => {
                if slot.slot.evicted.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "silent connection evicted to make room");
                } else if connection.outbox.has_ended() {
                    tracing::debug!(%peer, "peer stopped reading, closing");
                }
                break;
            }
            _ = &mut handshake, if !spoke => {
                tracing::debug!(%peer, window = ?config.handshake_timeout, "no frame within the handshake window, closing");
                break;
            }
            _ = &mut idle => {
                tracing::debug!(%peer, "connection idle, closing");
                break;
            }
            frame = frames.next() => frame,
        };
        match frame {
            None => break,
            Some(Ok(Incoming::TooLarge(header))) => {
                spoke = true;
                activity.read();
                slot.slot.proven.store(true, Ordering::Relaxed);
                refuse_too_large(&connection, header, config.max_frame_len);
                // Its body may take a while: what was answered before goes out now.
                if holding {
                    connection.outbox.release();
                    holding = false;
                }
            }
            Some(Ok(Incoming::Frame(frame))) => {
                spoke = true;
                // More frames already read: answer them all before waking the writer, so
                // one read's worth of requests goes back in one write.
                let more = starts_with_whole_frame(frames.read_buffer());
                if !more {
                    // Once per read, not per frame: it reads the clock.
                    activity.read();
                    // A large frame grew the read buffer; an idle connection gives it back.
                    if frames.read_buffer().is_empty()
                        && frames.read_buffer().capacity() > SHRINK_ABOVE
                    {
                        *frames.read_buffer_mut() = BytesMut::with_capacity(BUFFER_CAPACITY);
                    }
                }
                if more && !holding {
                    connection.outbox.hold();
                    holding = true;
                }
                on_frame(&mut session, &connection, &slot.slot, frame);
                if !more && holding {
                    connection.outbox.release();
                    holding = false;
                }
            }
            Some(Err(error)) if error.is_disconnect() => {
                tracing::debug!(%peer, %error, "peer went away");
                break;
            }
            Some(Err(crate::Error::BadMagic(_))) => {
                let error = not_this_protocol(&peer.to_string(), frames.read_buffer());
                UNREADABLE_FRAMES.warn(|held_back| {
                    tracing::warn!(%peer, %error, held_back, "unreadable frame, closing connection");
                });
                break;
            }
            Some(Err(error)) => {
                UNREADABLE_FRAMES.warn(|held_back| {
                    tracing::warn!(%peer, %error, held_back, "unreadable frame, closing connection");
                });
                break;
            }
        }
    }
    // Whatever still runs is abandoned: if the peer is still there (shutdown past its
    // grace period), it learns why instead of seeing the connection just close.
    session.abandon_all();
    connection.outbox.close();
    let _ = writer.await;
}

/// Answers a request over this side's limit (a two-way one with status 40, worded as the
/// caller's own [`Error::MessageTooLarge`], which it rebuilds from the text); its body is
/// being skipped, and the connection goes on.
fn refuse_too_large(connection: &ServerConnection, header: Header, limit: u32) {
    let error =
        Error::request_too_large(header.body_len.into(), limit.into(), MAX_FRAME_LEN_SETTING);
    OVERSIZED_REQUESTS.warn(|held_back| {
        tracing::warn!(peer = %connection.peer, id = header.request_id, %error, held_back,
            "request over the frame limit, refused");
    });
    if header.is_two_way() && !header.is_event() {
        connection.respond(
            header.request_id,
            header.serialization_id(),
            Status::BadRequest,
            &Bytes::from(error.remote_message()),
        );
    }
}

fn on_frame(
    session: &mut Session<TcpReply>,
    connection: &Arc<ServerConnection>,
    slot: &Slot,
    frame: Frame,
) {
    let header = frame.header;
    let id = header.request_id;
    if !header.is_request() {
        // Heartbeat answers; their arrival already counted as activity.
        return;
    }
    slot.proven.store(true, Ordering::Relaxed);
    if header.is_event() {
        if header.is_two_way() {
            connection.respond(id, FLAG_EVENT, Status::Ok, &Bytes::new());
        } else if session.cancel(id) {
            tracing::debug!(peer = %connection.peer, id, "call cancelled by caller");
        }
        return;
    }
    let serialization = header.serialization_id();
    let reply = header.is_two_way().then(|| TcpReply {
        connection: connection.clone(),
        request_id: id,
        serialization,
    });
    let decoded = codec_for_id(serialization)
        .map_err(Error::from)
        .and_then(|codec| Ok((codec, decode_head(&frame.body)?)));
    let (codec, head) = match decoded {
        Ok(decoded) => decoded,
        Err(error) => {
            tracing::debug!(peer = %connection.peer, %error, "refusing request");
            if let Some(reply) = reply {
                reply.send(Err(error));
            }
            return;
        }
    };
    // One clock read per call: the deadline, the call's statistics and its timeout error
    // all start from it.
    let received = Instant::now();
    let deadline = head.timeout.map(|timeout| received + timeout);
    let call = IncomingCall {
        service: head.service,
        version: head.version,
        method: head.method,
        codec,
        context: Context::new(head.attachments, deadline, Some(connection.peer))
            .with_received_at(received),
        body: frame.body.slice(head.args_offset..),
    };
    session.dispatch(id, call, reply);
}
