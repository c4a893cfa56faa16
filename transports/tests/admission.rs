//! The provider's admission path (core's `Session`) as the TCP transport uses it: every
//! call is answered, and a provider stack that is not ready never stops the connection
//! from reading.

mod common;

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{ProbeImpl, ProbeServer, Stats, client, wait_started};
use rpc_core::{Codec, Error, Response, Server, ServerRequest};
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service};
use transports::TcpTransport;

/// A provider filter whose `poll_ready` always fails.
#[derive(Clone)]
struct Closed<S> {
    inner: S,
}

struct ClosedLayer;

impl<S> Layer<S> for ClosedLayer {
    type Service = Closed<S>;

    fn layer(&self, inner: S) -> Closed<S> {
        Closed { inner }
    }
}

impl<S> Service<ServerRequest> for Closed<S>
where
    S: Service<ServerRequest, Response = Response, Error = Error>,
{
    type Response = Response;
    type Error = Error;
    type Future = S::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Err(Error::Rejected("closed for maintenance".into())))
    }

    fn call(&mut self, req: ServerRequest) -> S::Future {
        self.inner.call(req)
    }
}

async fn serve_with<L>(layer: L) -> (Server, std::sync::Arc<Stats>)
where
    L: Layer<rpc_core::server::ProviderService> + Send + Sync + 'static,
    L::Service:
        Service<ServerRequest, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
    <L::Service as Service<ServerRequest>>::Future: Send + 'static,
{
    let probe = ProbeImpl::default();
    let stats = probe.stats.clone();
    let server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(probe))
        .layer(layer)
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    (server, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_ready_error_answers_the_call_with_that_error_at_once() {
    let (server, stats) = serve_with(ClosedLayer).await;
    let probe = client(server.local_addr(), Codec::Json);
    let started = Instant::now();
    let result = probe.echo("anyone?".into()).await;
    eprintln!("refused in {:?}", started.elapsed());
    assert!(
        matches!(&result, Err(Error::Rejected(message)) if message == "closed for maintenance"),
        "{result:?}"
    );
    // Answered, not left to the caller's 10 s timeout.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(Stats::get(&stats.started), 0, "the handler never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_is_read_while_a_concurrency_limit_is_held_and_frees_it() {
    let (server, stats) = serve_with(ConcurrencyLimitLayer::new(1)).await;
    let probe = client(server.local_addr(), Codec::Bincode);

    let long = common::spawn_sleep(&probe, 3_000);
    wait_started(&stats, 1).await;
    // The second call waits for the limit on its own task, so the connection keeps
    // reading: the cancel event of the first call gets through and frees the permit.
    let second = common::spawn_sleep(&probe, 10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cancelled = Instant::now();
    long.abort();
    let result = second.await.expect("task ran");
    let waited = cancelled.elapsed();
    eprintln!("second call done {waited:?} after the first was cancelled");
    assert_eq!(result.ok(), Some(10));
    assert!(
        waited < Duration::from_millis(2_500),
        "the second call waited {waited:?}, as if the 3 s handler still held the limit"
    );
    assert_eq!(
        Stats::get(&stats.aborted),
        1,
        "the cancelled handler was aborted"
    );
    assert_eq!(
        Stats::get(&stats.finished),
        1,
        "only the short call finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_capacity_past_its_deadline_is_refused_not_lost() {
    let (server, stats) = serve_with(ConcurrencyLimitLayer::new(1)).await;
    let probe = client(server.local_addr(), Codec::Bincode);
    let long = common::spawn_sleep(&probe, 1_500);
    wait_started(&stats, 1).await;
    let started = Instant::now();
    let result = probe
        .with_timeout(Duration::from_millis(200))
        .sleep(1)
        .await;
    assert!(result.is_err(), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(long.await.expect("task ran").ok(), Some(1_500));
    assert_eq!(Stats::get(&stats.started), 1, "the refused call never ran");
}
