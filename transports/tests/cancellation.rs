//! Dropping a call's future cancels it on the provider.

mod common;

use std::time::Duration;

use common::{Stats, client, eventually, spawn_sleep, start, wait_started};
use rpc_core::Codec;
use transports::TcpConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_aborts_the_handler_on_the_provider() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Bincode);
    let call = spawn_sleep(&probe, 30_000);
    wait_started(&stats, 1).await;
    call.abort();
    let took = eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1).await;
    eprintln!("handler aborted {took:?} after the caller dropped the call");
    assert!(took.is_some(), "the provider never aborted the handler");
    // The connection is still good for other calls.
    assert_eq!(probe.echo("after".into()).await.unwrap(), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_call_leaves_the_others_running() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Json);
    let keep = spawn_sleep(&probe, 400);
    let drop_me = spawn_sleep(&probe, 30_000);
    wait_started(&stats, 2).await;
    drop_me.abort();
    assert_eq!(keep.await.unwrap().unwrap(), 400);
    assert!(
        eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1)
            .await
            .is_some()
    );
    assert_eq!(Stats::get(&stats.finished), 1);
}
