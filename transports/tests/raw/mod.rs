//! A raw peer for the TCP transport's server, shared by the raw-socket tests: a hand-written
//! `Echo` skeleton (no proc macro) served over `TcpTransport`, builders that write frames and
//! routing heads by hand, and `Raw`, a `TcpStream` reading frames with `FrameDecoder`. Every
//! read is bounded by [`WAIT`] unless its name says otherwise.
//!
//! Used by `bad_frames.rs`, `cancel_events.rs`, `connection_limits.rs` and
//! `provider_heartbeats.rs`.

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use rpc_core::{Codec, Context, MethodDescriptor, Server, ServiceDescriptor, Skeleton};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use transports::tcp::Status;
use transports::tcp::frame::serialization_id;
use transports::tcp::frame::{FLAG_REQUEST, FLAG_TWO_WAY, Frame, FrameDecoder, Header};
use transports::{TcpConfig, TcpTransport};

/// Bound on every wait for a frame or a close.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The service under test.

static ECHO: ServiceDescriptor = ServiceDescriptor {
    name: "Echo",
    version: "",
    methods: &[method("echo", &["payload"]), method("hang", &[])],
    codecs: &Codec::SERDE,
};

/// A two-way method with no settings of its own.
const fn method(name: &'static str, args: &'static [&'static str]) -> MethodDescriptor {
    MethodDescriptor {
        args,
        ..MethodDescriptor::new(name)
    }
}

/// Runs when a `hang` handler starts, given the value of its `tag` attachment (0 if absent or
/// not a number); what it returns is held until the handler is dropped (aborted).
pub(crate) type OnHang = fn(usize) -> Box<dyn Send>;

/// `echo(payload: Vec<u8>) -> Vec<u8>`, and `hang()` which never returns.
pub(crate) struct Echo {
    on_hang: OnHang,
}

impl Echo {
    /// An `Echo` whose `hang` handlers do nothing but wait.
    pub(crate) fn new() -> Echo {
        Echo::on_hang(|_| Box::new(()))
    }

    /// An `Echo` whose `hang` handlers call `on_hang` as they start.
    pub(crate) fn on_hang(on_hang: OnHang) -> Echo {
        Echo { on_hang }
    }
}

impl Skeleton for Echo {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &ECHO
    }

    fn call(
        &self,
        method: usize,
        cx: Context,
        codec: Codec,
        args: Bytes,
    ) -> BoxFuture<'static, rpc_core::Result<rpc_core::Response>> {
        let tag = cx
            .attachment("tag")
            .and_then(|tag| tag.parse::<usize>().ok())
            .unwrap_or(0);
        let on_hang = self.on_hang;
        Box::pin(async move {
            match method {
                0 => {
                    let (payload,): (Vec<u8>,) = codec.decode(&args)?;
                    let mut out = BytesMut::new();
                    codec.encode(&payload, &mut out)?;
                    Ok(rpc_core::Response::new(codec, out.freeze()))
                }
                _ => {
                    let _guard = on_hang(tag);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(rpc_core::Response::new(codec, Bytes::new()))
                }
            }
        })
    }
}

/// A server on a free local port serving [`Echo::new`] over TCP with `config`.
pub(crate) async fn start(config: TcpConfig) -> (Server, SocketAddr) {
    start_with(config, Echo::new()).await
}

/// A server on a free local port serving `echo` over TCP with `config`.
pub(crate) async fn start_with(config: TcpConfig, echo: Echo) -> (Server, SocketAddr) {
    let server = Server::builder()
        .transport(TcpTransport::new(config))
        .add_service(echo)
        .bind("127.0.0.1:0")
        .await
        .expect("server binds");
    let addr = server.local_addr();
    (server, addr)
}

// ---------------------------------------------------------------------------------------
// Writing requests by hand.

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The routing head: service, version, method, attachments.
pub(crate) fn head(
    service: &str,
    version: &str,
    method: &str,
    attachments: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, service);
    put_str(&mut out, version);
    put_str(&mut out, method);
    out.extend_from_slice(&(attachments.len() as u16).to_be_bytes());
    for (k, v) in attachments {
        put_str(&mut out, k);
        put_str(&mut out, v);
    }
    out
}

