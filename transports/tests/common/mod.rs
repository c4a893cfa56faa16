//! A probe service whose implementation records what happened to each call.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{Codec, Context, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use transports::{TcpConfig, TcpTransport};

/// Test service.
#[rpc_core::service(name = "test.Probe")]
pub trait Probe {
    /// Returns its argument.
    async fn echo(&self, text: String) -> String;
    /// Sleeps, counting starts, completions and aborted runs.
    async fn sleep(&self, millis: u64) -> u64;
    /// Same, with a 100 ms method timeout.
    #[rpc(timeout_ms = 100)]
    async fn sleep_briefly(&self, millis: u64) -> u64;
    /// The attachment `key`, plus the caller's address.
    async fn attachment(&self, cx: &Context, key: String) -> (Option<String>, Option<String>);
    /// Records `value` without answering.
    #[rpc(oneway)]
    async fn record(&self, value: u64);
    /// Panics with a message.
    async fn explode(&self, message: String) -> u32;
}

/// Counters shared between a test and the provider.
#[derive(Default)]
pub struct Stats {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub aborted: AtomicU64,
    pub recorded: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Default)]
pub struct ProbeImpl {
    pub stats: Arc<Stats>,
}

struct AbortGuard {
    stats: Arc<Stats>,
    done: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.done {
            self.stats.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ProbeImpl {
    async fn nap(&self, millis: u64) -> u64 {
        self.stats.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = AbortGuard {
            stats: self.stats.clone(),
            done: false,
        };
        tokio::time::sleep(Duration::from_millis(millis)).await;
        guard.done = true;
        self.stats.finished.fetch_add(1, Ordering::SeqCst);
        millis
    }
}

impl Probe for ProbeImpl {
    async fn echo(&self, text: String) -> String {
        text
    }

    async fn sleep(&self, millis: u64) -> u64 {
        self.nap(millis).await
    }

    async fn sleep_briefly(&self, millis: u64) -> u64 {
        self.nap(millis).await
    }

    async fn attachment(&self, cx: &Context, key: String) -> (Option<String>, Option<String>) {
        // Something for the caller to read back from the answer's attachments.
        cx.set_reply_attachment("x-asked", key.as_str());
        (
            cx.attachment(&key).map(str::to_owned),
            cx.peer_addr().map(|a| a.to_string()),
        )
    }

    async fn record(&self, _value: u64) {
        self.stats.recorded.fetch_add(1, Ordering::SeqCst);
    }

    async fn explode(&self, message: String) -> u32 {
        panic!("{message}")
    }
}

/// A provider serving `ProbeImpl` on a free loopback port.
pub async fn start(config: TcpConfig, shutdown_timeout: Duration) -> (Server, Arc<Stats>) {
    let probe = ProbeImpl::default();
    let stats = probe.stats.clone();
    let server = Server::builder()
        .transport(TcpTransport::new(config))
        .add_service(ProbeServer::new(probe))
        .shutdown_timeout(shutdown_timeout)
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    (server, stats)
}

/// A client of the probe at `address`.
pub fn client(address: SocketAddr, codec: Codec) -> ProbeClient {
    ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(address.to_string())
        .codec(codec)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client config is valid")
}

/// `probe.sleep(millis)` in a task of its own, so the test can await, abort or drop it.
pub fn spawn_sleep(
    probe: &ProbeClient,
    millis: u64,
) -> tokio::task::JoinHandle<Result<u64, rpc_core::Error>> {
    let probe = probe.clone();
    tokio::spawn(async move { probe.sleep(millis).await })
}

/// Waits until the provider has started `n` handlers; fails the test after 5 s.
pub async fn wait_started(stats: &Stats, n: u64) {
    let started = eventually(Duration::from_secs(5), || Stats::get(&stats.started) == n).await;
    assert!(
        started.is_some(),
        "{} handlers started, expected {n}",
        Stats::get(&stats.started)
    );
}

/// Polls `condition` until it holds or `within` passes; returns how long it took.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if condition() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition().then(|| started.elapsed())
}

/// A provider serving `ProbeImpl` over HTTP/2 on a free loopback port.
pub async fn start_grpc(config: transports::GrpcConfig) -> (Server, Arc<Stats>) {
    let probe = ProbeImpl::default();
    let stats = probe.stats.clone();
    let server = Server::builder()
        .transport(transports::GrpcTransport::new(config))
        .add_service(ProbeServer::new(probe))
        .shutdown_timeout(Duration::from_secs(1))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    (server, stats)
}

/// A client of the probe at `address`, over HTTP/2.
pub fn grpc_client(address: SocketAddr, codec: Codec) -> ProbeClient {
    ProbeClient::builder()
        .transport(transports::GrpcTransport::default())
        .address(address.to_string())
        .codec(codec)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client config is valid")
}

/// Calls `attachment(key)` through [`rpc_core::Client::invoke`] in JSON and returns the
/// attachments the provider sent back with its answer.
pub async fn reply_attachments(probe: &ProbeClient, key: &str) -> rpc_core::Attachments {
    static ATTACHMENT: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("attachment");
    let call = rpc_core::Request::new(
        "test.Probe",
        "",
        &ATTACHMENT,
        Codec::Json,
        serde_json::to_vec(&(key,)).unwrap().into(),
        Duration::from_secs(5),
    );
    let response = probe.client().invoke(call).await.unwrap();
    let (value, _): (Option<String>, Option<String>) =
        serde_json::from_slice(&response.body).unwrap();
    assert_eq!(value, None, "nothing was attached under {key}");
    response.attachments
}

/// A JSON-gateway echo over HTTP/1.1 on `stream`; the whole answer.
pub async fn http1_echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, text: &str) -> String {
    let body = format!(r#"{{"text": "{text}"}}"#);
    let request = format!(
        "POST /test.Probe/echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A TLS peer may close without close_notify; what was read before is the answer.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8(answer).unwrap()
}
