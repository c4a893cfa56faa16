//! What a caller reads when a call fails at run time: the cause and the address in
//! `Display`, which of three things a timeout was, a peer that speaks another protocol,
//! an address without a port, one error kind for messages over either side's limit, and a
//! call that rides out a provider's reconnect backoff when it has nowhere else to go.
//!
//! The misbehaving peers (one that never answers, one that answers every call "timed out",
//! an HTTP server, a listener whose backlog is full) are plain sockets on loopback.

mod raw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rpc_core::codec::Blob;
use rpc_core::transport::Transport;
use rpc_core::{Codec, Error, MethodDescriptor, Request, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::Decoder;
use tower::ServiceExt;
use transports::tcp::Status;
use transports::tcp::frame::{FrameDecoder, Header};
use transports::{TcpConfig, TcpTransport};

/// Test service.
#[rpc_core::service(name = "test.Payloads")]
pub trait Payloads {
    /// The length of `payload`.
    async fn len(&self, payload: Blob) -> u64;
    /// A payload of `len` bytes.
    async fn make(&self, len: u64) -> Blob;
    /// Returns `payload`.
    async fn echo(&self, payload: Blob) -> Blob;
    /// Sleeps `millis`, then returns them.
    async fn sleep(&self, millis: u64) -> u64;
}

struct PayloadsImpl;

impl Payloads for PayloadsImpl {
    async fn len(&self, payload: Blob) -> u64 {
        payload.len() as u64
    }

    async fn make(&self, len: u64) -> Blob {
        Blob(vec![7; len as usize])
    }

    async fn echo(&self, payload: Blob) -> Blob {
        payload
    }

    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

async fn provider(config: TcpConfig, address: &str) -> Server {
    Server::builder()
        .transport(TcpTransport::new(config))
        .add_service(PayloadsServer::new(PayloadsImpl))
        .bind(address)
        .await
        .expect("bind on loopback")
}

fn consumer(address: impl ToString, config: TcpConfig, timeout: Duration) -> PayloadsClient {
    PayloadsClient::builder()
        .transport(TcpTransport::new(config))
        .address(address.to_string())
        .timeout(timeout)
        .build()
        .expect("valid client")
}

/// A loopback listener that hands each accepted connection to `handle`, in its own task.
async fn peer<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    address
}

/// A loopback port nothing listens on (bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A listener that accepts connections, reads them, and never writes.
async fn silent_peer() -> SocketAddr {
    peer(|mut stream| async move {
        let mut buf = [0; 4096];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
}

/// A peer that answers every two-way call with status 31: the provider's own timeout.
async fn provider_that_times_out_every_call() -> SocketAddr {
    peer(|mut stream| async move {
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        loop {
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                if !frame.header.is_request() || frame.header.is_event() {
                    continue;
                }
                let message = b"call timed out after 99ms";
                let mut answer = BytesMut::new();
                Header {
                    flags: frame.header.serialization_id(),
                    status: Status::ServerTimeout.byte(),
                    request_id: frame.header.request_id,
                    body_len: message.len() as u32,
                }
                .encode(&mut answer);
                answer.put_slice(message);
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
            }
            if matches!(stream.read_buf(&mut buf).await, Ok(0) | Err(_)) {
                return;
            }
        }
    })
    .await
}

/// An HTTP server that answers anything with `400 Bad Request`.
async fn http_server() -> SocketAddr {
    peer(|mut stream| async move {
        let mut buf = [0; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    })
    .await
}

/// A listener whose accept queue is full, so a new connection attempt hangs in SYN_SENT.
/// Keep the returned value alive while it is used.
async fn unreachable_peer() -> (SocketAddr, impl Sized) {
    unreachable_peer_at("127.0.0.1:0".parse().unwrap()).await
}

/// [`unreachable_peer`] on `address`.
async fn unreachable_peer_at(address: SocketAddr) -> (SocketAddr, impl Sized) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(address).unwrap();
    let listener = socket.listen(0).unwrap();
    let address = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Connect until one hangs: that one found the queue full.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    (address, (listener, queued))
}

fn message(error: &Error) -> String {
    error.to_string()
}

// ---------------------------------------------------------------------------------------
// Causes and addresses in Display.

#[tokio::test]
async fn a_refused_connection_names_the_address_and_the_os_error() {
    let address = closed_port().await;
    let client = consumer(address, TcpConfig::default(), Duration::from_secs(1));
    let error = client.sleep(1).await.unwrap_err();
    let text = message(&error);
    eprintln!("{text}");
    assert!(
        matches!(error.root(), Error::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        text.starts_with(&format!(
            "provider unavailable: connect to {address} failed: "
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    // The I/O error is still there for code that inspects it.
    let Error::Unavailable {
        source: Some(source),
        ..
    } = error.root()
    else {
        panic!("no I/O source in {error:?}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn an_address_without_a_port_fails_the_build_naming_it_and_the_expected_form() {
    let built = PayloadsClient::builder()
        .transport(TcpTransport::default())
        .address("localhost")
        .build();
    let Err(error) = built else {
        panic!("an address without a port must be refused at build time");
    };
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "invalid configuration: invalid TCP address \"localhost\": no port; expected \
         host:port, e.g. \"127.0.0.1:20880\", \"localhost:20880\" or \"[::1]:20880\""
    );
}

#[tokio::test]
async fn an_http_port_is_named_as_not_speaking_this_protocol() {
    let address = http_server().await;
    let client = consumer(address, TcpConfig::default(), Duration::from_secs(5));
    let error = client.sleep(1).await.unwrap_err();
    assert!(matches!(error, Error::Protocol(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "protocol error: {address} does not speak this protocol: it sent \"HTTP/1.1 400 \
             Bad Request\" where a frame starting with magic 0xdabb was expected; it answers \
             like an HTTP server: point the client at the provider's RPC port"
        )
    );
}

// ---------------------------------------------------------------------------------------
// Which timeout.

/// Asserts a timeout of `budget` whose message reads `call timed out after <budget>: `
/// then `stage`, and which callers still recognise as a plain timeout.
fn assert_timeout(error: &Error, budget: Duration, stage: &str) {
    let text = message(error);
    eprintln!("{text}");
    assert!(error.is_timeout(), "{error:?}");
    assert!(
        matches!(error.root(), Error::Timeout(d) if *d == budget),
        "{error:?}"
    );
    assert!(error.timeout_stage().is_some(), "{error:?}");
    let expected = format!("call timed out after {budget:?}: {stage}");
    assert!(text.starts_with(&expected), "{text}\nexpected: {expected}");
}

#[tokio::test]
async fn a_provider_that_accepts_but_never_answers_is_a_timeout_after_sending() {
    let address = silent_peer().await;
    let budget = Duration::from_millis(300);
    let client = consumer(address, TcpConfig::default(), budget);
    let error = client.sleep(1).await.unwrap_err();
    assert_timeout(
        &error,
        budget,
        &format!(
            "the request was sent to {address} but no answer came before the deadline \
             (the provider is slow, overloaded or not answering)"
        ),
    );
}

#[tokio::test]
async fn a_provider_never_reached_is_a_timeout_before_connecting() {
    let (address, _hold) = unreachable_peer().await;
    let budget = Duration::from_millis(300);
    let client = consumer(address, TcpConfig::default(), budget);
    let error = client.sleep(1).await.unwrap_err();
    assert_timeout(
        &error,
        budget,
        &format!(
            "never connected to {address} (no connection could be opened before the deadline)"
        ),
    );
}

#[tokio::test]
async fn a_provider_that_timed_out_the_handler_says_so() {
    let address = provider_that_times_out_every_call().await;
    let budget = Duration::from_secs(5);
    let client = consumer(address, TcpConfig::default(), budget);
    let error = client.sleep(1).await.unwrap_err();
    assert_timeout(
        &error,
        budget,
        &format!(
            "the provider at {address} stopped the call at the deadline (the handler took \
             too long)"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_is_a_timeout_in_the_handler_or_awaiting_the_answer_never_a_bare_one() {
    let server = provider(TcpConfig::default(), "127.0.0.1:0").await;
    let address = server.local_addr();
    let budget = Duration::from_millis(200);
    let client = consumer(address, TcpConfig::default(), budget);
    for _ in 0..3 {
        let error = client.sleep(5_000).await.unwrap_err();
        // Caller and provider share the deadline: whichever fires first is named.
        let text = message(&error);
        assert!(error.is_timeout(), "{error:?}");
        assert!(
            text.contains(&format!("the provider at {address} stopped the call"))
                || text.contains(&format!("the request was sent to {address}")),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Messages over the limit: one kind, the limit of the side that received it.

const KIB: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_providers_limit_names_the_providers_limit_and_setting() {
    let server = provider(
        TcpConfig::default().max_frame_len(64 * KIB as u32),
        "127.0.0.1:0",
    )
    .await;
    let client = consumer(
        server.local_addr(),
        TcpConfig::default(),
        Duration::from_secs(5),
    );
    for _ in 0..3 {
        let error = client.len(Blob(vec![1; 100 * KIB])).await.unwrap_err();
        eprintln!("{error}");
        let Error::MessageTooLarge { size, limit, .. } = error else {
            panic!("expected MessageTooLarge, got {error:?}");
        };
        assert!(size > 100 * KIB as u64 && size < 101 * KIB as u64, "{size}");
        assert_eq!(limit, 64 * KIB as u64);
        assert_eq!(
            error.to_string(),
            format!(
                "request of {size} bytes exceeds the provider's limit of 65536 bytes; raise \
                 `TcpConfig::max_frame_len` on the provider (each side limits what it \
                 receives: the provider requests, the consumer responses)"
            )
        );
        // The provider dropped the body and kept the connection: the next call is served.
        assert_eq!(client.len(Blob(vec![1; KIB])).await.unwrap(), KIB as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_consumers_limit_fails_that_call_only() {
    let server = provider(TcpConfig::default(), "127.0.0.1:0").await;
    let client = consumer(
        server.local_addr(),
        TcpConfig::default().max_frame_len(64 * KIB as u32),
        Duration::from_secs(5),
    );
    // A call in flight on the same connection while the oversized answer goes by.
    let neighbour = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(300).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = client.make(100 * KIB as u64).await.unwrap_err();
    let Error::MessageTooLarge { size, limit, .. } = error else {
        panic!("expected MessageTooLarge, got {error:?}");
    };
    assert_eq!(limit, 64 * KIB as u64);
    assert_eq!(
        error.to_string(),
        format!(
            "response of {size} bytes exceeds the consumer's limit of 65536 bytes; raise \
             `TcpConfig::max_frame_len` on the consumer (each side limits what it receives: \
             the provider requests, the consumer responses)"
        )
    );
    assert_eq!(
        neighbour.await.unwrap().unwrap(),
        300,
        "the neighbour is unaffected"
    );
    assert_eq!(client.make(KIB as u64).await.unwrap().len(), KIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_limit_on_the_provider_alone_lets_large_requests_through() {
    // The consumer keeps a small limit: it applies to responses only.
    let server = provider(
        TcpConfig::default().max_frame_len(1024 * KIB as u32),
        "127.0.0.1:0",
    )
    .await;
    let client = consumer(
        server.local_addr(),
        TcpConfig::default().max_frame_len(64 * KIB as u32),
        Duration::from_secs(5),
    );
    let len = client.len(Blob(vec![1; 500 * KIB])).await.unwrap();
    assert_eq!(len, 500 * KIB as u64);
    // And a large answer is the consumer's business.
    let error = client.echo(Blob(vec![1; 500 * KIB])).await.unwrap_err();
    assert!(error.to_string().starts_with("response of "), "{error}");
}

// ---------------------------------------------------------------------------------------
// Reconnect backoff: wait for the provider when there is nowhere else to go.

static ECHO: MethodDescriptor = MethodDescriptor::new("echo");

/// A bincode `echo(payload)` request of the raw `Echo` service due in `timeout`.
fn echo_request(timeout: Duration, wait_for_ready: bool) -> Request {
    let mut body = BytesMut::new();
    Codec::Bincode
        .encode(&(&b"ping".to_vec(),), &mut body)
        .unwrap();
    let mut request = Request::new("Echo", "", &ECHO, Codec::Bincode, body.freeze(), timeout);
    request.wait_for_ready = wait_for_ready;
    request
}

async fn echo_provider(address: SocketAddr) -> Server {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(raw::Echo::new())
        .bind(&address.to_string())
        .await
        .expect("bind the released port again")
}

fn decode_echo(body: &Bytes) -> Vec<u8> {
    Codec::Bincode.decode(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_may_wait_rides_out_the_backoff_until_the_provider_is_back() {
    let address = closed_port().await;
    let transport = TcpTransport::new(
        TcpConfig::default().reconnect_backoff(Duration::from_millis(100), Duration::from_secs(5)),
    );
    let channel = transport.connect(&address.to_string()).unwrap();

    // Nowhere else to go and 10 s to spare: the call waits for the provider.
    let started = Instant::now();
    let call = tokio::spawn(
        channel
            .clone()
            .oneshot(echo_request(Duration::from_secs(10), true)),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!call.is_finished(), "gave up during the backoff");

    // Meanwhile a caller that may go elsewhere fails at once with the cached error.
    let quick = Instant::now();
    let error = channel
        .clone()
        .oneshot(echo_request(Duration::from_secs(10), false))
        .await
        .unwrap_err();
    assert!(
        quick.elapsed() < Duration::from_millis(50),
        "{:?}",
        quick.elapsed()
    );
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");

    let server = echo_provider(address).await;
    let response = call
        .await
        .unwrap()
        .expect("served once the provider is back");
    assert_eq!(decode_echo(&response.body), b"ping");
    eprintln!("served after {:?}", started.elapsed());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_deadline_ends_before_the_next_attempt_fails_at_once() {
    let address = closed_port().await;
    let transport = TcpTransport::new(
        TcpConfig::default().reconnect_backoff(Duration::from_secs(2), Duration::from_secs(5)),
    );
    let channel = transport.connect(&address.to_string()).unwrap();
    // The first attempt fails (refused); the next is 2 s away.
    let first = channel
        .clone()
        .oneshot(echo_request(Duration::from_secs(1), true))
        .await
        .unwrap_err();
    assert!(matches!(first, Error::Unavailable { .. }), "{first:?}");
    let started = Instant::now();
    let error = channel
        .clone()
        .oneshot(echo_request(Duration::from_millis(500), true))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error
            .to_string()
            .contains(&format!("connect to {address} failed")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_past_its_deadline_names_the_last_failed_attempt() {
    let address = closed_port().await;
    let transport = TcpTransport::new(
        TcpConfig::default()
            .reconnect_backoff(Duration::from_millis(600), Duration::from_millis(600)),
    );
    let channel = transport.connect(&address.to_string()).unwrap();
    let budget = Duration::from_millis(1500);
    let call = tokio::spawn(channel.clone().oneshot(echo_request(budget, true)));
    // The first attempt is refused; the next one, 600 ms later, hangs until the deadline.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, _hold) = unreachable_peer_at(address).await;
    let error = call.await.unwrap().unwrap_err();
    assert_timeout(
        &error,
        budget,
        &format!(
            "never connected to {address} (no connection could be opened before the \
             deadline; the last attempt: provider unavailable: connect to {address} failed: "
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_lone_provider_waits_out_the_backoff_and_one_with_others_moves_on() {
    let address = closed_port().await;
    let client = PayloadsClient::builder()
        .transport(TcpTransport::new(TcpConfig::default().reconnect_backoff(
            Duration::from_millis(100),
            Duration::from_secs(5),
        )))
        .address(address.to_string())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("valid client");
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(1).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!call.is_finished(), "gave up during the backoff");
    let server = provider(TcpConfig::default(), &address.to_string()).await;
    assert_eq!(call.await.unwrap().unwrap(), 1);

    // With another provider listed, a call never waits on the one that is down.
    let down = closed_port().await;
    let two = PayloadsClient::builder()
        .transport(TcpTransport::default())
        .addresses([down.to_string(), address.to_string()])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("valid client");
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(two.sleep(1).await.unwrap(), 1);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
    server.shutdown().await;
}
