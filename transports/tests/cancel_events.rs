//! Cancel events on the TCP transport's server, sent by raw peers: a one-way event request
//! cancels the call running under its id, is never answered, and is harmless for an id
//! nothing runs under; closing a connection aborts every call still running on it.
//!
//! The server serves the shared raw `Echo`, whose `hang` handlers are counted here as they
//! start and as they are dropped (aborted).

mod raw;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use raw::{Echo, Raw, WAIT, call_bytes, frame_bytes, head, start_with};
use rpc_core::{Codec, Server};
use transports::TcpConfig;
use transports::tcp::Status;
use transports::tcp::frame::serialization_id;
use transports::tcp::frame::{FLAG_EVENT, FLAG_REQUEST};

// ---------------------------------------------------------------------------------------
// The service under test: the shared `Echo`, its `hang` handlers counted.

/// How many `hang` handlers started, and how many were dropped (aborted), per value of the
/// `tag` attachment, so tests running at once do not count each other's handlers.
static HANG_STARTED: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static HANG_DROPPED: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

struct CountDrop(usize);

impl Drop for CountDrop {
    fn drop(&mut self) {
        HANG_DROPPED[self.0].fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts a `hang` handler starting under `tag`, and (through the guard) its drop.
fn count_hang(tag: usize) -> Box<dyn Send> {
    let tag = tag.min(3);
    HANG_STARTED[tag].fetch_add(1, Ordering::SeqCst);
    Box::new(CountDrop(tag))
}

/// A two-way `Echo.hang()` request counted under `tag`.
fn hang_call(request_id: u64, tag: usize) -> Vec<u8> {
    let tag = tag.to_string();
    call_bytes(
        request_id,
        serialization_id(Codec::Bincode),
        &head("Echo", "", "hang", &[("tag", &tag)]),
        &[],
    )
}

/// Waits until `counter[tag]` reaches `at_least`; panics after [`WAIT`].
async fn wait_count(counter: &[AtomicUsize; 4], tag: usize, at_least: usize, what: &str) {
    let deadline = Instant::now() + WAIT;
    while counter[tag].load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {at_least} within 10 s",
            counter[tag].load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server on a free local port serving `Echo`, counting its `hang` handlers.
async fn start(config: TcpConfig) -> (Server, SocketAddr) {
    start_with(config, Echo::on_hang(count_hang)).await
}

// ---------------------------------------------------------------------------------------
// Cancel events.

#[tokio::test]
async fn a_cancel_event_for_an_unknown_id_is_harmless() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let cancel = FLAG_REQUEST | FLAG_EVENT;
    let mut wire = frame_bytes(cancel, 999, &[]);
    wire.extend(frame_bytes(cancel, u64::MAX, b"a body nobody reads"));
    wire.extend(frame_bytes(cancel | serialization_id(Codec::Json), 0, &[]));
    raw.send(&wire).await;
    // The echo's answer is the only frame: cancellations are never answered.
    raw.echo(1, Codec::Bincode, b"unharmed").await;
    raw.expect_quiet(Duration::from_millis(300)).await;
    // Cancelling an id that already completed is just as harmless.
    raw.send(&frame_bytes(cancel, 1, &[])).await;
    raw.echo(2, Codec::Json, b"unharmed").await;
}

#[tokio::test]
async fn a_cancel_event_aborts_the_running_handler_and_nothing_is_answered_for_it() {
    const TAG: usize = 1;
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let dropped = HANG_DROPPED[TAG].load(Ordering::SeqCst);
    let started = HANG_STARTED[TAG].load(Ordering::SeqCst);
    raw.send(&hang_call(7, TAG)).await;
    wait_count(&HANG_STARTED, TAG, started + 1, "hang handlers started").await;
    raw.send(&frame_bytes(FLAG_REQUEST | FLAG_EVENT, 7, &[]))
        .await;
    wait_count(
        &HANG_DROPPED,
        TAG,
        dropped + 1,
        "cancelled handlers aborted",
    )
    .await;
    raw.echo(8, Codec::Bincode, b"next").await;
    raw.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn closing_a_connection_aborts_every_call_still_running_on_it() {
    const TAG: usize = 2;
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let dropped = HANG_DROPPED[TAG].load(Ordering::SeqCst);
    let started = HANG_STARTED[TAG].load(Ordering::SeqCst);
    raw.send(&[hang_call(1, TAG), hang_call(2, TAG)].concat())
        .await;
    wait_count(&HANG_STARTED, TAG, started + 2, "hang handlers started").await;
    drop(raw);
    wait_count(&HANG_DROPPED, TAG, dropped + 2, "handlers aborted on close").await;
}

/// A second two-way request under the id of a call still running is refused (status 40),
/// so the first call stays cancellable and nothing outlives the connection.
#[tokio::test]
async fn a_reused_request_id_does_not_orphan_the_first_call() {
    const TAG: usize = 3;
    let (_server, addr) = start(TcpConfig::default()).await;
    let mut raw = Raw::connect(addr).await;
    let dropped = HANG_DROPPED[TAG].load(Ordering::SeqCst);
    let started = HANG_STARTED[TAG].load(Ordering::SeqCst);
    raw.send(&[hang_call(7, TAG), hang_call(7, TAG)].concat())
        .await;
    let refused = raw.frame().await;
    assert_eq!(refused.header.request_id, 7);
    assert_eq!(refused.header.status, Status::BadRequest.byte());
    let message = String::from_utf8_lossy(&refused.body);
    assert!(
        message.contains("request id 7 is already in flight"),
        "{message}"
    );
    let now_started = HANG_STARTED[TAG].load(Ordering::SeqCst) - started;
    assert_eq!(now_started, 1, "only the first call runs");
    drop(raw);
    wait_count(
        &HANG_DROPPED,
        TAG,
        dropped + now_started,
        "handlers aborted on close",
    )
    .await;
}
