//! User tower layers on both pipelines: consumer filters and provider filters.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ProbeClient, ProbeImpl, ProbeServer};
use futures_util::future::BoxFuture;
use rpc_core::client::ConsumerService;
use rpc_core::server::ProviderService;
use rpc_core::{Codec, Error, Request, Response, Server, ServerRequest};
use tower::layer::layer_fn;
use tower::{Service, ServiceExt};
use transports::TcpTransport;

/// A consumer filter that appends `name` to the `trail` attachment and counts calls.
fn trail_layer(
    name: &'static str,
    calls: Arc<AtomicUsize>,
) -> impl tower::Layer<ConsumerService, Service = Trail> + Send + Sync + 'static {
    layer_fn(move |inner| Trail {
        name,
        calls: calls.clone(),
        inner,
    })
}

#[derive(Clone)]
struct Trail {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    inner: ConsumerService,
}

impl Service<Request> for Trail {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let trail = match req.attachments.get("trail") {
            Some(before) => format!("{before},{}", self.name),
            None => self.name.to_owned(),
        };
        req.attachments.insert("trail", trail);
        Box::pin(self.inner.clone().oneshot(req))
    }
}

/// A provider filter refusing every call to `method`.
#[derive(Clone)]
struct Refuse {
    method: &'static str,
    inner: ProviderService,
}

impl Service<ServerRequest> for Refuse {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ServerRequest) -> Self::Future {
        if req.method.descriptor().name == self.method {
            let refused = format!("{} is switched off", self.method);
            return Box::pin(async move { Err(Error::Rejected(refused)) });
        }
        Box::pin(self.inner.clone().oneshot(req))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_layers_see_every_call_outermost_first() {
    let server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let outer = Arc::new(AtomicUsize::new(0));
    let inner = Arc::new(AtomicUsize::new(0));
    let probe = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .codec(Codec::Json)
        .timeout(Duration::from_secs(10))
        .layer(trail_layer("outer", outer.clone()))
        .layer(trail_layer("inner", inner.clone()))
        .build()
        .unwrap();
    let (trail, _) = probe.attachment("trail".into()).await.unwrap();
    assert_eq!(trail.as_deref(), Some("outer,inner"));
    probe.echo("x".into()).await.unwrap();
    assert_eq!(
        (outer.load(Ordering::SeqCst), inner.load(Ordering::SeqCst)),
        (2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_layer_can_refuse_calls_before_the_handler_runs() {
    let probe_impl = ProbeImpl::default();
    let stats = probe_impl.stats.clone();
    let server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(probe_impl))
        .layer(layer_fn(|inner| Refuse {
            method: "sleep",
            inner,
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let probe = common::client(server.local_addr(), Codec::Bincode);
    let refused = probe.sleep(10).await;
    assert!(
        matches!(&refused, Err(Error::Rejected(message)) if message == "sleep is switched off"),
        "{refused:?}"
    );
    assert_eq!(
        common::Stats::get(&stats.started),
        0,
        "the handler must not run"
    );
    assert_eq!(
        probe.echo("other methods pass".into()).await.unwrap(),
        "other methods pass"
    );
}
