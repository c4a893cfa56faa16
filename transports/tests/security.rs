//! Who may call a provider over TCP: Dubbo's token (fixed, random and published through
//! the registry) and IP allow/deny rules, per server at accept time and per service per
//! call.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::server::{IpRules, Token};
use rpc_core::{Error, Server, ServerBuilder};
use transports::{TcpConfig, TcpTransport};

fn provider() -> ServerBuilder {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
}

/// A client of `server` whose connections leave from `from`, with `token` if given.
fn client_from(server: &Server, from: &str, token: Option<&str>) -> ProbeClient {
    let ip: IpAddr = from.parse().unwrap();
    let mut builder = ProbeClient::builder()
        .transport(TcpTransport::new(TcpConfig::default().local_ip(ip)))
        .address(server.local_addr().to_string())
        .timeout(Duration::from_secs(10));
    if let Some(token) = token {
        builder = builder.token(token);
    }
    builder.build().unwrap()
}

fn assert_unauthorized(result: Result<String, Error>, words: &str) {
    match result {
        Err(Error::Unauthorized(message)) => {
            assert!(message.contains(words), "{message:?} lacks {words:?}")
        }
        other => panic!("expected Unauthorized({words}), got {other:?}"),
    }
}

#[tokio::test]
async fn the_right_token_passes_and_missing_or_wrong_ones_are_refused() {
    let server = provider()
        .token(Token::Fixed("s3cret".into()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let good = client_from(&server, "127.0.0.1", Some("s3cret"));
    assert_eq!(good.echo("hi".into()).await.unwrap(), "hi");

    let missing = client_from(&server, "127.0.0.1", None);
    assert_unauthorized(missing.echo("hi".into()).await, "missing token");
    let wrong = client_from(&server, "127.0.0.1", Some("s3cres"));
    assert_unauthorized(wrong.echo("hi".into()).await, "invalid token");
    // Refusals leave the connection usable and are counted.
    assert_unauthorized(wrong.echo("again".into()).await, "invalid token");
    assert_eq!(server.refusals().bad_token, 3);
    assert_eq!(good.echo("still".into()).await.unwrap(), "still");
}

#[tokio::test]
async fn a_refused_call_is_not_decoded() {
    let server = provider()
        .token(Token::Fixed("s3cret".into()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    // Arguments no codec could decode as a String: the token is checked first, so the
    // answer is the refusal, not a codec error.
    let raw = rpc_core::Client::builder("test.Probe")
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .build()
        .unwrap();
    let echo = &common::PROBE_DESCRIPTOR.methods[0];
    let result: Result<String, Error> = raw.call(echo, &(u64::MAX, [7u8; 3])).await;
    assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
}

#[tokio::test]
async fn consumers_take_the_random_token_from_the_registry_url() {
    let registry = registry::connect("memory://security-random-token")
        .await
        .unwrap();
    let server = provider()
        .token(Token::Random)
        .registry(registry.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let token = server.token_of("test.Probe").unwrap().to_owned();
    assert_eq!(token.len(), 32);
    let published = server.registered()[0].param("token").map(str::to_owned);
    assert_eq!(published.as_deref(), Some(token.as_str()));

    let consumer = ProbeClient::builder()
        .transport(TcpTransport::default())
        .registry(registry)
        .registry_cache(
            std::env::temp_dir().join(format!("rpc-security-test-{}.cache", std::process::id())),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (seen, _) = consumer.attachment("token".into()).await.unwrap();
    assert_eq!(seen.as_deref(), Some(token.as_str()));

    // The same provider called by address, without the registry's token.
    let stranger = client_from(&server, "127.0.0.1", None);
    assert_unauthorized(stranger.echo("hi".into()).await, "missing token");
}

#[tokio::test]
async fn a_service_can_opt_out_of_the_server_token() {
    let server = provider()
        .token(Token::Fixed("s3cret".into()))
        .service_token("test.Probe", None)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let anyone = client_from(&server, "127.0.0.1", None);
    assert_eq!(anyone.echo("open".into()).await.unwrap(), "open");
}

#[tokio::test]
async fn server_ip_rules_refuse_connections_at_accept() {
    let server = provider()
        .allow_ip("127.0.0.0/30")
        .unwrap()
        .deny_ip("127.0.0.2")
        .unwrap()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let allowed = client_from(&server, "127.0.0.3", None);
    assert_eq!(allowed.echo("in".into()).await.unwrap(), "in");

    for refused in ["127.0.0.2", "127.0.0.9"] {
        let client = client_from(&server, refused, None);
        let result = tokio::time::timeout(Duration::from_secs(20), client.echo("out".into()))
            .await
            .expect("a refused connection fails the call, it does not hang");
        assert!(
            matches!(&result, Err(e) if matches!(e.root(), Error::Transport { .. } | Error::Unavailable { .. })),
            "{refused}: {result:?}"
        );
    }
    assert!(server.refusals().denied_connections >= 2);
}

#[tokio::test]
async fn service_ip_rules_refuse_calls_with_the_typed_error() {
    let rules = IpRules::new().allow("127.0.0.4").unwrap();
    let server = provider()
        .service_ips("test.Probe", rules)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let allowed = client_from(&server, "127.0.0.4", None);
    assert_eq!(allowed.echo("in".into()).await.unwrap(), "in");
    let denied = client_from(&server, "127.0.0.5", None);
    assert_unauthorized(denied.echo("out".into()).await, "may not call test.Probe");
    assert_eq!(server.refusals().denied_calls, 1);
}
