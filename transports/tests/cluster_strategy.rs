//! A cluster strategy of the user's own, given to the client builder by value, runs calls
//! against real TCP providers: it picks candidates through the method's load balancer and
//! sends attempts through the client, and methods that name a built-in mode keep it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::client::cluster::{ClusterStrategy, Invocation, StrategyFuture};
use rpc_core::client::{ClusterMode, RoundRobin};
use rpc_core::{Error, Server};
use transports::TcpTransport;

/// Quotes from a desk; its methods differ only in their cluster settings.
#[rpc_core::service(name = "test.Quotes")]
pub trait Quotes {
    /// No cluster attribute: the builder's strategy runs it.
    async fn quote(&self) -> String;
    /// Names its mode: the builder's strategy does not apply.
    #[rpc(cluster = "failfast")]
    async fn pinned(&self) -> String;
    /// Its return type has no `Default`.
    async fn checked(&self) -> Result<String, String>;
}

#[derive(Clone, Default)]
struct Counters {
    started: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Desk {
    name: &'static str,
    delay: Duration,
    counters: Counters,
}

impl Quotes for Desk {
    async fn quote(&self) -> String {
        self.counters.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.counters.finished.fetch_add(1, Ordering::SeqCst);
        self.name.to_owned()
    }

    async fn pinned(&self) -> String {
        self.name.to_owned()
    }

    async fn checked(&self) -> Result<String, String> {
        Ok(self.name.to_owned())
    }
}

async fn desk(name: &'static str, delay: Duration, counters: Counters) -> Server {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(QuotesServer::new(Desk {
            name,
            delay,
            counters,
        }))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port")
}

/// Sends to the balancer's first candidate; when it has not answered after `after`, to the
/// next one too, and takes the first success (a "hedged request"). The slower attempt is
/// dropped, which cancels it on its provider.
struct Hedged {
    after: Duration,
    calls: AtomicU64,
    hedges: AtomicU64,
}

impl ClusterStrategy for Hedged {
    fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut candidates = call.candidates();
            let Some(first) = candidates.next() else {
                return Err(Error::NoProvider(call.service().to_owned()));
            };
            let mut primary = std::pin::pin!(call.call(first, 0));
            tokio::select! {
                result = &mut primary => return result,
                () = tokio::time::sleep(self.after) => {}
            }
            let second = candidates.next().filter(|p| p.address != first.address);
            let Some(second) = second else {
                return primary.await;
            };
            self.hedges.fetch_add(1, Ordering::SeqCst);
            let mut hedge = std::pin::pin!(call.call(second, 1));
            tokio::select! {
                result = &mut primary => match result {
                    Ok(response) => Ok(response),
                    Err(_) => hedge.await,
                },
                result = &mut hedge => match result {
                    Ok(response) => Ok(response),
                    Err(_) => primary.await,
                },
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedging_strategy_given_by_value_answers_from_the_fast_provider_and_cancels_the_slow_call()
 {
    let slow_counters = Counters::default();
    let slow = desk("slow", Duration::from_millis(1_000), slow_counters.clone()).await;
    let fast = desk("fast", Duration::ZERO, Counters::default()).await;
    let hedged = Arc::new(Hedged {
        after: Duration::from_millis(50),
        calls: AtomicU64::new(0),
        hedges: AtomicU64::new(0),
    });
    let quotes = QuotesClient::builder()
        .transport(TcpTransport::default())
        .addresses([slow.local_addr().to_string(), fast.local_addr().to_string()])
        .load_balance(RoundRobin::default())
        .timeout(Duration::from_secs(5))
        .cluster_strategy(hedged.clone())
        .build()
        .expect("valid client");
    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(quotes.quote().await.ok().as_deref(), Some("fast"));
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "did not wait for the slow provider: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        hedged.calls.load(Ordering::SeqCst),
        6,
        "the strategy ran every call"
    );
    let hedges = hedged.hedges.load(Ordering::SeqCst);
    assert!(
        hedges >= 1,
        "round robin put the slow provider first at least once"
    );
    // Each hedge followed an attempt the slow provider started and did not answer in time.
    let started_there = common::eventually(Duration::from_secs(2), || {
        slow_counters.started.load(Ordering::SeqCst) == hedges
    })
    .await;
    assert!(
        started_there.is_some(),
        "slow provider started {} calls, {hedges} hedges",
        slow_counters.started.load(Ordering::SeqCst)
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        slow_counters.finished.load(Ordering::SeqCst),
        0,
        "the slow attempts were cancelled on their provider"
    );
}

/// Counts the calls it runs and hands them to a built-in mode.
struct Counting {
    inner: ClusterMode,
    calls: AtomicU64,
}

impl ClusterStrategy for Counting {
    fn invoke<'a>(&'a self, call: Invocation<'a>) -> StrategyFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.invoke(call)
    }

    fn needs_default(&self) -> bool {
        self.inner.needs_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_can_wrap_a_built_in_mode_and_a_method_naming_a_mode_keeps_it() {
    let live = desk("live", Duration::ZERO, Counters::default()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free address");
    let counting = Arc::new(Counting {
        inner: ClusterMode::Failover,
        calls: AtomicU64::new(0),
    });
    let quotes = QuotesClient::builder()
        .transport(TcpTransport::default())
        .addresses([dead.to_string(), live.local_addr().to_string()])
        .load_balance(RoundRobin::default())
        .cluster_strategy(counting.clone())
        .build()
        .expect("valid client");
    for _ in 0..10 {
        // Failover inside the wrapper gets past the dead address every time.
        assert_eq!(quotes.quote().await.ok().as_deref(), Some("live"));
    }
    assert_eq!(counting.calls.load(Ordering::SeqCst), 10);
    for _ in 0..4 {
        let _ = quotes.pinned().await;
    }
    assert_eq!(
        counting.calls.load(Ordering::SeqCst),
        10,
        "a method with #[rpc(cluster = \"failfast\")] does not run the builder's strategy"
    );
}

#[test]
fn a_strategy_that_needs_a_default_is_refused_for_a_method_without_one() {
    let built = QuotesClient::builder()
        .transport(TcpTransport::default())
        .address("127.0.0.1:1")
        .cluster_strategy(Counting {
            inner: ClusterMode::Failsafe,
            calls: AtomicU64::new(0),
        })
        .build();
    assert!(
        matches!(&built, Err(Error::Config(message))
            if message.contains("checked") && message.contains("cluster strategy")),
        "{:?}",
        built.err()
    );
    let built = QuotesClient::builder()
        .transport(TcpTransport::default())
        .address("127.0.0.1:1")
        .cluster_strategy(Counting {
            inner: ClusterMode::Failover,
            calls: AtomicU64::new(0),
        })
        .build();
    assert!(built.is_ok(), "failover needs no Default");
}
