//! Rust client to Rust server over HTTP/2: codecs, deadlines both ways, every error kind,
//! metadata, the message limit, cancellation.

mod common;

use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use common::{
    ProbeClient, ProbeImpl, ProbeServer, Stats, eventually, grpc_client, start_grpc, wait_started,
};
use futures_util::future::BoxFuture;
use rpc_core::{Code, Codec, Error, MessageKind, Response, Server, ServerRequest, TimeoutStage};
use transports::{GrpcConfig, GrpcTransport};

#[tokio::test]
async fn calls_round_trip_in_every_codec() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    for codec in Codec::SERDE {
        let probe = grpc_client(server.local_addr(), codec);
        assert_eq!(
            probe.echo(format!("hi {codec}")).await.unwrap(),
            format!("hi {codec}")
        );
        // Many calls at once share the one connection, each on its own stream.
        let calls = (0..50).map(|i| {
            let probe = probe.clone();
            async move { probe.echo(i.to_string()).await }
        });
        let answers = futures_util::future::join_all(calls).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), i.to_string());
        }
    }
}

#[tokio::test]
async fn attachments_travel_as_metadata() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let probe = grpc_client(server.local_addr(), Codec::Json);
    let untyped = rpc_core::Client::builder("test.Probe")
        .transport(GrpcTransport::default())
        .address(server.local_addr().to_string())
        .build()
        .unwrap()
        .with_attachment("trace-id", "t-42")
        .with_attachment("grpc-timeout", "1n");
    static ATTACHMENT: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("attachment");
    let (value, peer): (Option<String>, Option<String>) =
        untyped.call(&ATTACHMENT, &("trace-id",)).await.unwrap();
    assert_eq!(value.as_deref(), Some("t-42"));
    assert!(peer.is_some_and(|p| p.starts_with("127.0.0.1:")));
    // A reserved name is not sent as metadata (nor did it shorten the deadline above).
    let (forged, _) = probe.attachment("grpc-timeout".into()).await.unwrap();
    assert_eq!(forged, None);
}

#[tokio::test]
async fn the_handler_sends_attachments_back_as_metadata() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    let probe = grpc_client(server.local_addr(), Codec::Json);
    let reply = common::reply_attachments(&probe, "tenant").await;
    assert_eq!(reply.get("x-asked"), Some("tenant"));
    // Protocol headers of the answer (content-type, grpc-status) are not attachments.
    assert_eq!(reply.len(), 1, "{reply:?}");
}

#[tokio::test]
async fn the_deadline_travels_and_stops_the_handler() {
    let (server, stats) = start_grpc(GrpcConfig::default()).await;
    let probe = grpc_client(server.local_addr(), Codec::Bincode);
    // The method's 100 ms timeout: the provider stops the handler at the deadline.
    let error = probe.sleep_briefly(5_000).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    wait_started(&stats, 1).await;
    let aborted = eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1).await;
    assert!(aborted.is_some(), "the provider did not stop the handler");
    assert_eq!(Stats::get(&stats.finished), 0);
}

#[tokio::test]
async fn a_provider_timeout_names_the_handler_stage() {
    let (server, _) = start_grpc(GrpcConfig::default()).await;
    // The provider's deadline comes from grpc-timeout; the consumer waits a bit longer
    // for the answer, so it is the provider's DEADLINE_EXCEEDED that arrives.
    let slow = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .layer(tower::layer::layer_fn(ShortenDeadline))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let probe = grpc_client(slow.local_addr(), Codec::Json);
    let error = probe.sleep(2_000).await.unwrap_err();
    assert!(
        matches!(error.timeout_stage(), Some(TimeoutStage::Handler { .. })),
        "{error}"
    );
    drop(server);
}

/// Gives every call 50 ms on the provider, whatever the caller's deadline.
#[derive(Clone)]
struct ShortenDeadline<S>(S);

impl<S> tower::Service<ServerRequest> for ShortenDeadline<S>
where
    S: tower::Service<ServerRequest, Response = Response, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: ServerRequest) -> Self::Future {
        let call = self.0.call(req);
        Box::pin(async move {
            match tokio::time::timeout(Duration::from_millis(50), call).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(Duration::from_millis(50))),
            }
        })
    }
}

