//! Connection limits of the TCP transport's server, seen from raw peers and a real client.
//!
//! Every new connection must send its first frame within the handshake window
//! (`TcpConfig::handshake_timeout`) or it is closed. At the cap (`max_connections`), a new
//! connection evicts (closes) the oldest open connection that never sent a request (a call
//! or a heartbeat request); only when every open connection has sent one is the newcomer
//! closed instead. A flood of silent connections therefore only ever competes with itself.

mod common;
mod raw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raw::{Raw, WAIT, assert_echoed, echo_call, frame_bytes, fresh_client_is_served, start};
use rpc_core::Codec;
use tokio::io::AsyncWriteExt;
use transports::TcpConfig;
use transports::tcp::Status;
use transports::tcp::frame::{FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY};

/// Opens `n` connections that never send anything, one after another, so the server
/// accepts them in this order.
async fn silent_connections(addr: SocketAddr, n: usize) -> Vec<Raw> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(Raw::connect(addr).await);
    }
    all
}

/// Watches every one of `connections` at once for `window`. For each, in order: `Some(at)`
/// if the server closed it, `at` counted from `since`; `None` if it stayed open. A frame on
/// any of them fails the test: a silent connection is owed nothing.
async fn watch(
    connections: Vec<Raw>,
    window: Duration,
    since: Instant,
) -> Vec<(Raw, Option<Duration>)> {
    futures_util::future::join_all(connections.into_iter().map(|mut raw| async move {
        let closed = match tokio::time::timeout(window, raw.next_frame_unbounded()).await {
            Err(_) => None,
            Ok(None) => Some(since.elapsed()),
            Ok(Some(frame)) => panic!("a silent connection got a frame: {frame:?}"),
        };
        (raw, closed)
    }))
    .await
}

/// A two-way heartbeat request.
fn heartbeat(request_id: u64) -> Vec<u8> {
    frame_bytes(FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT, request_id, &[])
}

#[tokio::test]
async fn two_hundred_idle_connections_do_not_keep_the_server_from_serving_a_fresh_client() {
    let (_server, addr) = start(TcpConfig::default()).await;
    let idle = silent_connections(addr, 200).await;
    let started = Instant::now();
    fresh_client_is_served(addr).await;
    eprintln!(
        "fresh client served in {:?} beside 200 idle connections",
        started.elapsed()
    );
    drop(idle);
    fresh_client_is_served(addr).await;
}

#[tokio::test]
async fn at_the_cap_a_new_connection_evicts_the_oldest_silent_one() {
    const CAP: usize = 50;
    const FLOOD: usize = 200;
    // A handshake window far beyond the test: only eviction closes connections here.
    let config = TcpConfig::default()
        .max_connections(CAP)
        .handshake_timeout(Duration::from_secs(60));
    let (_server, addr) = start(config).await;
    let started = Instant::now();
    let silent = silent_connections(addr, FLOOD).await;
    let opened_in = started.elapsed();
    // Read every connection at once: the evicted ones see EOF, the others nothing until
    // the window ends.
    let window = Duration::from_secs(5);
    let watched = watch(silent, window, started).await;
    let closed: Vec<usize> = (0..FLOOD).filter(|&i| watched[i].1.is_some()).collect();
    let slowest = watched
        .iter()
        .filter_map(|(_, at)| *at)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{FLOOD} silent connections opened in {opened_in:?}; {} evicted (the last {slowest:?} \
         after the first connect), {} kept",
        closed.len(),
        FLOOD - closed.len()
    );
    assert_eq!(
        closed,
        (0..FLOOD - CAP).collect::<Vec<_>>(),
        "each connection past the cap evicts the oldest silent one: the first {} go, \
         the last {CAP} stay",
        FLOOD - CAP
    );
    let mut kept: Vec<Raw> = watched
        .into_iter()
        .map(|(raw, _)| raw)
        .skip(FLOOD - CAP)
        .collect();

    // A client that speaks at once takes the place of the oldest silent connection left.
    let started = Instant::now();
    fresh_client_is_served(addr).await;
    eprintln!(
        "fresh client served {:?} after connecting at the cap",
        started.elapsed()
    );
    kept.remove(0).expect_closed().await;
    let watched = watch(kept, Duration::from_millis(300), started).await;
    assert!(
        watched.iter().all(|(_, closed)| closed.is_none()),
        "only the oldest silent connection makes room"
    );
}

