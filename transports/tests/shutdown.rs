//! Graceful shutdown: stop accepting, finish in-flight calls (bounded), then close.

mod common;

use std::time::{Duration, Instant};

use common::{Stats, client, spawn_sleep, start, wait_started};
use rpc_core::{Code, Codec, Error};
use transports::TcpConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_calls() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(10)).await;
    let address = server.local_addr();
    let probe = client(address, Codec::Bincode);
    let calls: Vec<_> = (0..10).map(|_| spawn_sleep(&probe, 300)).collect();
    wait_started(&stats, 10).await;
    let started = Instant::now();
    server.shutdown().await;
    eprintln!("drained 10 calls of 300 ms in {:?}", started.elapsed());
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 300);
    }
    assert_eq!(Stats::get(&stats.aborted), 0);
    // The listener is gone: a fresh connection is refused.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_calls_are_rejected_while_draining() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(10)).await;
    let probe = client(server.local_addr(), Codec::Json);
    let in_flight = spawn_sleep(&probe, 800);
    wait_started(&stats, 1).await;
    let handle = server.handle();
    let draining = tokio::spawn(server.run_until(std::future::pending()));
    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = probe.echo("late".into()).await;
    assert!(
        matches!(&refused, Err(Error::Rejected(m)) if m.contains("shutting down")),
        "{refused:?}"
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), 800);
    tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_its_timeout() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_millis(200)).await;
    let probe = client(server.local_addr(), Codec::Json);
    let stuck = {
        let probe = probe.clone();
        tokio::spawn(async move {
            probe
                .with_timeout(Duration::from_secs(60))
                .sleep(60_000)
                .await
        })
    };
    wait_started(&stats, 1).await;
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    eprintln!("shutdown with a stuck call took {took:?} (timeout 200 ms)");
    assert!(took < Duration::from_secs(5));
    let result = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .unwrap()
        .unwrap();
    assert_cancelled_by_provider(&result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_stops_it_at_once_and_tells_running_callers() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(10)).await;
    let address = server.local_addr();
    let probe = client(address, Codec::Json);
    let running = spawn_sleep(&probe, 60_000);
    wait_started(&stats, 1).await;
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    assert_cancelled_by_provider(&result);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the listener still accepts after the server was dropped"
    );
}

/// What a caller sees when the provider abandons its call: status 80, "call cancelled".
fn assert_cancelled_by_provider(result: &Result<u64, Error>) {
    assert!(
        matches!(result, Err(Error::Remote { code: Code::ServerError, message }) if message.contains("cancelled")),
        "{result:?}"
    );
}
