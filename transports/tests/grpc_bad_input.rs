//! Hostile and broken input on the HTTP/2 port, sent with a raw hyper client: each gets a
//! clear gRPC status or HTTP error, nothing panics, other connections carry on. Plus the
//! HTTP/1.1 JSON gateway, called the way `curl` calls it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{grpc_client, start_grpc};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rpc_core::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transports::GrpcConfig;

type Sender = http2::SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// What came back: HTTP status, headers, body, trailers.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    /// `grpc-status` and the decoded `grpc-message`, from the trailers or a trailers-only
    /// answer.
    fn grpc(&self) -> (Option<u32>, String) {
        let headers = self
            .trailers
            .as_ref()
            .filter(|t| t.contains_key("grpc-status"))
            .unwrap_or(&self.headers);
        let status = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let message = headers
            .get("grpc-message")
            .map(|v| transports::grpc::status::decode_message(v.as_bytes()))
            .unwrap_or_default();
        (status, message)
    }
}

async fn send(
    sender: &mut Sender,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::post(format!("http://localhost{path}"))
        .header("content-type", content_type)
        .header("te", "trailers");
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

const JSON: &str = "application/grpc+json";

#[tokio::test]
async fn a_well_formed_raw_call_succeeds() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let mut sender = connect(server.local_addr()).await;
    let answer = send(
        &mut sender,
        "/test.Probe/echo",
        JSON,
        framed(br#"["hi"]"#),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.grpc(), (Some(0), String::new()));
    assert_eq!(&answer.body[..], &framed(br#""hi""#)[..]);
}

#[tokio::test]
async fn bad_requests_get_clear_statuses_and_the_connection_goes_on() {
    let (server, stats) = start_grpc(GrpcConfig::default().max_message_len(1024)).await;
    let mut sender = connect(server.local_addr()).await;
    let echo = framed(br#"["hi"]"#);

    let wrong_type = send(
        &mut sender,
        "/test.Probe/echo",
        "text/plain",
        echo.clone(),
        &[],
    )
    .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let unknown_codec = send(
        &mut sender,
        "/test.Probe/echo",
        "application/grpc+xml",
        echo.clone(),
        &[],
    )
    .await;
    let (status, message) = unknown_codec.grpc();
    assert_eq!(status, Some(12), "{message}");
    assert!(message.contains("application/grpc+xml"), "{message}");

    let truncated = send(&mut sender, "/test.Probe/echo", JSON, vec![0, 0, 0], &[]).await;
    let (status, message) = truncated.grpc();
    assert_eq!(status, Some(3), "{message}");
    assert!(message.contains("ended 3 bytes into"), "{message}");

    let short_body = send(
        &mut sender,
        "/test.Probe/echo",
        JSON,
        echo[..7].to_vec(),
        &[],
    )
    .await;
    assert_eq!(short_body.grpc().0, Some(3));

    let mut over = vec![0];
    over.extend_from_slice(&u32::MAX.to_be_bytes());
    let too_large = send(&mut sender, "/test.Probe/echo", JSON, over, &[]).await;
    let (status, message) = too_large.grpc();
    assert_eq!(status, Some(8), "{message}");
    assert!(
        message.contains("4294967295") && message.contains("1024"),
        "{message}"
    );

    let mut compressed = echo.clone();
    compressed[0] = 1;
    let answer = send(&mut sender, "/test.Probe/echo", JSON, compressed, &[]).await;
    let (status, message) = answer.grpc();
    assert_eq!(status, Some(3), "{message}");
    assert!(message.contains("compressed"), "{message}");

    let gzip = send(
        &mut sender,
        "/test.Probe/echo",
        JSON,
        echo.clone(),
        &[("grpc-encoding", "gzip")],
    )
    .await;
    assert_eq!(gzip.grpc().0, Some(12));
    assert_eq!(
        gzip.headers
            .get("grpc-accept-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"identity"[..])
    );

    let bad_timeout = send(
        &mut sender,
        "/test.Probe/echo",
        JSON,
        echo.clone(),
        &[("grpc-timeout", "soon")],
    )
    .await;
    assert_eq!(bad_timeout.grpc().0, Some(3));

    for path in [
        "/nope.Service/echo",
        "/test.Probe/nope",
        "/just-one-segment",
        "/a/b/c",
    ] {
        let answer = send(&mut sender, path, JSON, echo.clone(), &[]).await;
        let (status, message) = answer.grpc();
        assert_eq!(status, Some(12), "{path}: {message}");
    }

    let garbage = send(
        &mut sender,
        "/test.Probe/echo",
        JSON,
        framed(b"{not json"),
        &[],
    )
    .await;
    assert_eq!(
        garbage.grpc().0,
        Some(13),
        "a body that does not decode is a codec error"
    );

    // The same connection still serves calls, and nothing reached a handler.
    let fine = send(&mut sender, "/test.Probe/echo", JSON, echo.clone(), &[]).await;
    assert_eq!(fine.grpc(), (Some(0), String::new()));
    assert_eq!(common::Stats::get(&stats.started), 0);
}

#[tokio::test]
async fn a_flood_of_streams_is_bounded_and_other_connections_are_unaffected() {
    let (server, stats) = start_grpc(GrpcConfig::default().max_concurrent_streams(16)).await;
    let sender = connect(server.local_addr()).await;
    // 200 slow calls at once on one connection: HTTP/2 lets 16 run, the rest wait their
    // turn or are refused, and nothing else suffers.
    let body = framed(b"[2000]");
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let mut sender = sender.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let request = Request::post("http://localhost/test.Probe/sleep")
                    .header("content-type", JSON)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let _ = sender.send_request(request).await;
            })
        })
        .collect();
    common::wait_started(&stats, 16).await;
    let other = grpc_client(server.local_addr(), Codec::Bincode);
    let started = std::time::Instant::now();
    assert_eq!(other.echo("still here".into()).await.unwrap(), "still here");
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        common::Stats::get(&stats.started) <= 16,
        "{}",
        common::Stats::get(&stats.started)
    );
    for call in flood {
        call.abort();
    }
}

/// Sends `request` (a whole HTTP/1.1 request) on a fresh connection; the status line's
/// code and the body.
async fn http1(address: SocketAddr, request: String) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(answer).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn http1_json_calls_work_like_curl() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let address = server.local_addr();
    let (code, body) = http1(
        address,
        post("/test.Probe/echo", "application/json", r#"{"text": "hi"}"#),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, r#""hi""#));
    let (code, body) = http1(
        address,
        post("/test.Probe/echo", "application/json", r#"["by position"]"#),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, r#""by position""#));

    let (code, body) = http1(
        address,
        post("/test.Probe/echo", "application/json", "{oops"),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "bad-request");
    assert!(
        error["message"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );

    let (code, body) = http1(
        address,
        post("/test.Probe/echo", "application/json", r#"{"txet": "hi"}"#),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("txet") && body.contains("(text)"), "{body}");

    let (code, body) = http1(
        address,
        post("/test.Probe/echo", "application/json", "[42]"),
    )
    .await;
    assert_eq!(code, 400, "wrong argument type: {body}");

    let (code, _) = http1(
        address,
        post("/test.Probe/missing", "application/json", "[]"),
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = http1(address, post("/test.Probe/echo", "text/plain", "[]")).await;
    assert_eq!(code, 415);
    let (code, body) = http1(
        address,
        post(
            "/test.Probe/explode",
            "application/json",
            r#"{"message": "boom"}"#,
        ),
    )
    .await;
    assert_eq!(code, 500);
    assert!(body.contains("boom"), "{body}");
    let (code, _) = http1(
        address,
        "GET /test.Probe/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn a_garbage_preface_closes_only_that_connection() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    stream
        .write_all(b"\x00\x01\x02 this is not HTTP at all\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .unwrap();
    let probe = grpc_client(server.local_addr(), Codec::Json);
    assert_eq!(probe.echo("fine".into()).await.unwrap(), "fine");
}