#[tokio::test]
async fn connections_that_have_spoken_are_not_evicted_and_a_full_house_refuses_newcomers() {
    const CAP: usize = 20;
    let (_server, addr) = start(TcpConfig::default().max_connections(CAP)).await;
    let mut spoken = Vec::with_capacity(CAP);
    for id in 0..CAP as u64 {
        let mut raw = Raw::connect(addr).await;
        raw.echo(id, Codec::Bincode, b"here").await;
        spoken.push(raw);
    }

    // Every slot is held by a connection that made a call: a newcomer is closed unanswered,
    // however often it tries, and takes nobody's place.
    for attempt in 0..3 {
        let started = Instant::now();
        let mut refused = Raw::connect(addr).await;
        // The server may already have closed it; a failed write is as good as a refusal.
        let _ = refused
            .stream
            .write_all(&echo_call(1, Codec::Bincode, b"no room"))
            .await;
        assert!(
            refused.next_frame().await.is_none(),
            "over the limit: closed, unanswered"
        );
        eprintln!(
            "newcomer {attempt} refused {:?} after connecting",
            started.elapsed()
        );
    }
    for (id, raw) in (100..).zip(spoken.iter_mut()) {
        raw.echo(id, Codec::Bincode, b"still here").await;
    }

    // Hang up one of them; its slot goes to the next client.
    drop(spoken.pop());
    let started = Instant::now();
    let deadline = started + WAIT;
    loop {
        let mut raw = Raw::connect(addr).await;
        let _ = raw
            .stream
            .write_all(&echo_call(2, Codec::Bincode, b"room now"))
            .await;
        match raw.next_frame().await {
            Some(frame) => {
                assert_echoed(&frame, 2, Codec::Bincode, b"room now");
                break;
            }
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => panic!("the freed slot was never handed to a new client"),
        }
    }
    eprintln!(
        "the freed slot served a new client {:?} after the hang-up",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_window() {
    const HANDSHAKE: Duration = Duration::from_millis(300);
    let (_server, addr) = start(TcpConfig::default().handshake_timeout(HANDSHAKE)).await;
    // Taken before connecting, so the server's window surely starts after it.
    let started = Instant::now();
    let mut silent = Raw::connect(addr).await;
    let mut pinging = Raw::connect(addr).await;
    let mut calling = Raw::connect(addr).await;
    pinging.send(&heartbeat(1)).await;
    let answer = pinging.frame().await;
    assert!(
        answer.header.is_event() && !answer.header.is_request(),
        "a heartbeat answer: {answer:?}"
    );
    assert_eq!(answer.header.request_id, 1);
    assert_eq!(answer.header.status, Status::Ok.byte());
    calling.echo(1, Codec::Bincode, b"hello").await;

    silent.expect_closed().await;
    let closed_after = started.elapsed();
    eprintln!(
        "a silent connection was closed {closed_after:?} after connecting \
         (handshake window {HANDSHAKE:?})"
    );
    assert!(
        closed_after >= HANDSHAKE,
        "closed after {closed_after:?}, before the window of {HANDSHAKE:?} ended"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "closed only after {closed_after:?}, window {HANDSHAKE:?}"
    );

    // The connections that spoke at once stay open well past the window, and are served.
    let past = (started + 3 * HANDSHAKE).saturating_duration_since(Instant::now());
    let quiet = HANDSHAKE.max(past);
    tokio::join!(pinging.expect_quiet(quiet), calling.expect_quiet(quiet));
    eprintln!(
        "the connections that spoke were still open {:?} after connecting",
        started.elapsed()
    );
    pinging.echo(2, Codec::Json, b"still open").await;
    calling.echo(2, Codec::Json, b"still open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_keeps_working_during_a_flood_of_silent_connections_up_to_the_cap() {
    const CAP: usize = 200;
    const HANDSHAKE: Duration = Duration::from_secs(1);
    let config = TcpConfig::default()
        .max_connections(CAP)
        .handshake_timeout(HANDSHAKE);
    let (server, _stats) = common::start(config, Duration::from_secs(1)).await;
    let addr = server.local_addr();
    let flood_started = Instant::now();
    let silent = silent_connections(addr, CAP).await;
    let flooded_in = flood_started.elapsed();

    let probe = common::client(addr, Codec::Bincode);
    let started = Instant::now();
    let (_, peer) = probe
        .attachment("k".into())
        .await
        .expect("a real client is served with the cap full of silent connections");
    let took = started.elapsed();
    eprintln!(
        "{CAP} silent connections opened in {flooded_in:?}; a real client was served \
         {took:?} later (handshake window {HANDSHAKE:?})"
    );
    assert!(
        took < HANDSHAKE + Duration::from_secs(10),
        "served only after {took:?}"
    );

    // The flood goes away: the oldest silent connection made room for the client, the
    // others are closed when their window ends.
    let watched = watch(silent, WAIT, flood_started).await;
    let open = watched.iter().filter(|(_, at)| at.is_none()).count();
    let slowest = watched
        .iter()
        .filter_map(|(_, at)| *at)
        .max()
        .unwrap_or_default();
    eprintln!("every silent connection closed, the last {slowest:?} after the first connect");
    assert_eq!(open, 0, "silent connections still open after {WAIT:?}");

    // The client's connection outlived the window: the same connection serves it still.
    let (_, later_peer) = probe.attachment("k".into()).await.expect("still served");
    assert_eq!(peer, later_peer, "the client's connection was replaced");
    assert_eq!(
        probe.echo("still here".into()).await.expect("still served"),
        "still here"
    );
}