/// Fails each call with the error its `fail` attachment names.
#[derive(Clone)]
struct FailAs<S>(S);

fn error_named(name: &str) -> Option<Error> {
    Some(match name {
        "codec" => Error::Codec {
            codec: "json",
            message: "bad args".into(),
        },
        "protocol" => Error::Protocol("bad head".into()),
        "too-large" => {
            Error::request_too_large(9_000_000, 4_194_304, "GrpcConfig::max_message_len")
        }
        "rejected" => Error::Rejected("too busy".into()),
        "handler" => Error::Handler("handler panicked: boom".into()),
        "cancelled" => Error::Cancelled,
        "service" => Error::ServiceNotFound {
            service: "x.Y".into(),
            version: String::new(),
        },
        "client-error" => Error::Remote {
            code: Code::ClientError,
            message: "relayed".into(),
        },
        "bad-response" => Error::Remote {
            code: Code::BadResponse,
            message: "relayed".into(),
        },
        "unknown" => Error::Remote {
            code: Code::Unknown,
            message: "relayed".into(),
        },
        _ => return None,
    })
}

impl<S> tower::Service<ServerRequest> for FailAs<S>
where
    S: tower::Service<ServerRequest, Response = Response, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: ServerRequest) -> Self::Future {
        match req.context.attachment("fail").and_then(error_named) {
            Some(error) => Box::pin(async move { Err(error) }),
            None => Box::pin(self.0.call(req)),
        }
    }
}

#[tokio::test]
async fn every_error_kind_comes_back_as_the_same_kind() {
    let server = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .layer(tower::layer::layer_fn(FailAs))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = rpc_core::Client::builder("test.Probe")
        .transport(GrpcTransport::default())
        .address(server.local_addr().to_string())
        .cluster(rpc_core::client::ClusterMode::Failfast)
        .build()
        .unwrap();
    static ECHO: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("echo");
    let fail = |name: &str| {
        let client = client.with_attachment("fail", name);
        async move { client.call::<_, String>(&ECHO, &("x",)).await.unwrap_err() }
    };
    let remote = |error: &Error| match error.root() {
        Error::Remote { code, message } => Some((*code, message.clone())),
        _ => None,
    };
    assert_eq!(
        remote(&fail("codec").await),
        Some((Code::Codec, "json codec error: bad args".into()))
    );
    assert_eq!(
        remote(&fail("protocol").await).map(|r| r.0),
        Some(Code::BadRequest)
    );
    assert_eq!(
        remote(&fail("service").await).map(|r| r.0),
        Some(Code::NotFound)
    );
    assert_eq!(
        remote(&fail("handler").await),
        Some((Code::ServiceError, "handler panicked: boom".into()))
    );
    assert_eq!(
        remote(&fail("cancelled").await).map(|r| r.0),
        Some(Code::ServerError)
    );
    assert_eq!(
        remote(&fail("client-error").await),
        Some((Code::ClientError, "relayed".into()))
    );
    assert_eq!(
        remote(&fail("bad-response").await).map(|r| r.0),
        Some(Code::BadResponse)
    );
    assert_eq!(
        remote(&fail("unknown").await).map(|r| r.0),
        Some(Code::Unknown)
    );
    let rejected = fail("rejected").await;
    assert!(
        matches!(rejected.root(), Error::Rejected(m) if m == "too busy"),
        "{rejected}"
    );
    let too_large = fail("too-large").await;
    assert!(
        matches!(
            too_large.root(),
            Error::MessageTooLarge {
                size: 9_000_000,
                limit: 4_194_304,
                kind: MessageKind::Request,
                ..
            }
        ),
        "{too_large}"
    );
    // The real ones, without the layer's help.
    static NOPE: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("nope");
    let missing = client.call::<_, String>(&NOPE, &("x",)).await.unwrap_err();
    assert!(
        matches!(missing.root(), Error::Remote { code: Code::NotFound, message } if message.contains("nope")),
        "{missing}"
    );
    static EXPLODE: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("explode");
    let panicked = client
        .call::<_, u32>(&EXPLODE, &("kaboom",))
        .await
        .unwrap_err();
    assert!(
        matches!(panicked.root(), Error::Remote { code: Code::ServiceError, message } if message.contains("kaboom")),
        "{panicked}"
    );
    let json = rpc_core::Client::builder("test.Probe")
        .transport(GrpcTransport::default())
        .address(server.local_addr().to_string())
        .codec(Codec::Json)
        .build()
        .unwrap();
    let bad_args = json
        .call::<_, String>(&ECHO, &(1u8, 2u8))
        .await
        .unwrap_err();
    assert!(
        matches!(
            bad_args.root(),
            Error::Remote {
                code: Code::Codec,
                ..
            }
        ),
        "{bad_args}"
    );
}

