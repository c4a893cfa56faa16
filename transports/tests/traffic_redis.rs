//! The cluster-wide rate limit on a real Redis: three providers share one budget, fall
//! back to their local share while Redis is away, and share again once it is back.
//!
//! Needs `RPC_TEST_REDIS` (host:port) and `RPC_TEST_REDIS_OUTAGE` with
//! `RPC_TEST_REDIS_OUTAGE_PID` (a server this file stops and resumes); `scripts/test.sh`
//! starts both. Without them the tests fail: they never pass by skipping. Rates are
//! measured over seconds of real traffic; the figures are printed (`--nocapture`).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::client::{ClusterMode, RoundRobin};
use rpc_core::limit::redis::{Fallback, RedisLimiter};
use rpc_core::limit::{RateLimit, Rule, Scope};
use rpc_core::{Error, Server};
use transports::TcpTransport;

/// A service whose one method is limited cluster-wide.
#[rpc_core::service(name = "test.Shared")]
pub trait Shared {
    /// Counts the calls that ran.
    async fn hit(&self) -> u64;
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Shared for Counter {
    async fn hit(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/test.sh, or `source scripts/servers.sh && \
             start_redis RPC_TEST_REDIS && start_redis RPC_TEST_REDIS_OUTAGE` first"
        )
    })
}

/// Keys of this run only: several runs may share one Redis.
fn prefix(test: &str) -> String {
    format!(
        "rpc-test:{}:{test}:{}:",
        std::process::id(),
        fastrand_suffix()
    )
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

struct Providers {
    _servers: Vec<Server>,
    limiters: Vec<Arc<RedisLimiter>>,
    ran: Counter,
    client: SharedClient,
}

/// Three providers of `test.Shared`, each with its own Redis limiter (as separate
/// processes would have), sharing 300 calls/s; a round-robin consumer.
async fn providers(redis: &str, prefix: &str) -> Providers {
    let ran = Counter::default();
    let mut servers = Vec::new();
    let mut limiters = Vec::new();
    for _ in 0..3 {
        let limiter =
            RedisLimiter::new(&format!("redis://{redis}"), prefix, Fallback::Local).unwrap();
        limiter.set_providers(3);
        let limit = RateLimit::per_second(300).burst(10).shared(limiter.clone());
        let server = Server::builder()
            .transport(TcpTransport::default())
            .add_service(SharedServer::new(ran.clone()))
            .limit(
                Scope::Method("test.Shared".into(), "hit".into()),
                Rule::rate(limit),
            )
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        servers.push(server);
        limiters.push(limiter);
    }
    let client = SharedClient::builder()
        .transport(TcpTransport::default())
        .addresses(servers.iter().map(|s| s.local_addr().to_string()))
        .load_balance(RoundRobin::default())
        .cluster(ClusterMode::Failfast)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Providers {
        _servers: servers,
        limiters,
        ran,
        client,
    }
}

/// Sends `rate` calls per second for `duration`, each on its own task; the calls
/// admitted. Any failure but a refusal fails the test.
async fn push(client: &SharedClient, rate: u64, duration: Duration) -> u64 {
    let calls = rate * duration.as_millis() as u64 / 1000;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..calls {
        ticker.tick().await;
        let client = client.clone();
        tasks.spawn(async move { client.hit().await });
    }
    let mut admitted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("no call panics") {
            Ok(_) => admitted += 1,
            Err(Error::Rejected(_)) => {}
            Err(other) => panic!("a call over the limit must be refused, got {other:?}"),
        }
    }
    admitted
}

