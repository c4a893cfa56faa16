//! The provider end: accept connections, read frames, run calls, write answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rpc_core::server::{Dispatcher, ProviderService};
use rpc_core::transport::Listener;
use rpc_core::{Codec, Context, Error, Response, Result, ServerRequest, Status};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use super::TcpConfig;
use super::conn::{Activity, Outbox, keepalive, write_loop};
use super::frame::{FLAG_EVENT, Frame, FrameDecoder, Header, starts_with_whole_frame};
use super::head::decode_head;

struct Shared {
    config: Arc<TcpConfig>,
    dispatcher: Dispatcher,
    /// Cancelled when shutdown begins: stop accepting, refuse new calls.
    draining: CancellationToken,
    /// Cancelled when shutdown ends: close every connection.
    closing: CancellationToken,
    /// Calls being served, so shutdown can wait for them.
    calls: TaskTracker,
    /// The accept loop and connection tasks.
    connections: TaskTracker,
    connection_slots: Arc<Semaphore>,
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
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|e| Error::io(format!("bind {address} failed"), e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io("local address of listener", e))?;
    let shared = Arc::new(Shared {
        connection_slots: Arc::new(Semaphore::new(config.max_connections)),
        config,
        dispatcher,
        draining: CancellationToken::new(),
        closing: CancellationToken::new(),
        calls: TaskTracker::new(),
        connections: TaskTracker::new(),
    });
    shared
        .connections
        .spawn(accept_loop(listener, shared.clone()));
    Ok(Box::new(TcpServer { local_addr, shared }))
}

impl Listener for TcpServer {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn close(&self) {
        self.shared.draining.cancel();
        self.shared.closing.cancel();
    }

    fn shutdown(&self, grace: Duration) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        Box::pin(async move {
            shared.draining.cancel();
            shared.calls.close();
            if tokio::time::timeout(grace, shared.calls.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    in_flight = shared.calls.len(),
                    ?grace,
                    "shutdown timeout reached, aborting remaining calls"
                );
            }
            shared.closing.cancel();
            shared.connections.close();
            // Connections only flush what is already queued; this does not wait on peers.
            let _ = tokio::time::timeout(Duration::from_secs(5), shared.connections.wait()).await;
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.draining.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = shared.connection_slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = shared.config.max_connections, "connection limit reached, refusing");
                    continue;
                };
                shared
                    .connections
                    .spawn(serve_connection(shared.clone(), stream, peer, slot));
            }
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One accepted connection and the calls running on it.
struct Connection {
    peer: SocketAddr,
    outbox: Arc<Outbox>,
    /// Spawned two-way calls by request id, with the codec id to answer them in.
    running: Mutex<HashMap<u64, (AbortHandle, u8)>>,
    max_frame_len: u32,
}

impl Connection {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (AbortHandle, u8)>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn respond(&self, request_id: u64, codec_id: u8, status: Status, body: &[u8]) {
        let _ = self.outbox.push(|buf| {
            Header {
                flags: codec_id,
                status: status.code(),
                request_id,
                body_len: body.len() as u32,
            }
            .encode(buf);
            buf.extend_from_slice(body);
        });
    }

    /// Takes call `id` off the running table (it finished or is being cancelled).
    fn take_running(&self, id: u64) -> Option<AbortHandle> {
        let mut running = self.running();
        let call = running.remove(&id).map(|(call, _)| call);
        self.outbox.set_in_flight(running.len());
        call
    }

    /// Sends the outcome of call `request_id`.
    fn answer(&self, request_id: u64, codec_id: u8, result: Result<Response>) {
        match result {
            Ok(response) if response.body.len() > self.max_frame_len as usize => {
                let error = Error::Remote {
                    status: Status::BadResponse,
                    message: format!(
                        "response length {} exceeds limit {}",
                        response.body.len(),
                        self.max_frame_len
                    ),
                };
                self.respond_error(request_id, codec_id, &error);
            }
            Ok(response) => {
                self.respond(request_id, response.codec.id(), Status::Ok, &response.body)
            }
            Err(error) => self.respond_error(request_id, codec_id, &error),
        }
    }

