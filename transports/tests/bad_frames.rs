//! Hostile input against the TCP transport's server: bad magic, oversized and truncated
//! frames, unknown codecs, garbage heads, unknown services, and arbitrary bytes.
//!
//! The server is a real `rpc_core::Server` over `TcpTransport` serving a hand-written `Echo`
//! skeleton (no proc macro); the peers are raw `TcpStream`s writing bytes by hand and reading
//! frames with `FrameDecoder`. Every read is bounded by a generous timeout so nothing hangs.
//!
//! Heartbeats are in `provider_heartbeats.rs`, cancel events in `cancel_events.rs`, and
//! connection limits and floods in `connection_limits.rs`.

mod raw;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use raw::{
    Raw, assert_echoed, call_bytes, echo_args, echo_call, frame_bytes, fresh_client_is_served,
    head, header_bytes, put_str, start,
};
use rpc_core::Codec;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;
use transports::TcpConfig;
use transports::tcp::Status;
use transports::tcp::frame::serialization_id;
use transports::tcp::frame::{
    FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, Frame, FrameDecoder, HEADER_LEN, Header, MAGIC,
};

// ---------------------------------------------------------------------------------------
// Checking answers.

/// Asserts a non-OK response with `status` for `request_id`, whose message contains every
/// one of `needles`.
fn assert_refused(frame: &Frame, request_id: u64, status: Status, needles: &[&str]) {
    let message = String::from_utf8_lossy(&frame.body);
    assert_eq!(
        Status::from_byte(frame.header.status),
        status,
        "status of {frame:?} ({message})"
    );
    assert!(
        !frame.header.is_request(),
        "a response, not a request: {frame:?}"
    );
    assert_eq!(frame.header.request_id, request_id);
    for needle in needles {
        assert!(
            message.contains(needle),
            "message {message:?} should name {needle:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sanity.

#[tokio::test]
async fn a_valid_raw_request_gets_status_20_and_the_echoed_payload_in_both_codecs() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    for (id, codec) in [(1, Codec::Bincode), (2, Codec::Json)] {
        raw.echo(id, codec, b"hello \x00\xff world").await;
        raw.echo(id + 100, codec, b"").await;
    }
}

#[tokio::test]
async fn many_requests_in_one_write_are_all_answered_by_request_id() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let mut wire = Vec::new();
    for id in 0..64u64 {
        let codec = if id % 2 == 0 {
            Codec::Bincode
        } else {
            Codec::Json
        };
        wire.extend(echo_call(id, codec, &id.to_be_bytes()));
    }
    raw.send(&wire).await;
    let mut seen = [false; 64];
    for _ in 0..64 {
        let frame = raw.frame().await;
        let id = frame.header.request_id;
        let codec = if id % 2 == 0 {
            Codec::Bincode
        } else {
            Codec::Json
        };
        assert_echoed(&frame, id, codec, &id.to_be_bytes());
        assert!(!seen[id as usize], "request {id} answered twice");
        seen[id as usize] = true;
    }
}

// ---------------------------------------------------------------------------------------
// Frames the server cannot read close that connection only.

#[tokio::test]
async fn an_answer_is_not_held_back_by_the_partial_frame_that_follows_it() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    // One round trip first, so the server's writer is idle and waiting, as in steady state.
    raw.echo(0, Codec::Json, b"warm").await;
    let second = echo_call(2, Codec::Json, b"second");
    // The first call whole, then the second's header and a few body bytes in one write:
    // the first answer must leave now, not when the second frame completes.
    let mut bytes = echo_call(1, Codec::Json, b"first");
    bytes.extend_from_slice(&second[..20]);
    raw.send(&bytes).await;
    let frame = raw.frame().await;
    assert_echoed(&frame, 1, Codec::Json, b"first");
    raw.send(&second[20..]).await;
    let frame = raw.frame().await;
    assert_echoed(&frame, 2, Codec::Json, b"second");
}

