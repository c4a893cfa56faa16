//! The provider end: each accepted socket (plain or TLS) is told apart by its first bytes.
//! HTTP/2 runs on `h2`'s server directly, every stream a call handed to core's admission
//! path through the connection's [`Session`] and run inside the connection's own task;
//! anything else goes to hyper's HTTP/1.1 server (the JSON gateway).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rpc_core::server::{Dispatcher, IncomingCall, Reply, Session};
use rpc_core::transport::Listener;
use rpc_core::{Codec, Context, Error, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::{Received, Unary};
use super::io::{Coalesce, InFlight};
use super::message::{self, MessageError};
use super::preface::{self, Prefixed, Protocol};
use super::status::{GrpcStatus, TRI_CODE, encode_message, message_for, parse_timeout, tri_name};
use super::{
    GrpcConfig, MAX_MESSAGE_LEN_SETTING, VERSION_HEADER, codec_for_content_type, content_type,
    json, metadata,
};
use rpc_core::log::RateLimited;

/// The listen backlog (as the TCP transport's default).
const BACKLOG: u32 = 4096;

/// How long a closing connection may take to let its last answers out.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

static FAILED_ACCEPTS: RateLimited = RateLimited::new();

pub(super) struct Shared {
    pub(super) config: Arc<GrpcConfig>,
    pub(super) dispatcher: Dispatcher,
    stop_accepting: CancellationToken,
    closing: CancellationToken,
    connections: TaskTracker,
    http1: hyper::server::conn::http1::Builder,
    http2: h2::server::Builder,
}

struct GrpcServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

pub(super) async fn bind(
    address: String,
    dispatcher: Dispatcher,
    config: Arc<GrpcConfig>,
) -> Result<Box<dyn Listener>> {
    let listener = crate::tcp::server::listen(&address, BACKLOG)
        .await
        .map_err(|e| Error::io(format!("bind {address} failed"), e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io("local address of listener", e))?;
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.request_read_timeout)
        .keep_alive(true);
    let mut http2 = h2::server::Builder::new();
    // hyper's server settings, which this transport used before it spoke h2 directly.
    http2
        .max_concurrent_streams(config.max_concurrent_streams)
        .initial_window_size(config.stream_window)
        .initial_connection_window_size(config.stream_window.saturating_mul(2))
        .max_frame_size(16 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(400 * 1024)
        // A peer that opens and resets streams as fast as it can (the "rapid reset"
        // attack) is cut off instead of keeping the server busy.
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(Some(256));
    let shared = Arc::new(Shared {
        config,
        dispatcher,
        stop_accepting: CancellationToken::new(),
        closing: CancellationToken::new(),
        connections: TaskTracker::new(),
        http1,
        http2,
    });
    shared
        .connections
        .spawn(accept_loop(listener, shared.clone()));
    Ok(Box::new(GrpcServer { local_addr, shared }))
}

impl Listener for GrpcServer {
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
            let _ = tokio::time::timeout(CLOSE_GRACE, shared.connections.wait()).await;
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
            Ok((stream, peer)) => {
                shared
                    .connections
                    .spawn(serve_connection(shared.clone(), stream, peer));
            }
            Err(error) => {
                FAILED_ACCEPTS.warn(|held_back| tracing::warn!(%error, held_back, "accept failed"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The calls of one connection.
pub(super) struct Connection {
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared>,
    session: Mutex<Session<GrpcReply>>,
    next_id: AtomicU64,
    /// Calls in flight on this connection, for its write batching.
    in_flight: InFlight,
}

impl Connection {
    fn session(&self) -> MutexGuard<'_, Session<GrpcReply>> {
        // Only admission runs under the lock; a poisoned session is still a valid one.
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `call` through core's admission path and waits for its outcome. Dropping the
    /// future (the peer reset the stream, the connection went) cancels the call.
    pub(super) async fn run(&self, call: IncomingCall<'_>) -> Result<rpc_core::Response> {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.session().dispatch(id, call, Some(GrpcReply(tx)));
        let mut guard = CancelOnDrop {
            connection: self,
            id,
            armed: true,
        };
        let outcome = rx.await;
        guard.armed = false;
        // The reply is dropped unsent only when the session itself went away.
        outcome.unwrap_or(Err(Error::Cancelled))
    }
}

/// Cancels a call whose stream went away before its answer.
struct CancelOnDrop<'a> {
    connection: &'a Connection,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed && self.connection.session().cancel(self.id) {
            tracing::debug!(peer = %self.connection.peer, id = self.id, "call cancelled by caller (stream reset)");
        }
    }
}

/// How core's admission path answers a call on this transport: to the stream's task.
pub(super) struct GrpcReply(oneshot::Sender<Result<rpc_core::Response>>);

impl Reply for GrpcReply {
    fn send(self, result: Result<rpc_core::Response>) {
        let _ = self.0.send(result);
    }
}

static FAILED_HANDSHAKES: RateLimited = RateLimited::new();

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = &shared.config.server_tls else {
        return serve_http(shared, stream, peer).await;
    };
    let window = shared.config.handshake_timeout;
    match shared.opening(window, tls.acceptor.accept(stream)).await {
        // The preface tells HTTP/2 from HTTP/1.1, whatever ALPN chose.
        Ok(stream) => serve_http(shared, stream, peer).await,
        Err(Cut::Closing) => {}
        Err(Cut::Failed(error)) => {
            FAILED_HANDSHAKES.warn(|held_back| {
                tracing::warn!(%peer, %error, held_back, "TLS handshake failed, closing");
            });
        }
        Err(Cut::Late) => {
            tracing::debug!(%peer, ?window, "no TLS handshake within the window, closing");
        }
    }
}

/// Why a step of opening a connection did not finish.
enum Cut<E> {
    /// The server started closing.
    Closing,
    /// The step failed.
    Failed(E),
    /// The step's window passed.
    Late,
}

impl Shared {
    /// `step`'s result, unless the server starts closing or `window` passes first: the
    /// wait of every step of opening a connection (TLS, first bytes, HTTP/2 handshake).
    async fn opening<T, E>(
        &self,
        window: Duration,
        step: impl Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, Cut<E>> {
        tokio::select! {
            _ = self.closing.cancelled() => Err(Cut::Closing),
            done = tokio::time::timeout(window, step) => match done {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(Cut::Failed(error)),
                Err(_) => Err(Cut::Late),
            },
        }
    }

    /// [`Shared::opening`] for a step whose failure is the peer's business: logged at
    /// debug level, and `None` (the connection closes).
    async fn open_step<T, E: std::fmt::Display>(
        &self,
        peer: SocketAddr,
        window: Duration,
        what: &str,
        step: impl Future<Output = std::result::Result<T, E>>,
    ) -> Option<T> {
        match self.opening(window, step).await {
            Ok(value) => Some(value),
            Err(Cut::Closing) => None,
            Err(Cut::Failed(error)) => {
                tracing::debug!(%peer, %error, "{what} failed, closing");
                None
            }
            Err(Cut::Late) => {
                tracing::debug!(%peer, ?window, "no {what} within the window, closing");
                None
            }
        }
    }
}

async fn serve_http<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let window = shared.config.request_read_timeout;
    let Some((protocol, stream)) = shared
        .open_step(peer, window, "first bytes", preface::read(stream))
        .await
    else {
        return;
    };
    let in_flight = InFlight::default();
    let connection = Arc::new(Connection {
        peer,
        session: Mutex::new(shared.dispatcher.session()),
        next_id: AtomicU64::new(1),
        shared,
        in_flight: in_flight.clone(),
    });
    match protocol {
        Protocol::Http2 => serve_http2(&connection, Coalesce::new(stream, in_flight)).await,
        Protocol::Http1 => serve_http1(&connection, stream).await,
        Protocol::Closed => {}
    }
    connection.session().abandon_all();
}

/// The JSON gateway (and anything else that is not HTTP/2): hyper's HTTP/1.1 server.
async fn serve_http1<S>(connection: &Arc<Connection>, stream: Prefixed<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let connection = connection.clone();
        service_fn(move |request| {
            let connection = connection.clone();
            async move { Ok::<_, Infallible>(handle(&connection, request).await) }
        })
    };
    let shared = &connection.shared;
    let serving = shared.http1.serve_connection(TokioIo::new(stream), service);
    let mut serving = pin!(serving);
    tokio::select! {
        result = serving.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(peer = %connection.peer, %error, "connection ended with an error");
            }
        }
        _ = shared.closing.cancelled() => {
            connection.session().abandon_all();
            serving.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, serving).await;
        }
    }
}

