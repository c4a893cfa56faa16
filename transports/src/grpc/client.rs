//! The consumer end: one HTTP/2 connection per provider address, every call a stream on
//! it, reconnected with backoff.
//!
//! Calls go to h2 directly rather than through hyper's client: hyper hands each request
//! to its connection task over a channel, then spawns a task per call to wait for the
//! answer and one to send the body, and answers the caller through a oneshot. Here the
//! caller's own task opens the stream, queues the whole message with the end of the
//! stream (h2 buffers it until the flow-control window allows) and reads the answer, so
//! the connection task only reads and writes frames.
//!
//! While the provider is down, calls behave as on the TCP transport: a call fails at once
//! with the last attempt's [`Error::Unavailable`] (so a cluster moves on), unless its
//! request says no other provider is left ([`Request::wait_for_ready`]) and the next
//! attempt starts before its deadline; then it waits for that attempt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{CONTENT_TYPE, HeaderValue, TE};
use http::{HeaderMap, Method, StatusCode, Uri};
use rpc_core::{Error, Request, Response, Result};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::Service;

use super::body::Received;
use super::io::{Coalesce, InFlight};
use super::message::{self, MessageError};
use super::status::{GrpcStatus, TRI_CODE, decode_message, error_for, format_timeout};
use super::{
    GrpcConfig, MAX_MESSAGE_LEN_SETTING, VERSION_HEADER, codec_for_content_type, content_type,
    metadata,
};

type Sender = h2::client::SendRequest<Bytes>;

/// Request URIs an endpoint keeps at most (see [`Endpoint::uri`]).
const MAX_CACHED_PATHS: usize = 1024;

/// The endpoints of one transport by address: every channel to an address shares one
/// connection. Entries are weak; the last channel to go closes its connection.
#[derive(Default)]
pub(crate) struct Endpoints {
    by_address: Mutex<HashMap<Arc<str>, Weak<Endpoint>>>,
}

impl Endpoints {
    pub(crate) fn channel(&self, address: &str, config: &Arc<GrpcConfig>) -> GrpcChannel {
        let mut by_address = self
            .by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(endpoint) = by_address.get(address).and_then(Weak::upgrade) {
            return GrpcChannel { endpoint };
        }
        by_address.retain(|_, endpoint| endpoint.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::new(address, config.clone()));
        by_address.insert(endpoint.address.clone(), Arc::downgrade(&endpoint));
        GrpcChannel { endpoint }
    }
}

/// A [`rpc_core::Channel`] to one provider address.
#[derive(Clone)]
pub(crate) struct GrpcChannel {
    endpoint: Arc<Endpoint>,
}

impl Service<Request> for GrpcChannel {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            let _counted = endpoint.in_flight.start();
            let sender = endpoint.sender(&request).await?;
            let (deadline, budget, codec) = (request.deadline, request.timeout, request.codec);
            if request.oneway {
                // gRPC has no one-way calls: the call goes out as usual and its answer is
                // dropped when it comes.
                tokio::spawn(async move {
                    let call = endpoint.call(sender, request);
                    let _ = tokio::time::timeout_at(deadline.into(), call).await;
                });
                return Ok(Response::new(codec, Default::default()));
            }
            match tokio::time::timeout_at(deadline.into(), endpoint.call(sender, request)).await {
                Ok(result) => result,
                Err(_) => Err(Error::timeout_awaiting_answer(budget, &*endpoint.address)),
            }
        })
    }
}

#[derive(Clone)]
enum ConnState {
    Connecting { last_error: Option<Error> },
    Connected(Sender),
    Failed { error: Error, retry_at: Instant },
}

struct Endpoint {
    address: Arc<str>,
    /// `address`, the authority of every request.
    authority: http::uri::Authority,
    config: Arc<GrpcConfig>,
    state: watch::Receiver<ConnState>,
    started: AtomicBool,
    sender: Mutex<Option<watch::Sender<ConnState>>>,
    /// The request URI of each method called so far, by its descriptor's address, with
    /// the service it was made for.
    paths: Mutex<HashMap<usize, (rpc_core::Name, Uri)>>,
    /// Calls in flight to this address, for the connection's write batching.
    in_flight: InFlight,
}