/// The argument tuple `(payload,)` in `codec`.
pub(crate) fn echo_args(codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec
        .encode(&(payload.to_vec(),), &mut out)
        .expect("encode args");
    out.to_vec()
}

/// Header and body as bytes.
pub(crate) fn frame_bytes(flags: u8, request_id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Frame::new(flags, 0, request_id, Bytes::copy_from_slice(body)).encode(&mut out);
    out.to_vec()
}

/// Just a header, announcing `body_len` bytes that may never come.
pub(crate) fn header_bytes(flags: u8, request_id: u64, body_len: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    Header {
        flags,
        status: 0,
        request_id,
        body_len,
    }
    .encode(&mut out);
    out.to_vec()
}

/// A two-way request frame with serialization id `codec_id` and the given head and args.
pub(crate) fn call_bytes(request_id: u64, codec_id: u8, head: &[u8], args: &[u8]) -> Vec<u8> {
    let body = [head, args].concat();
    frame_bytes(FLAG_REQUEST | FLAG_TWO_WAY | codec_id, request_id, &body)
}

/// A valid two-way `Echo.echo(payload)` request.
pub(crate) fn echo_call(request_id: u64, codec: Codec, payload: &[u8]) -> Vec<u8> {
    call_bytes(
        request_id,
        serialization_id(codec),
        &head("Echo", "", "echo", &[("timeout", "5000")]),
        &echo_args(codec, payload),
    )
}

/// Asserts `frame` is the successful call response to `request_id` echoing `payload` in
/// `codec`.
pub(crate) fn assert_echoed(frame: &Frame, request_id: u64, codec: Codec, payload: &[u8]) {
    assert_eq!(
        frame.header.status,
        Status::Ok.byte(),
        "status of {frame:?}: {}",
        String::from_utf8_lossy(&frame.body)
    );
    assert!(
        !frame.header.is_request(),
        "a response, not a request: {frame:?}"
    );
    assert!(
        !frame.header.is_event(),
        "a call response, not an event: {frame:?}"
    );
    assert_eq!(frame.header.request_id, request_id);
    assert_eq!(frame.header.serialization_id(), serialization_id(codec));
    let echoed: Vec<u8> = codec.decode(&frame.body).expect("response body decodes");
    assert_eq!(echoed, payload);
}

// ---------------------------------------------------------------------------------------
// A raw peer.

pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    pub(crate) decoder: FrameDecoder,
}

impl Raw {
    pub(crate) async fn connect(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect within 10 s")
            .expect("connect");
        stream.set_nodelay(true).ok();
        Raw {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            decoder: FrameDecoder::new(u32::MAX),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to server");
    }

    /// The next frame, or `None` once the server closed (EOF or reset). No time limit.
    pub(crate) async fn next_frame_unbounded(&mut self) -> Option<Frame> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => {}
                Err(error) => panic!("the server sent an unreadable frame: {error}"),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next frame, or `None` once the server closed; panics after [`WAIT`].
    pub(crate) async fn next_frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.next_frame_unbounded())
            .await
            .expect("neither a frame nor a close within 10 s")
    }

    pub(crate) async fn frame(&mut self) -> Frame {
        self.next_frame()
            .await
            .expect("the server closed the connection; expected a frame")
    }

    pub(crate) async fn expect_closed(&mut self) {
        if let Some(frame) = self.next_frame().await {
            panic!("expected the server to close the connection, got {frame:?}");
        }
    }

    /// No frame and no close for `quiet`.
    pub(crate) async fn expect_quiet(&mut self, quiet: Duration) {
        if let Ok(next) = tokio::time::timeout(quiet, self.next_frame_unbounded()).await {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Makes an [`echo_call`] and asserts the next frame is its answer.
    pub(crate) async fn echo(&mut self, request_id: u64, codec: Codec, payload: &[u8]) {
        self.send(&echo_call(request_id, codec, payload)).await;
        let frame = self.frame().await;
        assert_echoed(&frame, request_id, codec, payload);
    }
}

/// A fresh connection makes one call and gets its answer.
pub(crate) async fn fresh_client_is_served(addr: SocketAddr) {
    let mut raw = Raw::connect(addr).await;
    raw.echo(1, Codec::Bincode, b"still alive").await;
}
