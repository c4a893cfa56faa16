//! TLS and token auth on the HTTP/2 transport, with certificates made in the test
//! (rcgen): calls work in several codecs, a plain peer fails cleanly, mutual TLS refuses
//! clients without a certificate from its CA, a wrong server name is refused, a plain TCP
//! listener and a TLS HTTP/2 one serve side by side, the registry announces `tls=true`,
//! the HTTP/1.1 JSON gateway answers over TLS, and Dubbo's token travels as metadata.

mod certs;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::Ca;
use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::server::Token;
use rpc_core::{Codec, Error, Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transports::tls::{ClientTls, ServerTls};
use transports::{GrpcTransport, TcpTransport};

fn server_tls(ca: &Ca) -> ServerTls {
    let leaf = ca.server_leaf();
    ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()
}

fn trust(ca: &Ca) -> ClientTls {
    ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap()
}

fn provider(tls: ServerTls) -> ServerBuilder {
    Server::builder()
        .transport(GrpcTransport::default().with_server_tls(tls).unwrap())
        .add_service(ProbeServer::new(ProbeImpl::default()))
}

async fn tls_provider(tls: ServerTls) -> Server {
    provider(tls).bind("127.0.0.1:0").await.unwrap()
}

fn client(address: String, transport: GrpcTransport, codec: Codec) -> ProbeClient {
    ProbeClient::builder()
        .transport(transport)
        .address(address)
        .codec(codec)
        // A failed connection is retried with backoff while the deadline allows, so the
        // deadline bounds the test.
        .timeout(Duration::from_secs(3))
        .retries(0)
        .build()
        .unwrap()
}

fn tls_client(address: String, tls: ClientTls) -> ProbeClient {
    client(
        address,
        GrpcTransport::default().with_client_tls(tls).unwrap(),
        Codec::Json,
    )
}

/// The call fails before its 3 s deadline with the connection's error, not a timeout.
async fn assert_refused(probe: &ProbeClient) -> Error {
    let started = Instant::now();
    let error = probe
        .echo("hello".into())
        .await
        .expect_err("the call must fail");
    assert!(!error.is_timeout(), "failed by timing out: {error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    error
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
async fn tls_calls_work_in_several_codecs() {
    let ca = Ca::new("test CA");
    let secure = tls_provider(server_tls(&ca)).await;
    let transport = GrpcTransport::default()
        .with_client_tls(trust(&ca))
        .unwrap();
    for codec in Codec::SERDE {
        let probe = client(secure.local_addr().to_string(), transport.clone(), codec);
        assert_eq!(
            probe.echo(format!("secret {codec}")).await.unwrap(),
            format!("secret {codec}")
        );
        // Many calls in flight share the one TLS connection, each on its own stream.
        let calls = (0..50).map(|i| {
            let probe = probe.clone();
            async move { probe.echo(format!("call {i}")).await }
        });
        for (i, result) in futures_util::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(result.unwrap(), format!("call {i}"));
        }
    }
    // By host name too.
    let by_name = tls_client(
        format!("localhost:{}", secure.local_addr().port()),
        trust(&ca),
    );
    assert_eq!(by_name.echo("named".into()).await.unwrap(), "named");
}

#[tokio::test]
async fn a_plain_client_against_a_tls_port_fails_cleanly() {
    let ca = Ca::new("test CA");
    let secure = tls_provider(server_tls(&ca)).await;
    let plain = client(
        secure.local_addr().to_string(),
        GrpcTransport::default(),
        Codec::Json,
    );
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
        .transport(GrpcTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let error = assert_refused(&tls_client(plain.local_addr().to_string(), trust(&ca))).await;
    assert!(
        matches!(error.root(), Error::Unavailable { message, .. } if message.contains("TLS handshake")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_or_for_another_name_is_refused() {
    let ca = Ca::new("test CA");
    let secure = tls_provider(server_tls(&ca)).await;
    let address = secure.local_addr().to_string();

    let strangers = trust(&Ca::new("someone else"));
    let error = assert_refused(&tls_client(address.clone(), strangers)).await;
    assert!(error.to_string().contains("TLS handshake"), "{error}");

    let wrong_name = trust(&ca).server_name("provider.example");
    let error = assert_refused(&tls_client(address.clone(), wrong_name)).await;
    assert!(error.to_string().contains("TLS handshake"), "{error}");

    // The configured name is what is checked: the certificate's own name passes.
    let right_name = trust(&ca).server_name("localhost");
    let probe = tls_client(address, right_name);
    assert_eq!(probe.echo("named".into()).await.unwrap(), "named");
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_its_ca() {
    let ca = Ca::new("test CA");
    let clients_ca = Ca::new("clients CA");
    let secure = tls_provider(
        server_tls(&ca)
            .client_ca_pem(clients_ca.pem().as_bytes())
            .unwrap(),
    )
    .await;
    let address = secure.local_addr().to_string();

    let member = clients_ca.client_leaf();
    let with_cert = trust(&ca)
        .identity_pem(member.cert.as_bytes(), member.key.as_bytes())
        .unwrap();
    let probe = tls_client(address.clone(), with_cert);
    assert_eq!(probe.echo("mutual".into()).await.unwrap(), "mutual");

    // TLS 1.3 clients learn of a refused certificate after their handshake ends, when
    // the server's alert arrives: the call fails then, with the connection's error.
    assert_refused(&tls_client(address.clone(), trust(&ca))).await;

    let outsider = Ca::new("another CA").client_leaf();
    let foreign = trust(&ca)
        .identity_pem(outsider.cert.as_bytes(), outsider.key.as_bytes())
        .unwrap();
    assert_refused(&tls_client(address, foreign)).await;
}

#[tokio::test]
async fn a_plain_tcp_listener_and_a_tls_http2_listener_serve_side_by_side() {
    let ca = Ca::new("test CA");
    let server = Server::builder()
        .transport(TcpTransport::default())
        .listen(
            GrpcTransport::default()
                .with_server_tls(server_tls(&ca))
                .unwrap(),
            "127.0.0.1:0",
        )
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let tcp = server.local_addr_of("tcp").unwrap();
    let tri = server.local_addr_of("tri").unwrap();
    assert_ne!(tcp, tri);

    let over_tcp = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(tcp.to_string())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(over_tcp.echo("plain".into()).await.unwrap(), "plain");
    let over_h2 = tls_client(tri.to_string(), trust(&ca));
    assert_eq!(over_h2.echo("secure".into()).await.unwrap(), "secure");
    server.shutdown().await;
}

#[tokio::test]
async fn the_registry_tells_consumers_which_http2_providers_need_tls() {
    let registry = registry::connect("memory://grpc-tls-announcement")
        .await
        .unwrap();
    let ca = Ca::new("test CA");
    let secure = provider(server_tls(&ca))
        .registry(registry.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = &secure.registered()[0];
    assert_eq!(url.scheme(), "tri");
    assert_eq!(url.param("tls"), Some("true"));
    let cache = |name: &str| {
        std::env::temp_dir().join(format!(
            "rpc-grpc-tls-test-{}-{name}.cache",
            std::process::id()
        ))
    };

    let consumer = ProbeClient::builder()
        .transport(
            GrpcTransport::default()
                .with_client_tls(trust(&ca))
                .unwrap(),
        )
        .registry(registry.clone())
        .registry_cache(cache("tls"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(consumer.echo("found".into()).await.unwrap(), "found");

    // A plain consumer does not use the TLS provider.
    let plain = ProbeClient::builder()
        .transport(GrpcTransport::default())
        .registry(registry)
        .registry_cache(cache("plain"))
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let result = plain.echo("lost".into()).await;
    assert!(
        result
            .as_ref()
            .is_err_and(|e| matches!(e.root(), Error::NoProvider(_) | Error::Timeout(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_http1_json_gateway_answers_over_tls() {
    let ca = Ca::new("test CA");
    let secure = tls_provider(server_tls(&ca)).await;
    let mut config = (*trust(&ca).rustls_config().unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(secure.local_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let text = common::http1_echo(stream, "over tls").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#""over tls""#), "{text}");
}

#[tokio::test]
async fn the_right_token_passes_and_missing_or_wrong_ones_are_refused_over_http2() {
    let server = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .token(Token::Fixed("s3cret".into()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let with = |token: Option<&str>| {
        let mut builder = ProbeClient::builder()
            .transport(GrpcTransport::default())
            .address(server.local_addr().to_string())
            .timeout(Duration::from_secs(10));
        if let Some(token) = token {
            builder = builder.token(token);
        }
        builder.build().unwrap()
    };
    let good = with(Some("s3cret"));
    assert_eq!(good.echo("hi".into()).await.unwrap(), "hi");
    assert_unauthorized(with(None).echo("hi".into()).await, "missing token");
    let wrong = with(Some("s3cres"));
    assert_unauthorized(wrong.echo("hi".into()).await, "invalid token");
    assert_unauthorized(wrong.echo("again".into()).await, "invalid token");
    assert_eq!(server.refusals().bad_token, 3);
    assert_eq!(good.echo("still".into()).await.unwrap(), "still");

    // The HTTP/1.1 JSON gateway takes the token as a header too, and answers 401 without.
    let json = |token: &str| {
        let body = r#"{"text": "json"}"#;
        format!(
            "POST /test.Probe/echo HTTP/1.1\r\nhost: localhost\r\n\
             content-type: application/json\r\n{token}content-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let answer = http1(server.local_addr(), json("")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let answer = http1(server.local_addr(), json("token: s3cret\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sends a whole HTTP/1.1 request on a fresh plain connection; the whole answer.
async fn http1(address: std::net::SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn consumers_take_the_token_from_the_registry_url_over_tls_http2() {
    let registry = registry::connect("memory://grpc-tls-random-token")
        .await
        .unwrap();
    let ca = Ca::new("test CA");
    let server = provider(server_tls(&ca))
        .token(Token::Random)
        .registry(registry.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let token = server.token_of("test.Probe").unwrap().to_owned();
    let url = &server.registered()[0];
    assert_eq!(url.param("token"), Some(token.as_str()));
    assert_eq!(url.param("tls"), Some("true"));

    let consumer = ProbeClient::builder()
        .transport(
            GrpcTransport::default()
                .with_client_tls(trust(&ca))
                .unwrap(),
        )
        .registry(registry)
        .registry_cache(std::env::temp_dir().join(format!(
            "rpc-grpc-tls-token-test-{}.cache",
            std::process::id()
        )))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (seen, _) = consumer.attachment("token".into()).await.unwrap();
    assert_eq!(seen.as_deref(), Some(token.as_str()));

    // The same provider called by address, over TLS but without the registry's token.
    let stranger = tls_client(server.local_addr().to_string(), trust(&ca));
    assert_unauthorized(stranger.echo("hi".into()).await, "missing token");
}

#[tokio::test]
async fn from_config_reads_the_http2_protocol_and_the_ssl_section() {
    let ca = Ca::new("test CA");
    let leaf = ca.server_leaf();
    let dir = std::env::temp_dir().join(format!("rpc-grpc-tls-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca_file) = (
        file("p.crt", &leaf.cert),
        file("p.key", &leaf.key),
        file("ca.crt", &ca.pem()),
    );
    let config = rpc_core::Config::from_toml(&format!(
        "[protocols.http2]\nssl-enabled = true\npayload = 1048576\n[ssl]\n\
         server-key-cert-chain-path = \"{cert}\"\nserver-private-key-path = \"{key}\"\n\
         client-trust-cert-collection-path = \"{ca_file}\"\nserver-name = \"localhost\"\n"
    ))
    .unwrap();
    let transport = GrpcTransport::from_config(&config).unwrap();
    assert!(rpc_core::transport::Transport::tls(&transport));
    assert_eq!(transport.config().max_message_len, 1_048_576);
    let server = Server::builder()
        .transport(transport.clone())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let probe = client(server.local_addr().to_string(), transport, Codec::Json);
    assert_eq!(probe.echo("configured".into()).await.unwrap(), "configured");

    // TLS for TCP only leaves HTTP/2 plain on the serving side.
    let tcp_only = rpc_core::Config::from_toml(&format!(
        "[protocols.tcp]\nssl-enabled = true\n[ssl]\n\
         server-key-cert-chain-path = \"{cert}\"\nserver-private-key-path = \"{key}\"\n"
    ))
    .unwrap();
    let plain = GrpcTransport::from_config(&tcp_only).unwrap();
    assert!(!rpc_core::transport::Transport::tls(&plain));

    let missing = rpc_core::Config::from_toml(&format!(
        "[protocols.http2]\nssl-enabled = true\n[ssl]\nserver-key-cert-chain-path = \"{cert}\"\n"
    ))
    .unwrap();
    let error = GrpcTransport::from_config(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("protocols.http2.ssl-enabled")
            && error.contains("ssl.server-private-key-path"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
