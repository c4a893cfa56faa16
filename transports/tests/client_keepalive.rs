//! The client side of heartbeats: a client (`ProbeClient` over `TcpTransport`) keeps its
//! quiet connection to a provider open with heartbeats, and drops a provider that stays
//! silent past the idle timeout, failing the call waiting on it. How the provider answers
//! and sends heartbeats on raw sockets is in `provider_heartbeats.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{ProbeClient, start};
use rpc_core::{Codec, Error};
use transports::{TcpConfig, TcpTransport};

fn fast_heartbeats() -> TcpConfig {
    TcpConfig::default().heartbeat(Duration::from_millis(100), Duration::from_millis(400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_idle_connection_open() {
    let (server, _) = start(fast_heartbeats(), Duration::from_secs(1)).await;
    let probe = ProbeClient::builder()
        .transport(TcpTransport::new(fast_heartbeats()))
        .address(server.local_addr().to_string())
        .codec(Codec::Json)
        .build()
        .unwrap();
    let (_, first_peer) = probe.attachment("k".into()).await.unwrap();
    // Five idle timeouts without a call: only heartbeats cross the connection.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (_, later_peer) = probe.attachment("k".into()).await.unwrap();
    assert_eq!(first_peer, later_peer, "the connection was replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_provider_is_dropped_after_the_idle_timeout() {
    // A "provider" that accepts and then never writes a byte, not even heartbeat answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let probe = ProbeClient::builder()
        .transport(TcpTransport::new(fast_heartbeats()))
        .address(address.to_string())
        .codec(Codec::Json)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = probe.echo("anyone?".into()).await;
    let took = started.elapsed();
    eprintln!("call on a silent connection failed after {took:?} (idle timeout 400 ms)");
    assert!(
        matches!(&result, Err(Error::Transport { message, .. }) if message.contains("idle")),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(10));
}
