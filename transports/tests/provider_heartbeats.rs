//! The provider side of heartbeats: how the TCP transport's server answers the heartbeats a
//! peer sends, sends its own to a quiet peer, and closes a peer that stays idle, all seen
//! from raw sockets. The client keeping its own connection alive is in `client_keepalive.rs`.
//!
//! Unless a test says otherwise, the server runs with a 200 ms heartbeat interval and an
//! 800 ms idle timeout. Its idle timer counts only whole frames read, so a peer stays
//! connected by answering heartbeats (or by sending anything else that is a frame), and a
//! silent or stalling peer is closed.

mod raw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raw::{Raw, WAIT, echo_call, frame_bytes, header_bytes};
use rpc_core::{Codec, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;
use transports::TcpConfig;
use transports::tcp::Status;
use transports::tcp::frame::serialization_id;
use transports::tcp::frame::{FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, Frame, Header};

const HEARTBEAT: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_millis(800);

async fn start() -> (Server, SocketAddr) {
    raw::start(TcpConfig::default().heartbeat(HEARTBEAT, IDLE)).await
}

/// The answer a client owes a heartbeat request: an event response, status 20, same id.
fn heartbeat_answer(request_id: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    Header {
        flags: FLAG_EVENT,
        status: Status::Ok.byte(),
        request_id,
        body_len: 0,
    }
    .encode(&mut out);
    out.to_vec()
}

fn is_heartbeat_request(frame: &Frame) -> bool {
    let h = frame.header;
    h.is_request() && h.is_two_way() && h.is_event() && frame.body.is_empty()
}

impl Raw {
    /// Reads until the server closes, checking that everything it sends meanwhile is a
    /// heartbeat request (never answered). Returns how many came.
    async fn unanswered_heartbeats_until_closed(&mut self) -> usize {
        let mut heartbeats = 0;
        while let Some(frame) = self.next_frame().await {
            assert!(
                is_heartbeat_request(&frame),
                "expected a heartbeat, got {frame:?}"
            );
            heartbeats += 1;
        }
        heartbeats
    }

    /// Makes an echo call, answering any heartbeat that comes before the response.
    async fn echo_answering_heartbeats(&mut self, request_id: u64, payload: &[u8]) {
        self.send(&echo_call(request_id, Codec::Bincode, payload))
            .await;
        loop {
            let frame = self.next_frame().await.expect("closed before the response");
            if is_heartbeat_request(&frame) {
                self.send(&heartbeat_answer(frame.header.request_id)).await;
                continue;
            }
            assert_eq!(frame.header.request_id, request_id, "{frame:?}");
            assert_eq!(frame.header.status, Status::Ok.byte(), "{frame:?}");
            let echoed: Vec<u8> = Codec::Bincode.decode(&frame.body).expect("decodes");
            assert_eq!(echoed, payload);
            return;
        }
    }
}

/// Asserts an idle close came after roughly the idle timeout, and well within [`WAIT`].
fn assert_closed_in_time(what: &str, closed_after: Duration, heartbeats: usize) {
    eprintln!("{what}: closed after {closed_after:?}, {heartbeats} heartbeats received");
    assert!(
        closed_after >= IDLE - Duration::from_millis(100),
        "{what}: closed after {closed_after:?}, before the idle timeout of {IDLE:?}"
    );
    assert!(
        closed_after < WAIT,
        "{what}: closed only after {closed_after:?}"
    );
}

#[tokio::test]
async fn a_heartbeat_request_is_answered_at_once_with_an_event_response_with_the_same_id() {
    // Default heartbeat settings: no heartbeat of the server's own comes between the answers.
    let (_server, addr) = raw::start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    for (id, flags) in [
        (
            0x1234_5678_9abc_def0u64,
            FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT,
        ),
        (
            u64::MAX,
            FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | serialization_id(Codec::Bincode),
        ),
        (0, FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | 31),
    ] {
        let sent = Instant::now();
        raw.send(&frame_bytes(flags, id, &[])).await;
        let frame = raw.frame().await;
        let took = sent.elapsed();
        eprintln!("heartbeat {id:#x} answered in {took:?}");
        assert!(
            took < Duration::from_secs(2),
            "answered at once, took {took:?}"
        );
        assert!(frame.header.is_event(), "an event: {frame:?}");
        assert!(!frame.header.is_request(), "a response: {frame:?}");
        assert_eq!(frame.header.request_id, id);
        assert_eq!(frame.header.status, Status::Ok.byte());
        assert!(frame.body.is_empty());
    }
    raw.echo(1, Codec::Bincode, b"after heartbeats").await;
}

#[tokio::test]
async fn the_server_sends_heartbeats_to_a_silent_client_and_closes_it_after_the_idle_timeout() {
    let (_server, addr) = start().await;
    let connected = Instant::now();
    let mut raw = Raw::connect(addr).await;
    let mut ids = Vec::new();
    while let Some(frame) = raw.next_frame().await {
        assert!(
            is_heartbeat_request(&frame),
            "expected a heartbeat, got {frame:?}"
        );
        assert_eq!(frame.header.status, 0);
        assert!(
            !ids.contains(&frame.header.request_id),
            "heartbeat ids are unique"
        );
        ids.push(frame.header.request_id);
    }
    let closed_after = connected.elapsed();
    assert_closed_in_time("silent client", closed_after, ids.len());
    assert!(
        !ids.is_empty(),
        "at least one heartbeat before the idle close"
    );
}

#[tokio::test]
async fn a_client_answering_heartbeats_stays_connected_across_several_idle_periods_and_can_still_call()
 {
    let (_server, addr) = start().await;
    let mut raw = Raw::connect(addr).await;
    let connected = Instant::now();
    let hold = IDLE * 4 + IDLE / 2;
    let mut heartbeats = 0;
    while let Some(left) = hold.checked_sub(connected.elapsed()) {
        match tokio::time::timeout(left, raw.next_frame_unbounded()).await {
            Err(_) => break,
            Ok(None) => panic!(
                "closed after {:?} although every heartbeat ({heartbeats}) was answered",
                connected.elapsed()
            ),
            Ok(Some(frame)) => {
                assert!(
                    is_heartbeat_request(&frame),
                    "expected a heartbeat, got {frame:?}"
                );
                raw.send(&heartbeat_answer(frame.header.request_id)).await;
                heartbeats += 1;
            }
        }
    }
    eprintln!(
        "answered {heartbeats} heartbeats over {:?} ({} idle periods)",
        connected.elapsed(),
        connected.elapsed().as_millis() / IDLE.as_millis()
    );
    assert!(
        heartbeats >= 4,
        "a heartbeat at least every idle period, got {heartbeats}"
    );
    raw.echo_answering_heartbeats(1, b"still connected").await;
}

#[tokio::test]
async fn a_client_sending_its_own_heartbeats_but_never_answering_stays_connected() {
    let (_server, addr) = start().await;
    let mut raw = Raw::connect(addr).await;
    let connected = Instant::now();
    let hold = IDLE * 3 + IDLE / 2;
    let mut next_ping = Instant::now();
    let mut ping_id = 1u64;
    let mut answered = 0;
    while connected.elapsed() < hold {
        if Instant::now() >= next_ping {
            raw.send(&frame_bytes(
                FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT,
                ping_id,
                &[],
            ))
            .await;
            ping_id += 1;
            next_ping += HEARTBEAT;
        }
        let wait = next_ping.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, raw.next_frame_unbounded()).await {
            Err(_) => {}
            Ok(None) => panic!(
                "closed after {:?} although a frame arrived every {HEARTBEAT:?}",
                connected.elapsed()
            ),
            Ok(Some(frame)) if frame.header.is_request() => {
                assert!(is_heartbeat_request(&frame), "{frame:?}");
            }
            Ok(Some(frame)) => {
                assert!(frame.header.is_event(), "{frame:?}");
                assert_eq!(frame.header.status, Status::Ok.byte());
                answered += 1;
            }
        }
    }
    eprintln!("{answered} of {} pings answered", ping_id - 1);
    assert!(answered > 0);
    raw.echo_answering_heartbeats(100, b"still connected").await;
}