#[tokio::test]
async fn bad_magic_closes_that_connection_while_a_healthy_connection_keeps_getting_answers() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut healthy = Raw::connect(addr).await;
    healthy.echo(1, Codec::Bincode, b"before").await;

    let mut bad = Raw::connect(addr).await;
    let mut wire = header_bytes(
        FLAG_REQUEST | FLAG_TWO_WAY | serialization_id(Codec::Bincode),
        9,
        0,
    );
    wire[0] = 0xca;
    wire[1] = 0xfe;
    bad.send(&wire).await;
    bad.expect_closed().await;

    // A valid frame, then bad magic in the same write: the connection closes. The call
    // the valid frame started is aborted with the connection, so its answer may or may not
    // make it out first; if anything comes, it is that answer.
    let mut late = Raw::connect(addr).await;
    let mut wire = echo_call(5, Codec::Json, b"ok");
    wire.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    late.send(&wire).await;
    match late.next_frame().await {
        Some(frame) => {
            assert_echoed(&frame, 5, Codec::Json, b"ok");
            late.expect_closed().await;
        }
        None => eprintln!("the call before the bad magic was aborted unanswered"),
    }

    healthy.echo(2, Codec::Bincode, b"after").await;
    healthy.echo(3, Codec::Json, b"after").await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_status_40_naming_size_and_limit_then_a_close() {
    let (_server, addr) = start(TcpConfig::default().max_frame_len(1024)).await;
    let mut healthy = Raw::connect(addr).await;
    for (id, size) in [(77u64, 1025u32), (u64::MAX, u32::MAX)] {
        let mut raw = Raw::connect(addr).await;
        raw.send(&header_bytes(
            FLAG_REQUEST | FLAG_TWO_WAY | serialization_id(Codec::Bincode),
            id,
            size,
        ))
        .await;
        let frame = raw.frame().await;
        assert_refused(&frame, id, Status::BadRequest, &[&size.to_string(), "1024"]);
        raw.expect_closed().await;
        healthy.echo(id, Codec::Bincode, b"others are served").await;
    }

    // Exactly at the limit is fine.
    let mut raw = Raw::connect(addr).await;
    let head = head("Echo", "", "echo", &[]);
    // bincode writes a length of 251..=65535 as 0xfb and two bytes.
    let payload = vec![7u8; 1024 - head.len() - 3];
    let args = echo_args(Codec::Bincode, &payload);
    assert_eq!(head.len() + args.len(), 1024);
    raw.send(&call_bytes(
        3,
        serialization_id(Codec::Bincode),
        &head,
        &args,
    ))
    .await;
    // The 1024-byte payload echoed back is within the limit as well.
    assert_echoed(&raw.frame().await, 3, Codec::Bincode, &payload);
}

#[tokio::test]
async fn an_oversized_one_way_request_or_response_frame_is_closed_without_an_answer() {
    let (_server, addr) = start(TcpConfig::default().max_frame_len(1024)).await;
    for flags in [
        FLAG_REQUEST | serialization_id(Codec::Bincode),
        serialization_id(Codec::Bincode),
        FLAG_EVENT,
    ] {
        let mut raw = Raw::connect(addr).await;
        raw.send(&header_bytes(flags, 5, 4096)).await;
        raw.expect_closed().await;
    }
    fresh_client_is_served(addr).await;
}

#[tokio::test]
async fn a_truncated_frame_then_a_half_close_does_not_crash_the_server() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut healthy = Raw::connect(addr).await;

    // A header announcing 100 bytes, 10 of them sent.
    let mut raw = Raw::connect(addr).await;
    let mut wire = header_bytes(
        FLAG_REQUEST | FLAG_TWO_WAY | serialization_id(Codec::Bincode),
        1,
        100,
    );
    wire.extend_from_slice(&[0x42; 10]);
    raw.send(&wire).await;
    raw.stream.shutdown().await.expect("half close");
    raw.expect_closed().await;

    // Half a header.
    let mut raw = Raw::connect(addr).await;
    raw.send(&header_bytes(FLAG_REQUEST | FLAG_TWO_WAY, 2, 100)[..7])
        .await;
    raw.stream.shutdown().await.expect("half close");
    raw.expect_closed().await;

    // A truncated frame and then the socket dropped outright.
    let mut raw = Raw::connect(addr).await;
    raw.send(&wire).await;
    drop(raw);

    healthy.echo(1, Codec::Bincode, b"fine").await;
    fresh_client_is_served(addr).await;
}

