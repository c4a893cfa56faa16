//! HTTP/2 keepalive on the consumer: PINGs find a provider that stopped answering, and an
//! answering one keeps its connection.

mod common;

use std::time::{Duration, Instant};

use common::{ProbeClient, start_grpc};
use rpc_core::Error;
use rpc_core::client::ClusterMode;
use transports::{GrpcConfig, GrpcTransport};

fn client_with_pings(address: std::net::SocketAddr, interval: Duration) -> ProbeClient {
    ProbeClient::builder()
        .transport(GrpcTransport::new(
            GrpcConfig::default().keepalive(Some(interval), Duration::from_millis(300)),
        ))
        .address(address.to_string())
        .cluster(ClusterMode::Failfast)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_unanswered_ping_fails_the_connection_and_its_calls_long_before_their_deadline() {
    // A peer that accepts and then never says a word: no SETTINGS, no PING answer.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let probe = client_with_pings(address, Duration::from_millis(100));
    let started = Instant::now();
    let error = probe.echo("x".into()).await.unwrap_err();
    // The connection is dropped under the call: a transport failure, not its timeout.
    assert!(
        matches!(
            error.root(),
            Error::Transport { .. } | Error::Unavailable { .. }
        ),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn answered_pings_keep_an_idle_connection_and_calls_go_on() {
    let (server, _stats) = start_grpc(GrpcConfig::default()).await;
    let probe = client_with_pings(server.local_addr(), Duration::from_millis(50));
    assert_eq!(probe.echo("first".into()).await.unwrap(), "first");
    // Idle for several intervals: pings go out and are answered.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(probe.echo("second".into()).await.unwrap(), "second");
    server.shutdown().await;
}
