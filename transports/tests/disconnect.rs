//! A lost connection fails every call in flight on it at once; the client reconnects.

mod common;

use std::time::{Duration, Instant};

use common::{client, eventually, spawn_sleep, start, wait_started};
use rpc_core::{Codec, Error, Server};
use transports::{TcpConfig, TcpTransport};

/// A TCP relay between the client and the provider that the test can cut, like a cable.
struct Relay {
    address: std::net::SocketAddr,
    cut: tokio_util::sync::CancellationToken,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = tokio_util::sync::CancellationToken::new();
        let token = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut downstream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut downstream, &mut up) => {}
                    }
                });
            }
        });
        Relay { address, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_fails_all_in_flight_calls() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let relay = Relay::start(server.local_addr()).await;
    let probe = client(relay.address, Codec::Bincode);
    let calls: Vec<_> = (0..50).map(|_| spawn_sleep(&probe, 60_000)).collect();
    wait_started(&stats, 50).await;
    let started = Instant::now();
    relay.cut.cancel();
    for call in calls {
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("a call hung after the disconnect")
            .unwrap();
        assert!(matches!(result, Err(Error::Transport { .. })), "{result:?}");
    }
    eprintln!(
        "50 in-flight calls failed {:?} after the disconnect",
        started.elapsed()
    );
    // The provider notices the closed connection and aborts the orphaned handlers.
    assert!(
        eventually(Duration::from_secs(5), || common::Stats::get(
            &stats.aborted
        ) == 50)
        .await
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_when_the_provider_comes_back() {
    let (server, _) = start(TcpConfig::default(), Duration::ZERO).await;
    let address = server.local_addr();
    let probe = client(address, Codec::Json);
    assert_eq!(probe.echo("before".into()).await.unwrap(), "before");
    server.shutdown().await;

    // While it is down, calls fail quickly instead of hanging.
    let result = probe
        .with_timeout(Duration::from_secs(5))
        .echo("down".into())
        .await;
    assert!(result.is_err(), "{result:?}");

    let restarted = Instant::now();
    let server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(common::ProbeServer::new(common::ProbeImpl::default()))
        .bind(&address.to_string())
        .await
        .unwrap();
    let mut last = None;
    let back = eventually(Duration::from_secs(10), || {
        last = futures_now(&probe);
        matches!(last, Some(true))
    })
    .await;
    eprintln!("calls succeed again {back:?} after the provider restarted (bound 10 s)");
    assert!(back.is_some(), "client never reconnected");
    assert!(restarted.elapsed() < Duration::from_secs(10));
    server.shutdown().await;
}

/// Runs one call to completion on a helper thread, so `eventually` can poll it.
fn futures_now(probe: &common::ProbeClient) -> Option<bool> {
    let probe = probe.clone();
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        handle.block_on(async move {
            probe
                .with_timeout(Duration::from_millis(500))
                .echo("again".into())
                .await
                .is_ok()
        })
    })
    .join()
    .ok()
}