#[tokio::test]
async fn a_frame_trickled_one_byte_at_a_time_is_still_answered() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let wire = echo_call(11, Codec::Json, b"slowly");
    for byte in &wire {
        raw.send(std::slice::from_ref(byte)).await;
        tokio::task::yield_now().await;
    }
    assert_echoed(&raw.frame().await, 11, Codec::Json, b"slowly");
}

// ---------------------------------------------------------------------------------------
// Frames the server can read but not serve: an error response, the connection stays open.

#[tokio::test]
async fn an_unknown_codec_id_gets_status_40_naming_the_id_and_the_connection_stays_open() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let head = head("Echo", "", "echo", &[]);
    for (id, codec_id) in [(1u64, 31u8), (2, 0), (3, 2)] {
        raw.send(&call_bytes(
            id,
            codec_id,
            &head,
            &echo_args(Codec::Json, b"x"),
        ))
        .await;
        let frame = raw.frame().await;
        assert_refused(
            &frame,
            id,
            Status::BadRequest,
            &["serialization id", &codec_id.to_string()],
        );
    }
    raw.echo(4, Codec::Bincode, b"same socket").await;
}

#[tokio::test]
async fn a_garbage_head_gets_status_40_and_the_connection_stays_open() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let bad_utf8 = {
        let mut body = vec![0, 2, 0xc3, 0x28];
        body.extend(head("", "echo", "", &[])[2..].iter());
        body
    };
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("service length past the end", vec![0xff, 0xff, 1, 2, 3]),
        (
            "random bytes",
            vec![0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02],
        ),
        ("invalid UTF-8 service", bad_utf8),
        (
            "missing attachment count",
            head("Echo", "", "echo", &[])[..14].to_vec(),
        ),
        (
            "attachment count past the end",
            [&head("Echo", "", "echo", &[])[..14], &[0xff, 0xff][..]].concat(),
        ),
        (
            "non-numeric timeout",
            head("Echo", "", "echo", &[("timeout", "soon")]),
        ),
        (
            "negative timeout",
            head("Echo", "", "echo", &[("timeout", "-5")]),
        ),
    ];
    for (id, (what, body)) in bodies.into_iter().enumerate() {
        let id = id as u64 + 1;
        raw.send(&frame_bytes(
            FLAG_REQUEST | FLAG_TWO_WAY | serialization_id(Codec::Bincode),
            id,
            &body,
        ))
        .await;
        let frame = raw.frame().await;
        eprintln!("{what}: {}", String::from_utf8_lossy(&frame.body));
        assert_refused(&frame, id, Status::BadRequest, &["protocol error"]);
    }
    raw.echo(100, Codec::Bincode, b"same socket").await;
}

#[tokio::test]
async fn an_undecodable_argument_payload_gets_status_25_and_the_connection_stays_open() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let head = head("Echo", "", "echo", &[("timeout", "5000")]);
    let mut trailing = echo_args(Codec::Bincode, b"ok");
    trailing.extend_from_slice(b"zz");
    let cases: Vec<(Codec, Vec<u8>)> = vec![
        (Codec::Bincode, Vec::new()),
        // A varint length claiming 2^64-1 bytes, with three bytes present.
        (
            Codec::Bincode,
            vec![
                0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
            ],
        ),
        (Codec::Bincode, trailing),
        (Codec::Json, b"{not json".to_vec()),
        (Codec::Json, b"[\"a string, not bytes\"]".to_vec()),
        (Codec::Json, b"[[1,2,300]]".to_vec()),
        (Codec::Json, Vec::new()),
    ];
    for (id, (codec, args)) in cases.into_iter().enumerate() {
        let id = id as u64 + 1;
        raw.send(&call_bytes(id, serialization_id(codec), &head, &args))
            .await;
        let frame = raw.frame().await;
        eprintln!("{codec} {args:?}: {}", String::from_utf8_lossy(&frame.body));
        assert_refused(&frame, id, Status::SerializationError, &[codec.name()]);
        assert_eq!(frame.header.serialization_id(), serialization_id(codec));
    }
    raw.echo(100, Codec::Json, b"same socket").await;
}