/// An HTTP/2 connection: h2's frame I/O, the keepalive pings and every call, all polled by
/// this one task. A call that is ready when its stream arrives is answered in the same
/// poll, and the answers of one pass go out in one write, with no task per stream and no
/// hop between tasks.
async fn serve_http2<S>(connection: &Connection, stream: Coalesce<Prefixed<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = &connection.shared;
    let peer = connection.peer;
    let window = shared.config.request_read_timeout;
    let handshake = shared.http2.handshake::<_, Bytes>(stream);
    let Some(mut h2) = shared
        .open_step(peer, window, "HTTP/2 handshake", handshake)
        .await
    else {
        return;
    };
    let config = &shared.config;
    let pings = h2.ping_pong();
    let keepalive = async {
        match (config.keepalive_interval, pings) {
            (Some(interval), Some(pings)) => {
                let in_flight = &connection.in_flight;
                super::client::keepalive(pings, interval, config.keepalive_timeout, in_flight).await
            }
            _ => std::future::pending().await,
        }
    };
    let mut keepalive = pin!(keepalive);
    let mut closing = pin!(shared.closing.cancelled());
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut calls = FuturesUnordered::new();
    let outcome = std::future::poll_fn(|cx| {
        if grace.is_none() && closing.as_mut().poll(cx).is_ready() {
            // Calls still running are told they were abandoned; GOAWAY lets those answers
            // out before the connection closes.
            connection.session().abandon_all();
            h2.graceful_shutdown();
            grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        }
        if let Some(grace) = &mut grace
            && grace.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(format!(
                "answers not out within {CLOSE_GRACE:?} of closing"
            )));
        }
        if let Poll::Ready(unanswered) = keepalive.as_mut().poll(cx) {
            return Poll::Ready(Err(unanswered));
        }
        loop {
            let mut progress = false;
            // Reads every frame the socket has, writes every answer queued so far, then
            // hands over the new streams one by one. (`poll_accept` is what `accept`
            // and hyper use; it lets the calls below run in the same pass.)
            loop {
                match h2.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        calls.push(serve_stream(connection, request, respond));
                        progress = true;
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error.to_string())),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            // Runs the new calls and the woken ones; their answers are queued in h2 and
            // written by the next `poll_accept`, together.
            while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {
                progress = true;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
    if let Err(error) = outcome {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// One HTTP/2 stream: the call, then its answer. A stream the peer resets drops the call,
/// which cancels it in the session.
async fn serve_stream(
    connection: &Connection,
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    // Counted until the answer is written (the connection's next flush), so `Coalesce`
    // holds a write back for the answers of handlers still running on their own tasks.
    let _counted = connection.in_flight.start_until_written();
    let mut handling = pin!(handle(connection, request.map(Received::new)));
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(response) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(response));
        }
        // Only a call still running looks for a reset (each look takes h2's lock).
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let Some(response) = response else {
        tracing::debug!(peer = %connection.peer, "stream reset by the caller, call dropped");
        return;
    };
    if let Err(error) = send(respond, response) {
        tracing::debug!(peer = %connection.peer, %error, "sending the answer failed");
    }
}

/// Queues `response` on its stream: headers, the one DATA chunk, trailers. h2 writes them
/// when the connection is next polled and holds back what flow control does not allow yet.
fn send(
    mut respond: h2::server::SendResponse<Bytes>,
    response: Response<Unary>,
) -> std::result::Result<(), h2::Error> {
    let (head, body) = response.into_parts();
    let ([first, second], trailers) = body.into_parts();
    let head = Response::from_parts(head, ());
    let empty = first.is_none() && second.is_none();
    let mut stream = respond.send_response(head, empty && trailers.is_none())?;
    if let Some(first) = first {
        stream.send_data(first, second.is_none() && trailers.is_none())?;
    }
    if let Some(second) = second {
        stream.send_data(second, trailers.is_none())?;
    }
    if let Some(trailers) = trailers {
        stream.send_trailers(trailers)?;
    }
    Ok(())
}

async fn handle<B>(connection: &Connection, request: Request<B>) -> Response<Unary>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if content_type.starts_with(b"application/grpc") {
        match codec_for_content_type(content_type) {
            Some(codec) => grpc(connection, request, codec).await,
            None => {
                let shown = String::from_utf8_lossy(content_type);
                status_response(
                    None,
                    GrpcStatus::Unimplemented,
                    rpc_core::Code::BadRequest,
                    &format!(
                        "content type {shown:?} names no codec this server knows \
                         (application/grpc, application/grpc+proto, application/grpc+json, \
                         application/grpc+bincode)"
                    ),
                )
            }
        }
    } else if json::accepts(content_type) {
        json::call(connection, request).await
    } else {
        let shown = String::from_utf8_lossy(content_type);
        plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {shown:?}: send application/grpc+... (gRPC over \
                 HTTP/2) or application/json (HTTP/1.1 JSON)\n"
            ),
        )
    }
}