impl Endpoint {
    fn new(address: &str, config: Arc<GrpcConfig>) -> Endpoint {
        let (sender, state) = watch::channel(ConnState::Connecting { last_error: None });
        Endpoint {
            address: address.into(),
            authority: address
                .parse()
                .unwrap_or_else(|_| http::uri::Authority::from_static("localhost")),
            config,
            state,
            started: AtomicBool::new(false),
            sender: Mutex::new(Some(sender)),
            paths: Mutex::default(),
            in_flight: InFlight::default(),
        }
    }

    /// The live connection for `request`, waiting as the module docs say.
    async fn sender(&self, request: &Request) -> Result<Sender> {
        self.start();
        let mut state = self.state.clone();
        loop {
            let last_error = match &*state.borrow_and_update() {
                // A connection that failed since fails the call when it is sent.
                ConnState::Connected(sender) => return Ok(sender.clone()),
                ConnState::Failed { error, retry_at } => {
                    if !request.wait_for_ready || *retry_at >= request.deadline {
                        return Err(error.clone());
                    }
                    Some(error.clone())
                }
                ConnState::Connecting { last_error } => last_error.clone(),
            };
            match tokio::time::timeout_at(request.deadline.into(), state.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::unavailable("connection manager stopped", None)),
                Err(_) => {
                    return Err(Error::timeout_connecting(
                        request.timeout,
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
            tokio::spawn(manage(
                self.address.clone(),
                self.config.clone(),
                self.in_flight.clone(),
                sender,
            ));
        }
    }

    /// Sends `request` as one stream and reads its answer.
    async fn call(&self, sender: Sender, request: Request) -> Result<Response> {
        let head = self.http_request(&request)?;
        let codec = request.codec;
        let unsent = |error: h2::Error| {
            Error::unavailable(
                format!(
                    "connection to {} closed before the call was sent: {error}",
                    self.address
                ),
                None,
            )
        };
        let failed = |error: h2::Error| {
            Error::transport(format!("call to {} failed: {error}", self.address))
        };
        let len = request.body.len();
        let Some((first, rest)) = message::chunks(request.body) else {
            return Err(Error::request_too_large(len as u64, u32::MAX.into(), ""));
        };
        let mut sender = sender.ready().await.map_err(unsent)?;
        let (response, mut stream) = sender.send_request(head, false).map_err(unsent)?;
        stream.send_data(first, rest.is_none()).map_err(failed)?;
        if let Some(rest) = rest {
            stream.send_data(rest, true).map_err(failed)?;
        }
        let response = match response.await {
            Ok(response) => response,
            // REFUSED_STREAM: the provider did not take the stream, so the call was not
            // processed (RFC 9113, 8.7) and may go elsewhere.
            Err(error) if error.reason() == Some(h2::Reason::REFUSED_STREAM) => {
                return Err(unsent(error));
            }
            Err(error) => return Err(failed(error)),
        };
        let (parts, body) = response.into_parts();
        let mut body = Received::new(body);
        if parts.status != StatusCode::OK {
            return Err(http_error(parts.status, &parts.headers));
        }
        // Trailers-only: the status came with the headers, there is no message.
        if parts.headers.contains_key("grpc-status") {
            return Err(self
                .status_error(&parts.headers, request.timeout)
                .unwrap_or_else(|| {
                    Error::Protocol(format!("{} answered OK without a message", self.address))
                }));
        }
        let answered_codec = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| codec_for_content_type(v.as_bytes()));
        if answered_codec.is_some_and(|c| c != codec) {
            return Err(Error::Protocol(format!(
                "{} answered in another codec than asked ({codec})",
                self.address
            )));
        }
        let (message, trailers) =
            match message::read_unary(&mut body, self.config.max_message_len).await {
                Ok(read) => read,
                Err(MessageError::TooLarge { size, limit }) => {
                    return Err(Error::response_too_large(
                        size,
                        limit,
                        MAX_MESSAGE_LEN_SETTING,
                    ));
                }
                Err(MessageError::Body(error)) => {
                    return Err(Error::transport(format!(
                        "reading the answer from {} failed: {error}",
                        self.address
                    )));
                }
                Err(error) => {
                    return Err(Error::Protocol(format!(
                        "unreadable answer from {}: {error}",
                        self.address
                    )));
                }
            };
        let Some(trailers) = trailers else {
            return Err(Error::Protocol(format!(
                "{} ended the answer without grpc-status",
                self.address
            )));
        };
        match self.status_error(&trailers, request.timeout) {
            // The provider's reply attachments: its initial metadata, and metadata in the
            // trailers beside the status (where grpc servers may also put it).
            None => {
                let mut attachments = metadata::attachments(&parts.headers);
                for (key, value) in metadata::attachments(&trailers).iter() {
                    attachments.insert(key, value);
                }
                Ok(Response {
                    codec,
                    body: message,
                    attachments,
                })
            }
            Some(error) => Err(error),
        }
    }

    /// The URI of `request`'s method, built once per method: a `format!` and a URI parse
    /// per call showed in profiles.
    fn uri(&self, request: &Request) -> Result<Uri> {
        let key = std::ptr::from_ref(request.method) as usize;
        let mut paths = self
            .paths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((service, uri)) = paths.get(&key)
            && **service == *request.service
        {
            return Ok(uri.clone());
        }
        let path = format!("/{}/{}", &*request.service, request.method.name);
        let uri = Uri::builder()
            .scheme(if self.config.client_tls.is_some() {
                "https"
            } else {
                "http"
            })
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| {
                Error::Protocol(format!(
                    "{}/{} cannot be a request path: {e}",
                    &*request.service, request.method.name
                ))
            })?;
        // Methods are static, but one descriptor may serve services named at run time
        // (generic calls): bound the cache rather than trust their number.
        if paths.len() >= MAX_CACHED_PATHS {
            paths.clear();
        }
        paths.insert(key, (request.service.clone(), uri.clone()));
        Ok(uri)
    }

    /// The head of `request`'s stream; its message follows as DATA.
    fn http_request(&self, request: &Request) -> Result<http::Request<()>> {
        let uri = self.uri(request)?;
        let mut http_request = http::Request::new(());
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = uri;
        let headers = http_request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(content_type(request.codec)),
        );
        headers.insert(TE, HeaderValue::from_static("trailers"));
        let left = request.deadline.saturating_duration_since(Instant::now());
        if let Ok(value) = HeaderValue::from_str(&format_timeout(left)) {
            headers.insert("grpc-timeout", value);
        }
        if !request.version.is_empty() {
            let version = HeaderValue::from_str(&request.version).map_err(|_| {
                Error::Protocol(format!("version {:?} cannot be a header", request.version))
            })?;
            headers.insert(VERSION_HEADER, version);
        }
        metadata::add_attachments(&request.attachments, headers)?;
        Ok(http_request)
    }