#[tokio::test]
async fn a_huge_unknown_name_is_quoted_cut_short_in_the_error() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let args = echo_args(Codec::Bincode, b"x");
    let service = "S".repeat(60_000);
    let method = "m".repeat(60_000);
    for (id, head) in [
        (1, head(&service, "", "echo", &[])),
        (2, head("Echo", "", &method, &[])),
    ] {
        raw.send(&call_bytes(
            id,
            serialization_id(Codec::Bincode),
            &head,
            &args,
        ))
        .await;
        let frame = raw.frame().await;
        assert_refused(&frame, id, Status::ServiceNotFound, &["...", "60000 bytes"]);
        assert!(
            frame.body.len() < 1_024,
            "a {} byte answer for a 60 KB name",
            frame.body.len()
        );
    }
}

#[tokio::test]
async fn an_unknown_service_gets_status_60_naming_it() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let args = echo_args(Codec::Bincode, b"x");
    raw.send(&call_bytes(
        1,
        serialization_id(Codec::Bincode),
        &head("NoSuchService", "", "echo", &[]),
        &args,
    ))
    .await;
    assert_refused(
        &raw.frame().await,
        1,
        Status::ServiceNotFound,
        &["NoSuchService"],
    );

    // A version the provider does not serve is an unknown service too.
    raw.send(&call_bytes(
        2,
        serialization_id(Codec::Bincode),
        &head("Echo", "9.9", "echo", &[]),
        &args,
    ))
    .await;
    assert_refused(
        &raw.frame().await,
        2,
        Status::ServiceNotFound,
        &["Echo", "9.9"],
    );

    raw.echo(3, Codec::Bincode, b"same socket").await;
}

#[tokio::test]
async fn an_unknown_method_gets_status_60_naming_the_method() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let args = echo_args(Codec::Json, b"x");
    raw.send(&call_bytes(
        1,
        serialization_id(Codec::Json),
        &head("Echo", "", "noSuchMethod", &[]),
        &args,
    ))
    .await;
    assert_refused(
        &raw.frame().await,
        1,
        Status::ServiceNotFound,
        &["noSuchMethod"],
    );
    raw.echo(2, Codec::Json, b"same socket").await;
}

#[tokio::test]
async fn a_one_way_request_that_cannot_be_served_gets_no_answer_and_the_connection_stays_open() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let args = echo_args(Codec::Bincode, b"x");
    let one_way = FLAG_REQUEST | serialization_id(Codec::Bincode);
    let mut wire = frame_bytes(one_way, 1, &[0xff, 0xff]);
    wire.extend(frame_bytes(
        one_way,
        2,
        &[head("Nope", "", "echo", &[]), args.clone()].concat(),
    ));
    wire.extend(frame_bytes(
        FLAG_REQUEST | 31,
        3,
        &[head("Echo", "", "echo", &[]), args].concat(),
    ));
    wire.extend(frame_bytes(
        one_way,
        4,
        &[head("Echo", "", "echo", &[]), vec![0xfd]].concat(),
    ));
    raw.send(&wire).await;
    // The only answer is the one to the two-way call that follows.
    raw.echo(5, Codec::Bincode, b"only me").await;
    raw.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn timeout_attachments_of_zero_and_of_u64_max_are_served_without_harm() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let args = echo_args(Codec::Bincode, b"x");
    // Zero milliseconds left: the deadline has passed, the server may answer "timeout" (31)
    // or, if the echo wins the race, 20. Either way, an answer.
    raw.send(&call_bytes(
        1,
        serialization_id(Codec::Bincode),
        &head("Echo", "", "echo", &[("timeout", "0")]),
        &args,
    ))
    .await;
    let frame = raw.frame().await;
    assert_eq!(frame.header.request_id, 1);
    assert!(
        [Status::Ok.byte(), Status::ServerTimeout.byte()].contains(&frame.header.status),
        "{frame:?}"
    );
    // The largest number the head accepts must not overflow the deadline arithmetic.
    let max = u64::MAX.to_string();
    raw.send(&call_bytes(
        2,
        serialization_id(Codec::Bincode),
        &head("Echo", "", "echo", &[("timeout", &max)]),
        &args,
    ))
    .await;
    assert_echoed(&raw.frame().await, 2, Codec::Bincode, b"x");
    raw.echo(3, Codec::Bincode, b"same socket").await;
}

// ---------------------------------------------------------------------------------------
// Arbitrary bytes.

