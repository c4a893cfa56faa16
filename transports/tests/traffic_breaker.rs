//! The consumer's circuit breaker over real TCP providers: a provider failing 60 % of its
//! calls opens its breaker, calls go to the healthy ones meanwhile, and probes close it
//! once the provider recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::client::{BreakerConfig, BreakerState, ClusterMode, RoundRobin};
use rpc_core::{Error, Server};
use transports::TcpTransport;

/// A service that may fail.
#[rpc_core::service(name = "test.Flaky")]
pub trait Flaky {
    /// Answers, or panics (a server error) on 3 of every 5 calls while failing.
    async fn work(&self) -> u64;
}

#[derive(Clone, Default)]
struct Provider {
    calls: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

impl Flaky for Provider {
    async fn work(&self) -> u64 {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) && n % 5 < 3 {
            panic!("injected failure {n}");
        }
        n
    }
}

async fn start(provider: Provider) -> Server {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(FlakyServer::new(provider))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failing_provider_opens_its_breaker_and_probes_close_it_once_it_recovers() {
    let bad = Provider::default();
    bad.failing.store(true, Ordering::SeqCst);
    let good = [Provider::default(), Provider::default()];
    let servers = [
        start(bad.clone()).await,
        start(good[0].clone()).await,
        start(good[1].clone()).await,
    ];
    let bad_address = servers[0].local_addr().to_string();
    let client = FlakyClient::builder()
        .transport(TcpTransport::default())
        .addresses(servers.iter().map(|s| s.local_addr().to_string()))
        .load_balance(RoundRobin::default())
        .cluster(ClusterMode::Failfast)
        .circuit_breaker(
            BreakerConfig::default()
                .failure_ratio(0.5)
                .window(Duration::from_secs(30), 10)
                .recovery(Duration::from_millis(800), 3),
        )
        .build()
        .unwrap();
    let traffic = client.client().traffic();
    let bad_state = || {
        traffic
            .breakers()
            .into_iter()
            .find(|b| b.provider == bad_address)
            .expect("a breaker for the failing provider")
    };

    // Round robin sends every third call to the failing provider: its breaker sees 10
    // calls (6 failed) within 30 calls and opens.
    let mut failures = 0;
    for _ in 0..45 {
        if client.work().await.is_err() {
            failures += 1;
        }
        if bad_state().state == BreakerState::Open {
            break;
        }
    }
    let state = bad_state();
    assert_eq!(state.state, BreakerState::Open, "{state:?}");
    assert_eq!(state.opened, 1);
    assert!(
        (5..=8).contains(&failures),
        "{failures} failures before it opened"
    );

    // Open: the healthy providers take every call; the failing one sees none.
    let bad_calls = bad.calls.load(Ordering::SeqCst);
    for _ in 0..30 {
        client.work().await.expect("healthy providers answer");
    }
    assert_eq!(
        bad.calls.load(Ordering::SeqCst),
        bad_calls,
        "skipped while open"
    );

    // The provider recovers; after the wait, probes go through and close the breaker.
    bad.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(900)).await;
    for _ in 0..30 {
        client.work().await.expect("every provider is healthy now");
    }
    let state = bad_state();
    assert_eq!(state.state, BreakerState::Closed, "{state:?}");
    assert_eq!((state.half_opened, state.closed), (1, 1), "{state:?}");
    assert!(
        bad.calls.load(Ordering::SeqCst) >= bad_calls + 3,
        "probes reached it"
    );
}

#[tokio::test]
async fn when_every_breaker_is_open_calls_fail_fast_and_settings_change_at_run_time() {
    let bad = Provider::default();
    bad.failing.store(true, Ordering::SeqCst);
    let server = start(bad.clone()).await;
    let client = FlakyClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .cluster(ClusterMode::Failfast)
        .circuit_breaker(
            BreakerConfig::default()
                .window(Duration::from_secs(30), 5)
                .recovery(Duration::from_secs(60), 1),
        )
        .build()
        .unwrap();
    for _ in 0..10 {
        let _ = client.work().await;
    }
    let calls = bad.calls.load(Ordering::SeqCst);
    let Err(Error::Rejected(message)) = client.work().await else {
        panic!("an open breaker fails the call fast");
    };
    assert!(
        message.contains("circuit breaker open for work on"),
        "{message}"
    );
    assert_eq!(bad.calls.load(Ordering::SeqCst), calls);

    let traffic = client.client().traffic();
    assert!(
        traffic
            .set_breaker(Some(BreakerConfig::default().failure_ratio(f64::NAN)))
            .is_err()
    );
    traffic.set_breaker(None).unwrap();
    bad.failing.store(false, Ordering::SeqCst);
    client
        .work()
        .await
        .expect("no breaker: the call goes through");
    assert_eq!(traffic.breakers()[0].state, BreakerState::Closed);
}

#[tokio::test]
async fn a_breaker_with_a_negative_threshold_is_a_configuration_error() {
    let server = start(Provider::default()).await;
    let result = FlakyClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .circuit_breaker(BreakerConfig::default().failure_ratio(-0.1))
        .build();
    let Err(Error::Config(message)) = result else {
        panic!("a negative threshold must be refused");
    };
    assert!(message.contains("failure_ratio"), "{message}");
}
