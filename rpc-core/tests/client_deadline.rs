//! Who ends a call at its deadline. A transport that promises to
//! ([`Transport::enforces_deadline`]) is trusted with it and its own timeout error reaches
//! the caller; without that promise, or with anything the promise does not cover in
//! between (provider layers, a custom cluster strategy), the client arms its own timer,
//! so a channel that never answers still cannot hang a call.

use std::time::{Duration, Instant};

use rpc_core::__private::BoxFuture;
use rpc_core::client::cluster::{ClusterStrategy, Invocation, StrategyFuture};
use rpc_core::server::Dispatcher;
use rpc_core::{Channel, Error, Listener, Request, Response, Transport};
use tower::util::BoxCloneSyncService;

/// A trivial service to call.
#[rpc_core::service(name = "test.Slow")]
pub trait Slow {
    /// Never answered by the transports below.
    async fn wait(&self, tag: u32) -> u32;
    /// The same, safe to retry.
    #[rpc(idempotent)]
    async fn read(&self, tag: u32) -> u32;
}

/// Attempts the `FailLate` channels received.
static LATE_ATTEMPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a channel keeps the deadline itself, and how.
#[derive(Clone, Copy)]
enum Channels {
    /// Never answers, and says it enforces the deadline (a broken promise, to see
    /// whether the client trusts it).
    HangButPromise,
    /// Never answers and promises nothing.
    Hang,
    /// Fails with its own staged timeout at the deadline, and says so.
    OwnTimeout,
    /// Fails with a transport error (which an idempotent call may retry) just after the
    /// deadline, and says it enforces it.
    FailLate,
}

struct Scripted(Channels);

impl Transport for Scripted {
    fn protocol(&self) -> &'static str {
        "scripted"
    }

    fn enforces_deadline(&self) -> bool {
        !matches!(self.0, Channels::Hang)
    }

    fn connect(&self, address: &str) -> rpc_core::Result<Channel> {
        let (behaviour, address) = (self.0, address.to_owned());
        Ok(BoxCloneSyncService::new(tower::service_fn(
            move |request: Request| {
                let address = address.clone();
                async move {
                    match behaviour {
                        Channels::OwnTimeout => {
                            tokio::time::sleep_until(request.deadline.into()).await;
                            Err(Error::timeout_awaiting_answer(request.timeout, address))
                        }
                        Channels::FailLate => {
                            LATE_ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let late = request.deadline + Duration::from_millis(10);
                            tokio::time::sleep_until(late.into()).await;
                            Err(Error::transport("connection reset"))
                        }
                        Channels::Hang | Channels::HangButPromise => {
                            std::future::pending::<rpc_core::Result<Response>>().await
                        }
                    }
                }
            },
        )))
    }

    fn bind(
        &self,
        _address: &str,
        _dispatcher: Dispatcher,
    ) -> BoxFuture<'static, rpc_core::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(Error::Config("scripted transports do not bind".into())) })
    }
}

const TIMEOUT: Duration = Duration::from_millis(200);

fn builder(channels: Channels) -> rpc_core::ClientBuilder<SlowClient> {
    SlowClient::builder()
        .transport(Scripted(channels))
        .address("slow:1")
        .timeout(TIMEOUT)
}

/// The call's error, checking it came at about the deadline (generously: CI is noisy).
async fn error_of(client: &SlowClient) -> Error {
    let started = Instant::now();
    let bound = tokio::time::timeout(Duration::from_secs(10), client.wait(1)).await;
    let error = bound
        .expect("the call must end by its deadline")
        .expect_err("nothing answers");
    assert!(started.elapsed() >= TIMEOUT, "{:?}", started.elapsed());
    error
}

#[tokio::test]
async fn a_transport_that_enforces_the_deadline_gives_its_own_timeout() {
    let client = builder(Channels::OwnTimeout).build().unwrap();
    let error = error_of(&client).await;
    assert!(
        matches!(
            error.timeout_stage(),
            Some(rpc_core::TimeoutStage::AwaitingAnswer { address }) if address == "slow:1"
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_transport_that_promises_nothing_is_bounded_by_the_clients_timer() {
    let client = builder(Channels::Hang).build().unwrap();
    let error = error_of(&client).await;
    assert!(
        matches!(error, Error::Timeout(budget) if budget == TIMEOUT),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_promise_is_trusted_only_when_nothing_else_can_wait() {
    // A provider layer could wait for anything: the client keeps its own timer, so even a
    // transport that breaks its promise cannot hang the call.
    let with_layer = builder(Channels::HangButPromise)
        .provider_layer(tower::layer::util::Identity::new())
        .build()
        .unwrap();
    let error = error_of(&with_layer).await;
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");

    // The same for a custom cluster strategy.
    let with_strategy = builder(Channels::HangButPromise)
        .cluster_strategy(FirstProvider)
        .build()
        .unwrap();
    let error = error_of(&with_strategy).await;
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");

    // With nothing in between the promise is trusted: the client arms no timer, and the
    // broken promise shows as a call still running well past its deadline.
    let trusted = builder(Channels::HangButPromise).build().unwrap();
    let still_running = tokio::time::timeout(4 * TIMEOUT, trusted.wait(1)).await;
    assert!(still_running.is_err(), "{still_running:?}");
}

/// A custom strategy: the first provider, once.
struct FirstProvider;

impl ClusterStrategy for FirstProvider {
    fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a> {
        Box::pin(async move {
            let provider = call
                .candidates()
                .next()
                .ok_or_else(|| Error::NoProvider(call.service().to_string()))?;
            call.call(provider, 0).await
        })
    }
}

#[tokio::test]
async fn failover_does_not_retry_past_the_deadline() {
    let client = builder(Channels::FailLate).retries(2).build().unwrap();
    let started = Instant::now();
    let error = client.read(1).await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(budget) if budget == TIMEOUT),
        "{error:?}"
    );
    assert_eq!(LATE_ATTEMPTS.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(started.elapsed() < 10 * TIMEOUT, "{:?}", started.elapsed());
}