    fn respond_error(&self, request_id: u64, codec_id: u8, error: &Error) {
        let message = error.remote_message();
        self.respond(
            request_id,
            codec_id,
            Status::for_error(error),
            message.as_bytes(),
        );
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let config = shared.config.clone();
    let (read, write) = stream.into_split();
    let activity = Arc::new(Activity::new());
    let connection = Arc::new(Connection {
        peer,
        outbox: Arc::new(Outbox::new(
            config.max_write_buffer,
            write,
            activity.clone(),
        )),
        running: Mutex::new(HashMap::new()),
        max_frame_len: config.max_frame_len,
    });
    let writer = tokio::spawn(write_loop(connection.outbox.clone()));
    let mut service = shared.dispatcher.service();
    let mut frames =
        FramedRead::with_capacity(read, FrameDecoder::new(config.max_frame_len), 8 * 1024);
    let heartbeat_ids = std::sync::atomic::AtomicU64::new(1 << 63);
    let idle = keepalive(
        &connection.outbox,
        &activity,
        config.heartbeat_interval,
        config.idle_timeout,
        || heartbeat_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    );
    tokio::pin!(idle);
    let mut holding = false;
    loop {
        let frame = tokio::select! {
            _ = shared.closing.cancelled() => break,
            _ = &mut idle => {
                tracing::debug!(%peer, "connection idle, closing");
                break;
            }
            frame = frames.next() => frame,
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                // More frames already read: answer them all before waking the writer, so
                // one read's worth of requests goes back in one write.
                let more = starts_with_whole_frame(frames.read_buffer());
                if !more {
                    // Once per read, not per frame: it reads the clock.
                    activity.read();
                }
                if more && !holding {
                    connection.outbox.hold();
                    holding = true;
                }
                on_frame(&shared, &connection, &mut service, frame).await;
                if !more && holding {
                    connection.outbox.release();
                    holding = false;
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%peer, %error, "unreadable frame, closing connection");
                if let crate::Error::FrameTooLarge {
                    request_id,
                    two_way_request: true,
                    ..
                } = error
                {
                    let message = error.to_string();
                    connection.respond(request_id, 0, Status::BadRequest, message.as_bytes());
                }
                break;
            }
        }
    }
    // Whatever still runs is abandoned: if the peer is still there (shutdown past its
    // grace period), it learns why instead of seeing the connection just close.
    for (id, (call, codec_id)) in connection.running().drain() {
        call.abort();
        connection.respond_error(id, codec_id, &Error::Cancelled);
    }
    connection.outbox.set_in_flight(0);
    connection.outbox.close();
    let _ = writer.await;
}

async fn on_frame(
    shared: &Shared,
    connection: &Arc<Connection>,
    service: &mut ProviderService,
    frame: Frame,
) {
    let header = frame.header;
    let id = header.request_id;
    if !header.is_request() {
        // Heartbeat answers; their arrival already counted as activity.
        return;
    }
    if header.is_event() {
        if header.is_two_way() {
            connection.respond(id, FLAG_EVENT, Status::Ok, &[]);
        } else if let Some(call) = connection.take_running(id) {
            tracing::debug!(peer = %connection.peer, id, "call cancelled by caller");
            call.abort();
        }
        return;
    }
    let two_way = header.is_two_way();
    let codec_id = header.serialization_id();
    // Ids identify calls for cancellation; a second call under a live id would make the
    // first one impossible to cancel, so it is refused instead.
    if two_way && connection.running().contains_key(&id) {
        let error = Error::Protocol(format!("request id {id} is already in flight"));
        connection.respond_error(id, codec_id, &error);
        return;
    }
    let request = match decode_request(shared, connection.peer, &frame) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(peer = %connection.peer, %error, "refusing request");
            if two_way {
                connection.respond_error(id, codec_id, &error);
            }
            return;
        }
    };
    if service.ready().await.is_err() {
        return;
    }
    let mut call = service.call(request);
    // Poll once right here: a handler that does not wait on anything (most do not) is
    // answered without a task spawn or a cross-thread wake-up. Should it wait, it moves
    // to its own task and the stale waker registration costs at most a spurious wake.
    if let Poll::Ready(result) =
        std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await
    {
        if two_way {
            connection.answer(id, codec_id, result);
        }
        return;
    }
    if !two_way {
        shared.calls.spawn(async move {
            let _ = call.await;
        });
        return;
    }
    let done = connection.clone();
    // Holding the lock across spawn keeps a fast call from finishing (and removing its
    // entry) before the entry exists.
    let mut running = connection.running();
    let task = shared.calls.spawn(async move {
        let result = call.await;
        done.take_running(id);
        done.answer(id, codec_id, result);
    });
    running.insert(id, (task.abort_handle(), codec_id));
    connection.outbox.set_in_flight(running.len());
}

fn decode_request(shared: &Shared, peer: SocketAddr, frame: &Frame) -> Result<ServerRequest> {
    let codec = Codec::from_id(frame.header.serialization_id())?;
    shared.dispatcher.check_codec(codec)?;
    let head = decode_head(&frame.body)?;
    if shared.draining.is_cancelled() {
        return Err(Error::Rejected("server is shutting down".into()));
    }
    let method = shared
        .dispatcher
        .resolve(head.service, head.version, head.method)?;
    let deadline = head.timeout.map(|timeout| Instant::now() + timeout);
    let body: Bytes = frame.body.slice(head.args_offset..);
    Ok(ServerRequest {
        method,
        context: Context::new(head.attachments, deadline, Some(peer)),
        codec,
        body,
    })
}
