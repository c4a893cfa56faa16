//! Deadlines: enforced by the caller and carried to the provider, which drops late work.

mod common;

use std::time::{Duration, Instant};

use common::{Stats, client, eventually, start};
use rpc_core::{Codec, Error};
use transports::TcpConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_fails_with_timeout_and_the_provider_drops_the_work() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Bincode);
    let started = Instant::now();
    let result = probe
        .with_timeout(Duration::from_millis(150))
        .sleep(5_000)
        .await;
    let waited = started.elapsed();
    // The transport says where the call stood; the root is the plain timeout.
    assert!(
        matches!(result.as_ref().map_err(Error::root), Err(Error::Timeout(d)) if *d == Duration::from_millis(150)),
        "{result:?}"
    );
    assert!(waited < Duration::from_secs(3), "caller waited {waited:?}");
    let aborted = eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1).await;
    eprintln!("caller gave up after {waited:?}; provider aborted the handler {aborted:?} later");
    assert!(aborted.is_some(), "the provider kept running the handler");
    assert_eq!(Stats::get(&stats.finished), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_stops_work_at_the_deadline_it_was_sent() {
    // A raw-ish check of the provider side alone: the caller's own timer is made longer
    // than the budget it sends, by sending a budget through a method timeout of 100 ms and
    // observing that the provider's answer is a timeout, not a result.
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Json);
    let result = probe.sleep_briefly(2_000).await;
    assert!(result.as_ref().is_err_and(Error::is_timeout), "{result:?}");
    assert!(
        eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1)
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_timeout_overrides_the_client_default_and_a_per_call_timeout_overrides_both() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Json);
    // Client default is 10 s; the method says 100 ms.
    let result = probe.sleep_briefly(1_000).await;
    assert!(
        matches!(result.as_ref().map_err(Error::root), Err(Error::Timeout(d)) if *d == Duration::from_millis(100)),
        "{result:?}"
    );
    // A per-call timeout wins over the method's.
    let result = probe
        .with_timeout(Duration::from_secs(5))
        .sleep_briefly(300)
        .await;
    assert_eq!(result.unwrap(), 300);
}
