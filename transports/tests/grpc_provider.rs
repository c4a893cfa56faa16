//! The HTTP/2 provider's own connection handling: HTTP/2 and HTTP/1.1 told apart on one
//! port (plain and TLS, the preface in one piece or trickled), a stream reset by a raw h2
//! client cancels its call, keepalive pings close a connection whose peer stopped
//! answering, and closing answers a call that outlived the drain.

mod certs;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use certs::Ca;
use common::{
    ProbeImpl, ProbeServer, Stats, eventually, grpc_client, http1_echo, start_grpc, wait_started,
};
use rpc_core::{Codec, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use transports::tls::{ClientTls, ServerTls};
use transports::{GrpcConfig, GrpcTransport};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn framed(message: &[u8]) -> Bytes {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// A raw h2 client on `stream`, its connection driven by a task of its own.
async fn h2_client<S>(stream: S) -> h2::client::SendRequest<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// Calls `echo(text)` in gRPC+JSON on `sender`; the answer's message and grpc-status.
async fn h2_echo(sender: &mut h2::client::SendRequest<Bytes>, text: &str) -> (Bytes, String) {
    let request = http::Request::post("http://localhost/test.Probe/echo")
        .header("content-type", "application/grpc+json")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut stream) = sender.send_request(request, false).unwrap();
    stream
        .send_data(framed(format!(r#"["{text}"]"#).as_bytes()), true)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap();
    let status = trailers["grpc-status"].to_str().unwrap().to_owned();
    let declared = u32::from_be_bytes(message[1..5].try_into().unwrap());
    assert_eq!((message[0], declared as usize), (0, message.len() - 5));
    (Bytes::from(message).slice(5..), status)
}

#[tokio::test]
async fn small_and_large_answers_arrive_whole_behind_their_prefix() {
    // Under 16 KiB the answer is one chunk, prefix included; from 16 KiB on the prefix
    // travels as a chunk of its own and the message is not copied.
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut sender = h2_client(tcp).await;
    for len in [0, 1, 16 * 1024 - 8, 16 * 1024, 100_000] {
        let text = "z".repeat(len);
        let (message, status) = h2_echo(&mut sender, &text).await;
        assert_eq!(status, "0");
        assert_eq!(message, format!(r#""{text}""#).as_bytes(), "{len}");
    }
    let probe = grpc_client(server.local_addr(), Codec::Bincode);
    let text = "y".repeat(100_000);
    assert_eq!(probe.echo(text.clone()).await.unwrap(), text);
}

#[tokio::test]
async fn http2_and_http1_share_one_plain_port() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let address = server.local_addr();
    let probe = grpc_client(address, Codec::Bincode);
    assert_eq!(probe.echo("h2".into()).await.unwrap(), "h2");
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = http1_echo(tcp, "h1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#""h1""#), "{answer}");
    // The HTTP/2 connection opened before carries on.
    assert_eq!(probe.echo("h2 again".into()).await.unwrap(), "h2 again");
}

/// Writes at most `limit` bytes per write, so the peer reads the preface in pieces.
struct Trickle<S> {
    inner: S,
    limit: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Trickle<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let limit = self.limit.min(buf.len());
        let written = std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..limit]);
        if written.is_ready() {
            // Let each piece go out in a segment of its own.
            std::thread::sleep(Duration::from_millis(2));
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_preface_that_arrives_in_pieces_is_still_http2() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut sender = h2_client(Trickle {
        inner: tcp,
        limit: 7,
    })
    .await;
    let (message, status) = h2_echo(&mut sender, "slowly").await;
    assert_eq!((&message[..], status.as_str()), (&br#""slowly""#[..], "0"));
}

fn tls_server(ca: &Ca) -> ServerTls {
    let leaf = ca.server_leaf();
    ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()
}

/// A TLS connection to `address` offering `alpn`.
async fn tls_connect(
    ca: &Ca,
    address: SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let trust = ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap();
    let mut config = (*trust.rustls_config().unwrap()).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn http2_and_http1_share_one_tls_port() {
    let ca = Ca::new("test CA");
    let server = Server::builder()
        .transport(
            GrpcTransport::default()
                .with_server_tls(tls_server(&ca))
                .unwrap(),
        )
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let address = server.local_addr();
    let mut sender = h2_client(tls_connect(&ca, address, b"h2").await).await;
    let (message, status) = h2_echo(&mut sender, "over h2").await;
    assert_eq!((&message[..], status.as_str()), (&br#""over h2""#[..], "0"));
    let answer = http1_echo(tls_connect(&ca, address, b"http/1.1").await, "over h1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#""over h1""#), "{answer}");
    let (message, _) = h2_echo(&mut sender, "h2 again").await;
    assert_eq!(&message[..], br#""h2 again""#);
}

#[tokio::test]
async fn a_stream_reset_by_the_caller_cancels_its_call_and_only_that_one() {
    let (server, stats) = start_grpc(GrpcConfig::default()).await;
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut sender = h2_client(tcp).await;
    let request = http::Request::post("http://localhost/test.Probe/sleep")
        .header("content-type", "application/grpc+json")
        .body(())
        .unwrap();
    let (_response, mut stream) = sender.send_request(request, false).unwrap();
    stream.send_data(framed(b"[10000]"), true).unwrap();
    wait_started(&stats, 1).await;
    stream.send_reset(h2::Reason::CANCEL);
    let aborted = eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1).await;
    assert!(aborted.is_some(), "the reset stream's call still runs");
    assert_eq!(Stats::get(&stats.finished), 0);
    // The connection carries on.
    let (message, status) = h2_echo(&mut sender, "after").await;
    assert_eq!((&message[..], status.as_str()), (&br#""after""#[..], "0"));
}

/// Frame types in a raw HTTP/2 byte stream from a server (after its SETTINGS).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn keepalive_pings_close_a_connection_whose_peer_stopped_answering() {
    let config = GrpcConfig::default()
        .keepalive(Some(Duration::from_millis(200)), Duration::from_millis(300));
    let (server, _) = start_grpc(config).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    // A peer that says hello (preface, empty SETTINGS) and then nothing, pings included.
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut received = Vec::new();
    // The outcome of the read does not matter (a reset is a close too), its end does.
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut received))
        .await
        .expect("the provider did not close a connection that stopped answering pings");
    let types = frame_types(&received);
    // SETTINGS, then a PING (type 6) that got no answer.
    assert!(types.contains(&6), "{types:?}");
    // A peer that answers (the stock client) keeps its connection past several intervals.
    let probe = grpc_client(server.local_addr(), Codec::Json);
    assert_eq!(probe.echo("one".into()).await.unwrap(), "one");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(probe.echo("two".into()).await.unwrap(), "two");
}

#[tokio::test]
async fn closing_answers_a_call_that_outlived_the_drain() {
    // A drain of 1 s, then the listener closes with GOAWAY: a call that outlives the drain
    // is answered (cancelled) rather than left to its deadline.
    let (server, stats) = start_grpc(GrpcConfig::default()).await;
    let probe = grpc_client(server.local_addr(), Codec::Json);
    let call = common::spawn_sleep(&probe, 5_000);
    wait_started(&stats, 1).await;
    let started = std::time::Instant::now();
    server.shutdown().await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call was left hanging after the provider closed")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(Stats::get(&stats.finished), 0);
}