/// `/{service}/{method}`: the two names, or `None` for any other path.
pub(super) fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

async fn grpc<B>(connection: &Connection, request: Request<B>, codec: Codec) -> Response<Unary>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let refuse = |status: GrpcStatus, code, message: &str| {
        status_response(Some(codec), status, code, message)
    };
    if request.method() != Method::POST {
        return refuse(
            GrpcStatus::Unimplemented,
            rpc_core::Code::BadRequest,
            "gRPC calls are POST",
        );
    }
    let (parts, mut body) = request.into_parts();
    let Some((service, method)) = split_path(parts.uri.path()) else {
        return refuse(
            GrpcStatus::Unimplemented,
            rpc_core::Code::NotFound,
            &format!("path {:?} is not /{{service}}/{{method}}", parts.uri.path()),
        );
    };
    if let Some(encoding) = parts.headers.get("grpc-encoding")
        && encoding.as_bytes() != b"identity"
    {
        let mut response = refuse(
            GrpcStatus::Unimplemented,
            rpc_core::Code::BadRequest,
            &format!(
                "grpc-encoding {:?} is not supported; this server accepts identity",
                String::from_utf8_lossy(encoding.as_bytes())
            ),
        );
        response
            .headers_mut()
            .insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
        return response;
    }
    let received = Instant::now();
    let timeout = match parts.headers.get("grpc-timeout") {
        None => None,
        Some(value) => match parse_timeout(value.as_bytes()) {
            Some(timeout) => Some(timeout),
            None => {
                return refuse(
                    GrpcStatus::InvalidArgument,
                    rpc_core::Code::BadRequest,
                    &format!(
                        "invalid grpc-timeout {:?}",
                        String::from_utf8_lossy(value.as_bytes())
                    ),
                );
            }
        },
    };
    let deadline = timeout.map(|timeout| received + timeout);
    let config = &connection.shared.config;
    let read_by = received + config.request_read_timeout;
    let read_by = deadline.map_or(read_by, |deadline| deadline.min(read_by));
    let read = message::read_unary(&mut body, config.max_message_len);
    let mut read = std::pin::pin!(read);
    // The message usually came with the headers: only a stream still sending needs a
    // timer (one per call would be a timer-wheel entry for nothing).
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let read = async {
        match first {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => tokio::time::timeout_at(read_by.into(), read).await,
        }
    };
    let message = match read.await {
        Ok(Ok((message, _))) => message,
        Ok(Err(error)) => return error_response(codec, &message_error(error, config)),
        Err(_) => {
            let error = match timeout {
                Some(budget) if deadline.is_some_and(|d| d <= read_by) => Error::Timeout(budget),
                _ => Error::Protocol(format!(
                    "the request message did not arrive within {:?}",
                    config.request_read_timeout
                )),
            };
            return error_response(codec, &error);
        }
    };
    let version = parts
        .headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let call = IncomingCall {
        service,
        version,
        method,
        codec,
        context: Context::new(
            metadata::attachments(&parts.headers),
            deadline,
            Some(connection.peer),
        )
        .with_received_at(received),
        body: message,
    };
    match connection.run(call).await {
        Ok(response) => {
            let len = response.body.len();
            let Some((first, rest)) = message::chunks(response.body) else {
                let error = Error::response_too_large(len as u64, u32::MAX.into(), "");
                return error_response(codec, &error);
            };
            let mut trailers = HeaderMap::with_capacity(1);
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let body = Unary::with_trailers(Some(first), rest.unwrap_or_default(), trailers);
            let mut reply = Response::new(body);
            reply.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(content_type(response.codec)),
            );
            // Reply attachments travel as initial metadata, where stock clients read them.
            if let Err(error) =
                metadata::add_attachments(&response.attachments, reply.headers_mut())
            {
                let error = Error::Remote {
                    code: rpc_core::Code::BadResponse,
                    message: error.to_string(),
                };
                return error_response(codec, &error);
            }
            reply
        }
        Err(error) => {
            tracing::debug!(peer = %connection.peer, %service, %method, %error, "call failed");
            error_response(codec, &error)
        }
    }
}