    /// The error `headers` (trailers, or a trailers-only answer) report; `None` for OK.
    fn status_error(&self, headers: &HeaderMap, budget: Duration) -> Option<Error> {
        let Some(value) = headers.get("grpc-status") else {
            return Some(Error::Protocol(format!(
                "{} ended the answer without grpc-status",
                self.address
            )));
        };
        let status = std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .map_or(GrpcStatus::Unknown, GrpcStatus::from_number);
        if status == GrpcStatus::Ok {
            return None;
        }
        let message = headers
            .get("grpc-message")
            .map(|v| decode_message(v.as_bytes()))
            .unwrap_or_default();
        let tri = headers.get(TRI_CODE).and_then(|v| v.to_str().ok());
        Some(error_for(
            status,
            tri,
            message,
            budget,
            &self.address,
            MAX_MESSAGE_LEN_SETTING,
        ))
    }
}

/// The error for an answer that is not HTTP 200, by the gRPC spec's table.
fn http_error(status: StatusCode, headers: &HeaderMap) -> Error {
    let grpc = match status.as_u16() {
        400 => GrpcStatus::Internal,
        401 => GrpcStatus::Unauthenticated,
        403 => GrpcStatus::PermissionDenied,
        404 => GrpcStatus::Unimplemented,
        429 | 502 | 503 | 504 => GrpcStatus::Unavailable,
        _ => GrpcStatus::Unknown,
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    Error::from_code(
        grpc.to_code().unwrap_or(rpc_core::Code::Unknown),
        format!("HTTP status {status} (content type {content_type:?}) instead of a gRPC answer"),
        Duration::ZERO,
    )
}

/// Connects, waits for the connection to end, reconnects with backoff. Ends when every
/// channel to the address is dropped.
async fn manage(
    address: Arc<str>,
    config: Arc<GrpcConfig>,
    in_flight: InFlight,
    state: watch::Sender<ConnState>,
) {
    let mut backoff = config.reconnect_backoff;
    let mut last_error = None;
    loop {
        state.send_replace(ConnState::Connecting {
            last_error: last_error.take(),
        });
        let attempt = tokio::select! {
            attempt = open(&address, &config, &in_flight) => attempt,
            _ = state.closed() => return,
        };
        let error = match attempt {
            Ok((sender, mut connection)) => {
                let opened = Instant::now();
                tracing::debug!(%address, "connected (HTTP/2)");
                let pings = connection.ping_pong();
                state.send_replace(ConnState::Connected(sender));
                let keepalive = async {
                    match (config.keepalive_interval, pings) {
                        (Some(interval), Some(pings)) => {
                            keepalive(pings, interval, config.keepalive_timeout, &in_flight).await
                        }
                        _ => std::future::pending().await,
                    }
                };
                let outcome = tokio::select! {
                    outcome = &mut connection => outcome.map_err(|e| e.to_string()),
                    unanswered = keepalive => Err(unanswered),
                    // Dropping the connection future closes the socket.
                    _ = state.closed() => return,
                };
                let error = match outcome {
                    Ok(()) => Error::unavailable(format!("connection to {address} closed"), None),
                    Err(error) => {
                        Error::unavailable(format!("connection to {address} failed: {error}"), None)
                    }
                };
                tracing::info!(%address, %error, "connection lost, reconnecting");
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

/// Sends an HTTP/2 PING whenever `interval` passed without anything read from the
/// peer, and waits `timeout` for its answer; returns why the connection is dead. The
/// provider's connections use it too.
pub(super) async fn keepalive(
    mut pings: h2::PingPong,
    interval: Duration,
    timeout: Duration,
    in_flight: &InFlight,
) -> String {
    let mut seen = in_flight.reads();
    loop {
        tokio::time::sleep(interval).await;
        let reads = in_flight.reads();
        if reads != seen {
            seen = reads;
            continue;
        }
        match tokio::time::timeout(timeout, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => seen = in_flight.reads(),
            Ok(Err(error)) => return error.to_string(),
            Err(_) => return format!("no answer to a keepalive ping within {timeout:?}"),
        }
    }
}

/// The connection's frame I/O, run by [`manage`]; it ends when the connection does.
type ConnectionFuture = h2::client::Connection<Coalesce<Box<dyn Stream>>, Bytes>;

/// A plain or TLS connection to a provider.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Opens a TCP connection, runs the TLS handshake on it when the transport has client TLS,
/// then the HTTP/2 handshake.
async fn open(
    address: &str,
    config: &GrpcConfig,
    in_flight: &InFlight,
) -> Result<(Sender, ConnectionFuture)> {
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
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
    let _ = stream.set_nodelay(true);
    let Some(tls) = &config.client_tls else {
        return handshake(address, config, Box::new(stream), in_flight).await;
    };
    let name = crate::tls::server_name_for(address, tls.server_name.as_deref())?;
    let stream = tokio::time::timeout(config.connect_timeout, tls.connector.connect(name, stream))
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
        .map_err(|e| Error::unavailable(format!("TLS handshake with {address} failed"), Some(e)))?;
    handshake(address, config, Box::new(stream), in_flight).await
}

/// Runs the HTTP/2 handshake on an open (plain or TLS) connection.
async fn handshake(
    address: &str,
    config: &GrpcConfig,
    stream: Box<dyn Stream>,
    in_flight: &InFlight,
) -> Result<(Sender, ConnectionFuture)> {
    let mut builder = h2::client::Builder::new();
    // hyper's client settings, which this transport used before it spoke h2 directly.
    builder
        .initial_window_size(config.stream_window)
        .initial_connection_window_size(config.stream_window.saturating_mul(2))
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .enable_push(false);
    let handshake = builder.handshake(Coalesce::new(stream, in_flight.clone()));
    tokio::time::timeout(config.connect_timeout, handshake)
        .await
        .map_err(|_| {
            Error::unavailable(format!("HTTP/2 handshake with {address} timed out"), None)
        })?
        .map_err(|e| {
            Error::unavailable(format!("HTTP/2 handshake with {address} failed: {e}"), None)
        })
}