#[tokio::test]
async fn a_codec_the_server_does_not_enable_is_a_bad_request() {
    let server = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .codecs([Codec::Bincode])
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let probe = grpc_client(server.local_addr(), Codec::Json);
    let error = probe.echo("x".into()).await.unwrap_err();
    assert!(
        matches!(error.root(), Error::Remote { code: Code::BadRequest, message } if message.contains("not enabled")),
        "{error}"
    );
}

#[tokio::test]
async fn messages_over_the_limit_fail_on_the_receiving_side_only() {
    let (server, stats) = start_grpc(GrpcConfig::default().max_message_len(1024)).await;
    let probe = grpc_client(server.local_addr(), Codec::Bincode);
    let error = probe.echo("x".repeat(4096)).await.unwrap_err();
    assert!(
        matches!(
            error.root(),
            Error::MessageTooLarge {
                kind: MessageKind::Request,
                limit: 1024,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("GrpcConfig::max_message_len"),
        "{error}"
    );
    // The consumer's own limit applies to the answer.
    let small = ProbeClient::builder()
        .transport(GrpcTransport::new(
            GrpcConfig::default().max_message_len(100),
        ))
        .address(server.local_addr().to_string())
        .build()
        .unwrap();
    let error = small.echo("y".repeat(500)).await.unwrap_err();
    assert!(
        matches!(
            error.root(),
            Error::MessageTooLarge {
                kind: MessageKind::Response,
                limit: 100,
                ..
            }
        ),
        "{error}"
    );
    // The connection is still fine.
    assert_eq!(probe.echo("ok".into()).await.unwrap(), "ok");
    assert_eq!(Stats::get(&stats.started), 0);
}

#[tokio::test]
async fn dropping_a_call_cancels_its_handler() {
    let (server, stats) = start_grpc(GrpcConfig::default()).await;
    let probe = grpc_client(server.local_addr(), Codec::Bincode);
    let call = common::spawn_sleep(&probe, 10_000);
    wait_started(&stats, 1).await;
    call.abort();
    let aborted = eventually(Duration::from_secs(5), || Stats::get(&stats.aborted) == 1).await;
    assert!(aborted.is_some(), "the handler was not cancelled");
    assert_eq!(Stats::get(&stats.finished), 0);
    // The connection carries on.
    assert_eq!(probe.echo("after".into()).await.unwrap(), "after");
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable_and_a_restarted_one_is_found_again() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let probe = ProbeClient::builder()
        .transport(GrpcTransport::new(GrpcConfig::default().reconnect_backoff(
            Duration::from_millis(50),
            Duration::from_millis(200),
        )))
        .address(address.to_string())
        .cluster(rpc_core::client::ClusterMode::Failfast)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let error = probe.echo("x".into()).await.unwrap_err();
    assert!(matches!(error.root(), Error::Unavailable { .. }), "{error}");
    let server = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind(&address.to_string())
        .await
        .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(text) = probe.echo("back".into()).await {
            answer = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer.as_deref(), Some("back"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_running_calls() {
    let (server, stats) = start_grpc(GrpcConfig::default()).await;
    let probe = grpc_client(server.local_addr(), Codec::Json);
    let call = common::spawn_sleep(&probe, 200);
    wait_started(&stats, 1).await;
    server.shutdown().await;
    assert_eq!(call.await.unwrap().unwrap(), 200);
}
