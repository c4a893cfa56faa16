//! Typed calls over the TCP transport, end to end.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{ProbeClient, client, start};
use rpc_core::{Client, Code, Codec, Error};
use transports::{TcpConfig, TcpTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_round_trip_with_both_codecs() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    for codec in Codec::SERDE {
        let probe = client(server.local_addr(), codec);
        let text = "héllo wörld ".repeat(100);
        assert_eq!(probe.echo(text.clone()).await.unwrap(), text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_reach_the_handler() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Json);
    let (value, peer) = probe
        .with_attachment("tenant", "acme")
        .attachment("tenant".into())
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("acme"));
    assert!(peer.unwrap().starts_with("127.0.0.1:"));
    let (missing, _) = probe.attachment("tenant".into()).await.unwrap();
    assert_eq!(
        missing, None,
        "with_attachment must not change the original client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_connection() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Bincode);
    let calls = (0..500).map(|i| {
        let probe = probe.clone();
        tokio::spawn(async move {
            let echoed = probe.echo(format!("call {i}")).await.unwrap();
            assert_eq!(echoed, format!("call {i}"));
            probe.attachment("x".into()).await.unwrap().1.unwrap()
        })
    });
    let mut peers = HashSet::new();
    for call in calls {
        peers.insert(call.await.unwrap());
    }
    assert_eq!(
        peers.len(),
        1,
        "every call used the same connection: {peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_becomes_a_remote_error_with_its_message() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Json);
    match probe.explode("disk on fire".into()).await {
        Err(Error::Remote {
            code: Code::ServiceError,
            message,
        }) => assert!(message.contains("disk on fire"), "{message}"),
        other => panic!("expected a remote service error, got {other:?}"),
    }
    assert_eq!(probe.echo("still up".into()).await.unwrap(), "still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_and_methods_are_typed_remote_errors() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let other = Client::builder("test.Nope")
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .build()
        .unwrap();
    let missing = ProbeClient::new(other).echo("x".into()).await;
    assert!(
        matches!(&missing, Err(Error::Remote { code: Code::NotFound, message }) if message.contains("test.Nope")),
        "{missing:?}"
    );

    let probe = client(server.local_addr(), Codec::Json);
    static VANISH: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("vanish");
    let raw = rpc_core::Request::new(
        "test.Probe",
        "",
        &VANISH,
        Codec::Json,
        "[]".into(),
        Duration::from_secs(2),
    );
    let result = probe.client().invoke(raw).await;
    assert!(
        matches!(&result, Err(Error::Remote { code: Code::NotFound, message }) if message.contains("vanish")),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_handler_sends_attachments_back_with_its_answer() {
    let (server, _) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Json);
    let reply = common::reply_attachments(&probe, "tenant").await;
    assert_eq!(reply.get("x-asked"), Some("tenant"));
    assert_eq!(reply.len(), 1, "{reply:?}");
    // Answers without attachments are unchanged on the wire, and typed calls still work.
    assert_eq!(probe.echo("plain".into()).await.unwrap(), "plain");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_limited_to_json_refuses_bincode_with_bad_request() {
    let server = rpc_core::Server::builder()
        .transport(TcpTransport::default())
        .codecs([Codec::Json])
        .add_service(common::ProbeServer::new(common::ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let refused = client(server.local_addr(), Codec::Bincode)
        .echo("x".into())
        .await;
    assert!(
        matches!(&refused, Err(Error::Remote { code: Code::BadRequest, message }) if message.contains("bincode")),
        "{refused:?}"
    );
    let accepted = client(server.local_addr(), Codec::Json)
        .echo("x".into())
        .await;
    assert_eq!(accepted.unwrap(), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_calls_reach_the_provider_without_a_response() {
    let (server, stats) = start(TcpConfig::default(), Duration::from_secs(1)).await;
    let probe = client(server.local_addr(), Codec::Bincode);
    for i in 0..100 {
        probe.record(i).await.unwrap();
    }
    let took = common::eventually(Duration::from_secs(10), || {
        common::Stats::get(&stats.recorded) == 100
    })
    .await;
    assert!(
        took.is_some(),
        "recorded {}",
        common::Stats::get(&stats.recorded)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_fails_fast_as_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    // A lone provider's caller may wait out reconnect attempts within its deadline
    // (`Request::wait_for_ready`), but not when the next attempt (1 s after this one
    // fails) would start after the deadline: then the attempt's error comes at once.
    let probe = ProbeClient::builder()
        .transport(TcpTransport::new(
            TcpConfig::default().reconnect_backoff(Duration::from_secs(1), Duration::from_secs(5)),
        ))
        .address(port.to_string())
        .codec(Codec::Json)
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client config is valid");
    let started = std::time::Instant::now();
    let result = probe.echo("anyone?".into()).await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// A second service, to share the probe's port.
#[rpc_core::service(name = "test.Counter", version = "2.0")]
pub trait Counter {
    /// Adds one.
    async fn next(&self, n: u64) -> u64;
}

struct PlusOne;

impl Counter for PlusOne {
    async fn next(&self, n: u64) -> u64 {
        n + 1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_services_share_one_port() {
    let server = rpc_core::Server::builder()
        .transport(TcpTransport::default())
        .add_service(common::ProbeServer::new(common::ProbeImpl::default()))
        .add_service(CounterServer::new(PlusOne))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let names: Vec<_> = server
        .services()
        .iter()
        .map(|d| (d.name, d.version))
        .collect();
    assert_eq!(names, [("test.Counter", "2.0"), ("test.Probe", "")]);
    let address = server.local_addr().to_string();
    let counter = CounterClient::builder()
        .transport(TcpTransport::default())
        .address(address.clone())
        .build()
        .unwrap();
    let probe = client(server.local_addr(), Codec::Bincode);
    assert_eq!(counter.next(41).await.unwrap(), 42);
    assert_eq!(probe.echo("same port".into()).await.unwrap(), "same port");
}
