//! What the TCP server logs about misbehaving peers: a peer that leaves mid-frame (closing
//! or resetting) is ordinary and gets a debug line, not a warning; a burst of unreadable
//! frames gets at most one warning line per second, the rest counted in `held_back`.
//!
//! Each test captures the lines of its own thread: it runs on a current-thread runtime, so
//! the server's tasks log where its subscriber is the default.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transports::TcpConfig;
use transports::tcp::frame::{FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HEADER_LEN, Header};

/// Bound on every wait for the server.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_peer_resetting_or_closing_mid_header_is_logged_at_debug_not_warn() {
    let logs = Logs::capture();
    let (server, _) = common::start(TcpConfig::default(), Duration::from_secs(1)).await;
    let addr = server.local_addr();
    let half_header = &heartbeat(1)[..HEADER_LEN / 2];

    // Closes (FIN) eight bytes into a header.
    let mut closer = served(addr).await;
    let closer_addr = closer.local_addr().unwrap();
    closer.write_all(half_header).await.unwrap();
    closer.shutdown().await.unwrap();
    expect_closed(&mut closer).await;

    // Resets (SO_LINGER 0, then close) eight bytes into a header.
    let mut resetter = served(addr).await;
    let resetter_addr = resetter.local_addr().unwrap();
    resetter.write_all(half_header).await.unwrap();
    // Deprecated because a non-zero linger blocks the thread on drop; zero resets at once.
    #[allow(deprecated)]
    resetter.set_linger(Some(Duration::ZERO)).unwrap();
    drop(resetter);

    let peers = [closer_addr, resetter_addr];
    let went_away = |lines: &[String], peer: &SocketAddr| {
        lines.iter().any(|line| {
            line.contains(" DEBUG ")
                && line.contains("peer went away")
                && line.contains(&format!("peer={peer}"))
        })
    };
    let logged = logs
        .wait_for(|lines| peers.iter().all(|peer| went_away(lines, peer)))
        .await;
    let lines = logs.lines();
    assert!(
        logged,
        "no debug line says {closer_addr} or {resetter_addr} went away:\n{}",
        lines.join("\n")
    );
    let about = |peer: &SocketAddr| -> Vec<&String> {
        let needle = peer.to_string();
        lines.iter().filter(|line| line.contains(&needle)).collect()
    };
    for peer in &peers {
        let loud: Vec<_> = about(peer)
            .into_iter()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .collect();
        assert!(loud.is_empty(), "{peer} left noisily: {loud:#?}");
    }
    assert!(
        about(&closer_addr)
            .iter()
            .any(|line| line.contains("peer went away") && line.contains("into a frame")),
        "the debug line does not say the peer closed mid-frame: {:#?}",
        about(&closer_addr)
    );
    eprintln!(
        "{}",
        peers
            .iter()
            .flat_map(about)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_unreadable_frames_logs_one_warning_line_per_second() {
    const BURST: usize = 50;
    let logs = Logs::capture();
    let (server, _) = common::start(TcpConfig::default(), Duration::from_secs(1)).await;
    let addr = server.local_addr();
    let mut bad = heartbeat(1);
    bad[0] = 0xca;
    bad[1] = 0xfe;

    let mut peers = Vec::new();
    for _ in 0..BURST {
        peers.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    let closes = peers.into_iter().map(|mut peer| {
        let bad = bad.clone();
        tokio::spawn(async move {
            peer.write_all(&bad).await.unwrap();
            expect_closed(&mut peer).await;
        })
    });
    for close in closes.collect::<Vec<_>>() {
        close.await.unwrap();
    }
    let burst = started.elapsed();
    // The server warns before it closes, so every event of the burst has been counted.
    let burst_lines = unreadable_frame_lines(&logs.lines());

    // One more, in a later second than any line so far: its line carries the count held
    // back since the last one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(&bad).await.unwrap();
    expect_closed(&mut late).await;
    let reported = logs
        .wait_for(|lines| unreadable_frame_lines(lines).len() > burst_lines.len())
        .await;
    let lines = unreadable_frame_lines(&logs.lines());
    eprintln!(
        "{BURST} unreadable frames in {burst:?} logged {} warning line(s), then one more later:\n{}",
        burst_lines.len(),
        lines.join("\n")
    );
    assert!(reported, "the frame sent a second later logged no warning");

    // One line per second the burst touched; it takes milliseconds, so one, or two when a
    // second boundary falls inside it.
    let allowed = 2 + burst.as_secs() as usize;
    assert!(
        !burst_lines.is_empty() && burst_lines.len() <= allowed,
        "{} warning lines for a burst of {BURST} (allowed {allowed}):\n{}",
        burst_lines.len(),
        burst_lines.join("\n")
    );
    // The limiter is process-wide; no other test in this binary sends unreadable frames.
    let held_back: u64 = lines.iter().map(|line| held_back(line)).sum();
    assert_eq!(
        lines.len() as u64 + held_back,
        BURST as u64 + 1,
        "every unreadable frame is either a line or counted in one:\n{}",
        lines.join("\n")
    );
    server.shutdown().await;
}

fn unreadable_frame_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.contains(" WARN ") && line.contains("unreadable frame"))
        .cloned()
        .collect()
}

/// The `held_back` field of a line.
fn held_back(line: &str) -> u64 {
    let (_, rest) = line
        .split_once("held_back=")
        .unwrap_or_else(|| panic!("no held_back field in {line:?}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("held_back is not a number in {line:?}"))
}

/// A heartbeat request with `id`: a whole, valid frame.
fn heartbeat(id: u64) -> Vec<u8> {
    let mut wire = BytesMut::new();
    Header {
        flags: FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT,
        status: 0,
        request_id: id,
        body_len: 0,
    }
    .encode(&mut wire);
    wire.to_vec()
}

/// A raw connection the server has accepted and answered a heartbeat on.
async fn served(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&heartbeat(7)).await.unwrap();
    let mut answer = [0; HEADER_LEN];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .expect("no heartbeat answer")
        .unwrap();
    stream
}

/// Reads until the server closes the connection.
async fn expect_closed(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

/// Log lines captured on this thread while the guard lives.
struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

/// Appends to the shared buffer.
struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Logs {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || Writer(sink.clone()))
            .with_ansi(false)
            .finish();
        Logs {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn lines(&self) -> Vec<String> {
        let buffer = self
            .buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&buffer)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits (at most [`WAIT`]) until `condition` holds for the lines so far.
    async fn wait_for(&self, condition: impl Fn(&[String]) -> bool) -> bool {
        common::eventually(WAIT, || condition(&self.lines()))
            .await
            .is_some()
    }
}
