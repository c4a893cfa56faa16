//! TLS on the TCP transport, with certificates made in the test (rcgen): calls work,
//! plain and TLS listeners coexist, a plain peer fails cleanly, mutual TLS refuses a
//! client without a certificate or with one from another CA, a wrong server name is
//! refused, and the registry tells consumers which providers need TLS.

mod certs;
mod common;

use std::time::{Duration, Instant};

use certs::Ca;
use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::{Error, Server};
use transports::TcpTransport;
use transports::tls::{ClientTls, ServerTls};

async fn tls_provider(tls: ServerTls) -> Server {
    Server::builder()
        .transport(TcpTransport::default().with_server_tls(tls).unwrap())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn client(address: String, transport: TcpTransport) -> ProbeClient {
    ProbeClient::builder()
        .transport(transport)
        .address(address)
        // A failed connection is retried with backoff while the deadline allows
        // (a provider alone waits for its next attempt), so the deadline bounds the test.
        .timeout(Duration::from_secs(3))
        .retries(0)
        .build()
        .unwrap()
}

fn tls_client(address: String, tls: ClientTls) -> ProbeClient {
    client(
        address,
        TcpTransport::default().with_client_tls(tls).unwrap(),
    )
}

/// The call fails before its 3 s deadline with the connection's error, not a timeout.
async fn assert_refused(probe: &ProbeClient) -> Error {
    let started = Instant::now();
    let result = probe.echo("hello".into()).await;
    let error = result.expect_err("the call must fail");
    assert!(!error.is_timeout(), "failed by timing out: {error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    error
}

#[tokio::test]
async fn tls_calls_work_next_to_a_plain_listener() {
    let ca = Ca::new("test CA");
    let leaf = ca.server_leaf();
    let secure =
        tls_provider(ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()).await;
    let plain = Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();

    let trust = ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap();
    let over_tls = tls_client(secure.local_addr().to_string(), trust.clone());
    assert_eq!(over_tls.echo("secret".into()).await.unwrap(), "secret");
    // Many calls in flight share the one TLS connection.
    let calls = (0..50).map(|i| {
        let probe = over_tls.clone();
        async move { probe.echo(format!("call {i}")).await }
    });
    for (i, result) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(result.unwrap(), format!("call {i}"));
    }
    // By host name too.
    let by_name = tls_client(format!("localhost:{}", secure.local_addr().port()), trust);
    assert_eq!(by_name.echo("named".into()).await.unwrap(), "named");

    let over_plain = client(plain.local_addr().to_string(), TcpTransport::default());
    assert_eq!(over_plain.echo("open".into()).await.unwrap(), "open");
}

#[tokio::test]
async fn a_plain_client_against_a_tls_port_fails_cleanly() {
    let ca = Ca::new("test CA");
    let leaf = ca.server_leaf();
    let secure =
        tls_provider(ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()).await;
    let plain = client(secure.local_addr().to_string(), TcpTransport::default());
    let error = assert_refused(&plain).await;
    assert!(
        matches!(
            error.root(),
            Error::Transport { .. } | Error::Unavailable { .. }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_tls_client_against_a_plain_port_fails_cleanly() {
    let ca = Ca::new("test CA");
    let plain = Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let trust = ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap();
    let error = assert_refused(&tls_client(plain.local_addr().to_string(), trust)).await;
    assert!(
        matches!(error.root(), Error::Unavailable { message, .. } if message.contains("TLS handshake")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_or_for_another_name_is_refused() {
    let ca = Ca::new("test CA");
    let leaf = ca.server_leaf();
    let secure =
        tls_provider(ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()).await;
    let address = secure.local_addr().to_string();

    let other_ca = Ca::new("someone else");
    let strangers = ClientTls::new().ca_pem(other_ca.pem().as_bytes()).unwrap();
    let error = assert_refused(&tls_client(address.clone(), strangers)).await;
    assert!(error.to_string().contains("TLS handshake"), "{error}");

    let wrong_name = ClientTls::new()
        .ca_pem(ca.pem().as_bytes())
        .unwrap()
        .server_name("provider.example");
    let error = assert_refused(&tls_client(address, wrong_name)).await;
    assert!(error.to_string().contains("TLS handshake"), "{error}");
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_its_ca() {
    let ca = Ca::new("test CA");
    let clients_ca = Ca::new("clients CA");
    let leaf = ca.server_leaf();
    let secure = tls_provider(
        ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes())
            .unwrap()
            .client_ca_pem(clients_ca.pem().as_bytes())
            .unwrap(),
    )
    .await;
    let address = secure.local_addr().to_string();
    let trust = || ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap();

    let member = clients_ca.client_leaf();
    let with_cert = trust()
        .identity_pem(member.cert.as_bytes(), member.key.as_bytes())
        .unwrap();
    let probe = tls_client(address.clone(), with_cert);
    assert_eq!(probe.echo("mutual".into()).await.unwrap(), "mutual");

    assert_refused(&tls_client(address.clone(), trust())).await;

    let outsider = Ca::new("another CA").client_leaf();
    let foreign = trust()
        .identity_pem(outsider.cert.as_bytes(), outsider.key.as_bytes())
        .unwrap();
    assert_refused(&tls_client(address, foreign)).await;
}

#[tokio::test]
async fn the_registry_tells_consumers_which_providers_need_tls() {
    let registry = registry::connect("memory://tls-announcement")
        .await
        .unwrap();
    let ca = Ca::new("test CA");
    let leaf = ca.server_leaf();
    let secure = Server::builder()
        .transport(
            TcpTransport::default()
                .with_server_tls(
                    ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap(),
                )
                .unwrap(),
        )
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .registry(registry.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    assert_eq!(secure.registered()[0].param("tls"), Some("true"));
    let cache = |name: &str| {
        std::env::temp_dir().join(format!("rpc-tls-test-{}-{name}.cache", std::process::id()))
    };

    let trust = ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap();
    let consumer = ProbeClient::builder()
        .transport(TcpTransport::default().with_client_tls(trust).unwrap())
        .registry(registry.clone())
        .registry_cache(cache("tls"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(consumer.echo("found".into()).await.unwrap(), "found");

    // A plain consumer does not use the TLS provider: it waits for a plain one.
    let plain = ProbeClient::builder()
        .transport(TcpTransport::default())
        .registry(registry)
        .registry_cache(cache("plain"))
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let result = plain.echo("lost".into()).await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        result
            .as_ref()
            .is_err_and(|e| matches!(e.root(), Error::NoProvider(_) | Error::Timeout(_))),
        "{result:?}"
    );
}
