//! Backpressure between a provider and a consumer that stops reading its answers.
//!
//! The consumer reaches the provider through a relay whose provider-to-consumer direction
//! the test can pause, as if the consumer stopped reading. The provider stops reading new
//! requests while `max_write_buffer` bytes of answers wait, and gives the connection up
//! when a write makes no progress for `write_stall_timeout`. These tests check what a
//! caller sees (every call ends, well before its own deadline, with an answer or a
//! transport error) and what the provider pays: its memory stays within the outbox limit
//! per connection plus a margin, and it goes idle once the consumer is gone.
//!
//! The provider runs in a child process (this test binary, re-run as
//! [`provider_process`]) so its memory and CPU time can be read from `/proc/<pid>`
//! without the consumer's own buffers in the figures.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{Codec, Error, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use transports::{TcpConfig, TcpTransport};

/// Test service: bulk payloads, echoed.
#[rpc_core::service(name = "test.Bulk")]
pub trait Bulk {
    /// Returns `data`.
    async fn echo(&self, data: Blob) -> Blob;
}

#[derive(Clone)]
struct BulkImpl;

impl Bulk for BulkImpl {
    async fn echo(&self, data: Blob) -> Blob {
        data
    }
}

/// Bytes that serde sees as one byte string. A bare `Vec<u8>` goes element by element,
/// which an unoptimized test build makes slow: 80 MiB of echo calls took 35 s that way
/// (0.6 s as byte strings), and the tests would measure serde instead of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
                Ok(Blob(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(bytes))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(Blob(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// Outbox limit of the provider.
const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// Consumers, each with a transport (so a connection) of its own.
const CONNECTIONS: usize = 4;
/// Concurrent calls per consumer: 30 MiB each way per connection, 120 MiB in all, so a
/// provider that buffered every answer would be far over the memory bound.
const CALLS_PER_CONNECTION: usize = 48;
/// The callers' own timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Every call must end within this after the pause ends, well before `CALL_TIMEOUT`
/// (they take about 0.1 s to 0.5 s).
const SETTLE: Duration = Duration::from_secs(10);
/// Allowed growth of the provider's memory beyond `MAX_WRITE_BUFFER` per connection.
const MEMORY_MARGIN: u64 = 64 * 1024 * 1024;

/// Set (to `max_write_buffer,stall_ms`) in the environment of the provider process.
const PROVIDER_ENV: &str = "TRANSPORTS_BACKPRESSURE_PROVIDER";
/// The provider process prints its address after this.
const ADDRESS_LINE: &str = "provider listening on ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_gets_every_call_answered_or_failed_not_timed_out() {
    let outcome = run(Duration::from_secs(1), Duration::from_secs(5)).await;
    outcome.check_ended_without_timeouts();
    outcome.check_stalled_connections_were_closed();
    outcome.check_memory();
    outcome.check_provider_idle();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_shorter_than_the_stall_timeout_loses_no_call() {
    let outcome = run(Duration::from_secs(5), Duration::from_millis(500)).await;
    outcome.check_ended_without_timeouts();
    assert_eq!(
        outcome.succeeded,
        CONNECTIONS * CALLS_PER_CONNECTION,
        "a pause shorter than the stall timeout failed calls: {:?}",
        outcome.errors
    );
    outcome.check_memory();
    outcome.check_provider_idle();
}

/// Not a test: the provider of the tests above, run in a process of its own. Does nothing
/// unless [`PROVIDER_ENV`] is set; serves until its standard input closes.
#[test]
#[ignore = "the provider process of the backpressure tests, which start it themselves"]
fn provider_process() {
    let Ok(spec) = std::env::var(PROVIDER_ENV) else {
        return;
    };
    let (max_write_buffer, stall_ms) = spec.split_once(',').expect("max_write_buffer,stall_ms");
    let config = TcpConfig::default()
        .max_write_buffer(max_write_buffer.parse().expect("max_write_buffer"))
        .write_stall_timeout(Duration::from_millis(stall_ms.parse().expect("stall_ms")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Server::builder()
            .transport(TcpTransport::new(config))
            .add_service(BulkServer::new(BulkImpl))
            .shutdown_timeout(Duration::ZERO)
            .bind("127.0.0.1:0")
            .await
            .expect("bind a free loopback port");
        println!("{ADDRESS_LINE}{}", server.local_addr());
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| {
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
        })
        .await;
        server.shutdown().await;
    });
}

/// What one run saw.
struct Outcome {
    label: String,
    pause: Duration,
    connections: usize,
    succeeded: usize,
    errors: Vec<Error>,
    failed_per_connection: Vec<usize>,
    slowest: Duration,
    memory_before: Memory,
    memory_end_of_pause: Memory,
    memory_after: Memory,
    /// Largest resident size sampled while calls ran.
    sampled_peak_rss_kb: u64,
    /// Share of one core the provider used in the second after every call ended.
    idle_cpu: f64,
}

impl Outcome {
    /// Every call ended soon after the pause did, none by the caller's own timeout, and
    /// every failure is a transport error.
    fn check_ended_without_timeouts(&self) {
        let bound = self.pause + SETTLE;
        assert!(
            self.slowest < bound,
            "{}: the slowest call took {:?} (caller timeout {CALL_TIMEOUT:?}, bound {bound:?})",
            self.label,
            self.slowest
        );
        for error in &self.errors {
            assert!(
                matches!(error, Error::Transport { .. } | Error::Unavailable { .. }),
                "{}: a call failed with something other than a transport error: {error:?}",
                self.label
            );
        }
    }

    /// The provider gave every stalled connection up: each lost calls. (Each connection
    /// owes 30 MiB of answers, far more than the socket buffers and the outbox hold, so a
    /// provider that kept waiting would answer every call once the relay resumed.)
    fn check_stalled_connections_were_closed(&self) {
        assert!(
            self.failed_per_connection.iter().all(|&failed| failed > 0),
            "{}: a connection lost no call, so the provider never gave it up; failed calls \
             per connection: {:?}",
            self.label,
            self.failed_per_connection
        );
    }

    /// The provider's memory grew by less than its outbox limit per connection plus a
    /// margin (allocator slack, read buffers, calls being decoded).
    fn check_memory(&self) {
        let peak_kb = self
            .memory_after
            .hwm_kb
            .max(self.memory_end_of_pause.hwm_kb)
            .max(self.sampled_peak_rss_kb);
        let growth = (peak_kb.saturating_sub(self.memory_before.rss_kb)) * 1024;
        let bound = (self.connections * MAX_WRITE_BUFFER) as u64 + MEMORY_MARGIN;
        eprintln!(
            "{}: provider memory grew {} MiB (bound {} MiB = {} connections x {} MiB + {} MiB)",
            self.label,
            growth >> 20,
            bound >> 20,
            self.connections,
            MAX_WRITE_BUFFER >> 20,
            MEMORY_MARGIN >> 20
        );
        assert!(
            growth < bound,
            "{}: provider memory grew {growth} bytes, over {bound}",
            self.label
        );
    }

    /// The provider does not keep a core busy once its calls are over.
    fn check_provider_idle(&self) {
        assert!(
            self.idle_cpu < 0.5,
            "{}: the provider kept {:.0}% of a core busy after every call had ended",
            self.label,
            self.idle_cpu * 100.0
        );
    }
}

/// Sends `CONNECTIONS x CALLS_PER_CONNECTION` concurrent echo calls of 256 KiB to 1 MiB
/// through a relay whose provider-to-consumer direction is paused for `pause` from just
/// before the first call; the provider gives a connection up after `stall`.
async fn run(stall: Duration, pause: Duration) -> Outcome {
    let label = format!("pause {pause:?}, stall timeout {stall:?}");
    let provider = Provider::spawn(MAX_WRITE_BUFFER, stall).await;
    let relay = Relay::start(provider.address).await;
    let clients: Vec<BulkClient> = (0..CONNECTIONS)
        .map(|_| {
            BulkClient::builder()
                // The consumer's own outbox (64 MiB) must hold every call it sends (30 MiB);
                // the provider's limit is the one under test.
                .transport(TcpTransport::new(TcpConfig::default()))
                .address(relay.address.to_string())
                .codec(Codec::Bincode)
                .timeout(CALL_TIMEOUT)
                // Each failure as the transport reports it, not a retry's outcome.
                .retries(0)
                .build()
                .unwrap()
        })
        .collect();
    for client in &clients {
        assert_eq!(client.echo(Blob(vec![7; 16])).await.unwrap().0, vec![7; 16]);
    }

    let memory_before = provider.memory();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let pid = provider.child.id();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = Memory::of(pid).rss_kb.max(peak);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    relay.pause();
    let started = Instant::now();
    let calls: Vec<_> = clients
        .iter()
        .enumerate()
        .flat_map(|(connection, client)| {
            (0..CALLS_PER_CONNECTION).map(move |i| (connection, client.clone(), i))
        })
        .map(|(connection, client, i)| {
            tokio::spawn(async move {
                let size = (256 << 10) * (1 + i % 4);
                let fill = (i % 251) as u8;
                let sent = Instant::now();
                let result = client.echo(Blob(vec![fill; size])).await;
                if let Ok(Blob(echoed)) = &result {
                    assert!(
                        echoed.len() == size && echoed.iter().all(|&b| b == fill),
                        "call {i} got a different payload back"
                    );
                }
                (connection, result.map(drop), sent.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(pause).await;
    let memory_end_of_pause = provider.memory();
    relay.resume();
    eprintln!(
        "{label}: relay resumed {:?} after the first call",
        started.elapsed()
    );

    let mut succeeded = 0;
    let mut errors = Vec::new();
    let mut failed_per_connection = vec![0; CONNECTIONS];
    let mut slowest = Duration::ZERO;
    for call in calls {
        let (connection, result, took) =
            tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(10), call)
                .await
                .expect("a call outlived its own timeout")
                .unwrap();
        slowest = slowest.max(took);
        match result {
            Ok(()) => succeeded += 1,
            Err(error) => {
                failed_per_connection[connection] += 1;
                errors.push(error);
            }
        }
    }
    let all_ended = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let sampled_peak_rss_kb = sampler.await.unwrap();
    let memory_after = provider.memory();

    // The consumers stay connected (and idle): a provider with nothing to do must not
    // burn CPU, whatever state the stalled connections left behind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = provider.cpu_time();
    let idle_window = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu =
        (provider.cpu_time() - cpu_before).as_secs_f64() / idle_window.elapsed().as_secs_f64();
    let memory_idle = provider.memory();
    // What the connections themselves kept: the provider's memory once they are gone.
    drop(clients);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let memory_disconnected = provider.memory();

    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for error in &errors {
        *kinds.entry(error_kind(error)).or_default() += 1;
    }
    eprintln!(
        "{label}: {succeeded} calls answered, {} failed {kinds:?} (per connection \
         {failed_per_connection:?}); slowest call {slowest:?}, all ended {all_ended:?} after \
         the first was sent; first error: {:?}",
        errors.len(),
        errors.first().map(ToString::to_string),
    );
    eprintln!(
        "{label}: provider VmRSS before {} KiB; at the end of the pause VmRSS {} KiB, VmHWM {} KiB; \
         sampled peak VmRSS {sampled_peak_rss_kb} KiB; after VmRSS {} KiB, VmHWM {} KiB; \
         idle, still connected VmRSS {} KiB; consumers gone VmRSS {} KiB; \
         CPU while idle afterwards {:.0}% of a core",
        memory_before.rss_kb,
        memory_end_of_pause.rss_kb,
        memory_end_of_pause.hwm_kb,
        memory_after.rss_kb,
        memory_after.hwm_kb,
        memory_idle.rss_kb,
        memory_disconnected.rss_kb,
        idle_cpu * 100.0
    );
    Outcome {
        label,
        pause,
        connections: CONNECTIONS,
        succeeded,
        errors,
        failed_per_connection,
        slowest,
        memory_before,
        memory_end_of_pause,
        memory_after,
        sampled_peak_rss_kb,
        idle_cpu,
    }
}

fn error_kind(error: &Error) -> String {
    format!("{error:?}")
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Resident memory of a process, from `/proc/<pid>/status`.
struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kb: field("VmRSS:"),
            hwm_kb: field("VmHWM:"),
        }
    }
}

/// The provider, running in a child process; killed when dropped.
struct Provider {
    child: Child,
    address: SocketAddr,
}

impl Provider {
    async fn spawn(max_write_buffer: usize, stall: Duration) -> Provider {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "provider_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                PROVIDER_ENV,
                format!("{max_write_buffer},{}", stall.as_millis()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the provider process");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Reads the address, then keeps draining so the child never blocks on its stdout.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have written the test's name on the same line.
                if let Some((_, address)) = line.split_once(ADDRESS_LINE)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(address.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let address = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the provider process did not start within 30 s")
            .expect("the provider process exited before listening");
        Provider { child, address }
    }

    fn memory(&self) -> Memory {
        Memory::of(self.child.id())
    }

    /// User plus system CPU time of the provider process so far.
    fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses: state is field 3, utime
        // and stime are 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = fields
            .get(11..13)
            .map(|t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay between consumers and the provider whose provider-to-consumer direction
/// can be paused: while paused it reads nothing from the provider, so the provider's
/// writes back up exactly as if the consumer had stopped reading. When either side closes
/// or fails, the relay closes both.
struct Relay {
    address: SocketAddr,
    paused: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (paused, _) = watch::channel(false);
        let pause = paused.subscribe();
        tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                tokio::spawn(relay_connection(downstream, upstream, pause.clone()));
            }
        });
        Relay { address, paused }
    }

    fn pause(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }
}

async fn relay_connection(
    downstream: TcpStream,
    upstream: SocketAddr,
    paused: watch::Receiver<bool>,
) {
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    // Whichever direction ends first, both sockets are dropped (closed) together.
    tokio::select! {
        _ = pipe(down_read, up_write, None) => {}
        _ = pipe(up_read, down_write, Some(paused)) => {}
    }
}

/// Copies until EOF or an error, waiting while `paused` says so before each read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: Option<watch::Receiver<bool>>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        if let Some(paused) = &mut paused
            && paused.wait_for(|paused| !paused).await.is_err()
        {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