/// What one hostile connection writes.
#[derive(Debug, Clone)]
enum Junk {
    /// Bytes as they come.
    Raw(Vec<u8>),
    /// The magic, then bytes as they come (a random rest of a header, and so on).
    AfterMagic(Vec<u8>),
    /// A well-framed frame with random flags and status around a random body.
    Framed {
        flags: u8,
        status: u8,
        id: u64,
        body: Vec<u8>,
    },
}

fn junk() -> impl Strategy<Value = Junk> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..2048);
    prop_oneof![
        2 => bytes().prop_map(Junk::Raw),
        1 => bytes().prop_map(Junk::AfterMagic),
        1 => (any::<u8>(), any::<u8>(), any::<u64>(), bytes())
            .prop_map(|(flags, status, id, body)| Junk::Framed { flags, status, id, body }),
    ]
}

impl Junk {
    fn wire(&self) -> Vec<u8> {
        match self {
            Junk::Raw(bytes) => bytes.clone(),
            Junk::AfterMagic(bytes) => [&MAGIC.to_be_bytes()[..], bytes].concat(),
            Junk::Framed {
                flags,
                status,
                id,
                body,
            } => {
                let mut out = BytesMut::new();
                Frame {
                    header: Header {
                        flags: *flags,
                        status: *status,
                        request_id: *id,
                        body_len: body.len() as u32,
                    },
                    body: Bytes::copy_from_slice(body),
                }
                .encode(&mut out);
                out.to_vec()
            }
        }
    }
}

#[test]
fn arbitrary_bytes_on_one_connection_never_keep_the_server_from_answering_a_fresh_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (server, addr) = runtime.block_on(start(TcpConfig::default().max_frame_len(64 * 1024)));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&(junk(), any::<bool>()), |(junk, half_close)| {
        runtime.block_on(async {
            let mut hostile = Raw::connect(addr).await;
            // The server may close mid-write; that is fine.
            let _ = hostile.stream.write_all(&junk.wire()).await;
            if half_close {
                let _ = hostile.stream.shutdown().await;
            }
            // With the hostile connection still open, a fresh one is served.
            let mut fresh = Raw::connect(addr).await;
            fresh.echo(42, Codec::Bincode, b"fresh").await;
            // And if the hostile bytes happened to form complete frames, everything the
            // server sent back on that connection is well-formed (checked by the decoder).
            while let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(20), hostile.next_frame_unbounded())
                    .await
            {
                prop_assert!(!frame.header.is_request() || frame.header.is_event());
                prop_assert!(frame.body.len() <= 64 * 1024);
            }
            Ok::<(), TestCaseError>(())
        })
    });
    // Still serving after all cases.
    runtime.block_on(fresh_client_is_served(addr));
    drop(server);
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn the_header_length_is_checked_before_any_body_byte_arrives() {
    // The decoder the server uses must reject from the header alone: a peer that sends a
    // huge length and then stalls must not be waited on.
    let mut buf = BytesMut::from(&header_bytes(FLAG_REQUEST | FLAG_TWO_WAY, 1, 1025)[..]);
    assert_eq!(buf.len(), HEADER_LEN);
    let capacity = buf.capacity();
    let error = FrameDecoder::new(1024)
        .decode(&mut buf)
        .expect_err("over the limit");
    assert!(error.to_string().contains("1025") && error.to_string().contains("1024"));
    assert_eq!(buf.capacity(), capacity, "nothing reserved for the body");
}

/// A head declaring 65535 attachments (a 520 KB frame, far below the frame limit) is
/// refused outright instead of costing quadratic work in the read loop.
#[test]
fn a_head_with_65535_distinct_attachments_is_refused_or_decoded_quickly() {
    let mut body = head("Echo", "", "echo", &[]);
    body.truncate(body.len() - 2);
    body.extend_from_slice(&u16::MAX.to_be_bytes());
    for i in 0..u16::MAX {
        put_str(&mut body, &format!("{i:x}"));
        put_str(&mut body, "");
    }
    let started = Instant::now();
    let decoded = transports::tcp::head::decode_head(&body).map(|head| head.attachments.len());
    let took = started.elapsed();
    eprintln!(
        "decode_head of {} bytes: {decoded:?} in {took:?}",
        body.len()
    );
    assert!(
        matches!(&decoded, Err(rpc_core::Error::Protocol(m)) if m.contains("limit of 256")),
        "{decoded:?}"
    );
}