#[tokio::test]
async fn a_client_that_sends_half_a_frame_and_stalls_is_closed_after_the_idle_timeout() {
    let (_server, addr) = start().await;
    let mut raw = Raw::connect(addr).await;
    let mut wire = header_bytes(
        FLAG_REQUEST | FLAG_TWO_WAY | serialization_id(Codec::Bincode),
        1,
        100,
    );
    wire.extend_from_slice(&[0x42; 10]);
    let sent = Instant::now();
    raw.send(&wire).await;
    let heartbeats = raw.unanswered_heartbeats_until_closed().await;
    assert_closed_in_time("stalled half frame", sent.elapsed(), heartbeats);
}

#[tokio::test]
async fn a_client_trickling_one_frame_byte_by_byte_is_closed_after_the_idle_timeout() {
    let (_server, addr) = start().await;
    let raw = Raw::connect(addr).await;
    let Raw {
        stream,
        buf,
        decoder,
    } = raw;
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    // A frame of 4000 bytes, one byte every 50 ms: bytes keep coming for 200 s, but no
    // whole frame arrives for the idle timer.
    let trickle = tokio::spawn(async move {
        let mut wire = header_bytes(
            FLAG_REQUEST | FLAG_TWO_WAY | serialization_id(Codec::Bincode),
            1,
            4000,
        );
        wire.extend_from_slice(&[0u8; 4000]);
        for byte in wire.iter() {
            if write.write_all(std::slice::from_ref(byte)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = buf;
    let mut decoder = decoder;
    let mut heartbeats = 0;
    let closed_after = tokio::time::timeout(WAIT, async {
        loop {
            while let Some(frame) = decoder.decode(&mut buf).expect("readable frames") {
                assert!(is_heartbeat_request(&frame), "{frame:?}");
                heartbeats += 1;
            }
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("closed within 10 s although bytes keep trickling in");
    trickle.abort();
    assert_closed_in_time("trickling client", closed_after, heartbeats);
}