fn within(value: u64, expected: f64, tolerance: f64) -> bool {
    (value as f64 - expected).abs() <= expected * tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_share_a_cluster_wide_limit_through_redis() {
    let redis = env("RPC_TEST_REDIS");
    let cluster = providers(&redis, &prefix("share")).await;
    let admitted = push(&cluster.client, 1000, Duration::from_secs(5)).await;
    println!("1000 calls/s for 5 s against 300/s shared: {admitted} admitted");
    assert!(
        within(admitted, 1500.0, 0.05),
        "{admitted} admitted, expected 1500 +- 5%"
    );
    assert_eq!(cluster.ran.0.load(Ordering::SeqCst), admitted);
    assert!(cluster.limiters.iter().all(|l| l.is_reachable()));
    assert_eq!(
        cluster
            .limiters
            .iter()
            .map(|l| l.fallback_decisions())
            .sum::<u64>(),
        0
    );
}

/// A server stopped with SIGSTOP; resumed (SIGCONT) when dropped, even by a failed test.
struct Stopped {
    pid: String,
}

impl Stopped {
    fn new(pid: &str) -> Stopped {
        assert!(signal("-STOP", pid), "cannot stop redis (pid {pid})");
        Stopped {
            pid: pid.to_owned(),
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !signal("-CONT", &self.pid) {
            eprintln!("cannot resume redis (pid {})", self.pid);
        }
    }
}

fn signal(signal: &str, pid: &str) -> bool {
    Command::new("kill")
        .args([signal, pid])
        .status()
        .is_ok_and(|status| status.success())
}

/// Polls `condition` every 10 ms while 1000 calls/s run for `seconds`; the calls
/// admitted, how long `condition` took to hold.
async fn while_pushing(
    cluster: &Providers,
    seconds: u64,
    condition: impl Fn(&Providers) -> bool,
) -> (u64, Option<Duration>) {
    let started = Instant::now();
    let traffic = push(&cluster.client, 1000, Duration::from_secs(seconds));
    tokio::pin!(traffic);
    let mut held = None;
    loop {
        tokio::select! {
            admitted = &mut traffic => return (admitted, held),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                if held.is_none() && condition(cluster) {
                    held = Some(started.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_the_local_share_and_recovers() {
    let redis = env("RPC_TEST_REDIS_OUTAGE");
    let pid = env("RPC_TEST_REDIS_OUTAGE_PID");
    let cluster = providers(&redis, &prefix("outage")).await;
    let shared = push(&cluster.client, 1000, Duration::from_secs(1)).await;
    println!("before the outage: {shared} admitted in 1 s");

    let stopped = Stopped::new(&pid);
    let unreachable = |c: &Providers| c.limiters.iter().all(|l| !l.is_reachable());
    let (during, fell_back) = while_pushing(&cluster, 3, unreachable).await;
    let fell_back = fell_back.expect("every provider noticed the outage");
    println!("outage: fallback after {fell_back:?}; {during} admitted in 3 s");
    assert!(
        fell_back < Duration::from_secs(1),
        "fallback took {fell_back:?}"
    );
    // The local shares (100/s each, round robin spreads evenly) add up to the limit.
    assert!(
        within(during, 900.0, 0.15),
        "{during} admitted in the outage"
    );
    let fallbacks: u64 = cluster
        .limiters
        .iter()
        .map(|l| l.fallback_decisions())
        .sum();
    assert!(fallbacks > 0);

    drop(stopped);
    let reachable = |c: &Providers| c.limiters.iter().all(|l| l.is_reachable());
    let (recovering, recovered) = while_pushing(&cluster, 2, reachable).await;
    let recovered = recovered.expect("every provider uses redis again");
    println!("redis back: shared again after {recovered:?}");
    let fallbacks: u64 = cluster
        .limiters
        .iter()
        .map(|l| l.fallback_decisions())
        .sum();
    let again = push(&cluster.client, 1000, Duration::from_secs(2)).await;
    println!("after the outage: {again} admitted in 2 s");
    assert!(
        within(again, 600.0, 0.05),
        "{again} admitted after the outage"
    );
    assert_eq!(
        cluster
            .limiters
            .iter()
            .map(|l| l.fallback_decisions())
            .sum::<u64>(),
        fallbacks,
        "no fallback once redis is back"
    );
    assert_eq!(
        cluster.ran.0.load(Ordering::SeqCst),
        shared + during + recovering + again,
        "every admitted call ran, no refused one did"
    );
}