/// The error a request message that cannot be read becomes.
fn message_error(error: MessageError, config: &GrpcConfig) -> Error {
    match error {
        MessageError::TooLarge { size, limit } => {
            Error::request_too_large(size, limit, MAX_MESSAGE_LEN_SETTING)
        }
        MessageError::Body(error) => Error::transport(error),
        other => Error::Protocol(format!("{other} (limit {} bytes)", config.max_message_len)),
    }
}

/// The trailers-only answer for a call that failed with `error`.
fn error_response(codec: Codec, error: &Error) -> Response<Unary> {
    status_response(
        Some(codec),
        GrpcStatus::for_error(error),
        error.code(),
        &message_for(error),
    )
}

/// A trailers-only answer: HTTP 200 and the status in the headers, no body.
fn status_response(
    codec: Option<Codec>,
    status: GrpcStatus,
    code: rpc_core::Code,
    message: &str,
) -> Response<Unary> {
    let mut response = Response::new(Unary::empty());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(codec.map_or("application/grpc", content_type)),
    );
    headers.insert("grpc-status", HeaderValue::from(status.number()));
    if let Ok(value) = HeaderValue::from_str(&encode_message(message)) {
        headers.insert("grpc-message", value);
    }
    headers.insert(TRI_CODE, HeaderValue::from_static(tri_name(code)));
    response
}

/// A plain-text HTTP answer.
fn plain(status: StatusCode, text: String) -> Response<Unary> {
    let mut response = Response::new(Unary::data(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::split_path;

    #[test]
    fn paths_name_a_service_and_a_method() {
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter", "SayHello"))
        );
        for bad in ["/", "/a", "/a/", "//m", "/a/b/c", "a/b"] {
            assert_eq!(split_path(bad), None, "{bad}");
        }
    }
}
