//! Rate and concurrency limits against a real TCP provider: a call over a limit is refused
//! with status 100 and a message naming the limit, and never reaches its handler (the
//! handlers count what ran).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::client::ClusterMode;
use rpc_core::limit::{RateLimit, Rule, Scope};
use rpc_core::{Error, Server};
use transports::TcpTransport;

/// A service whose methods carry limits.
#[rpc_core::service(name = "test.Traffic")]
pub trait Traffic {
    /// 20 permits per second, no waiting.
    #[rpc(tps = 20)]
    async fn limited(&self) -> u64;
    /// 5 permits per second; a caller may wait up to 1 s for one.
    #[rpc(tps = 5, tps_wait_ms = 1000)]
    async fn patient(&self) -> u64;
    /// No limit of its own: rules set at run time apply.
    async fn open(&self) -> u64;
    /// At most 4 running at once on the provider.
    #[rpc(executes = 4)]
    async fn busy(&self, millis: u64) -> u64;
    /// At most 4 in flight from one consumer to one provider.
    #[rpc(actives = 4)]
    async fn crowded(&self, millis: u64) -> u64;
}

#[derive(Clone, Default)]
struct Counters {
    ran: Arc<AtomicU64>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
}

impl Counters {
    fn ran(&self) -> u64 {
        self.ran.load(Ordering::SeqCst)
    }

    async fn run(&self, millis: u64) -> u64 {
        self.ran.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        millis
    }
}

impl Traffic for Counters {
    async fn limited(&self) -> u64 {
        self.run(0).await
    }

    async fn patient(&self) -> u64 {
        self.run(0).await
    }

    async fn open(&self) -> u64 {
        self.run(0).await
    }

    async fn busy(&self, millis: u64) -> u64 {
        self.run(millis).await
    }

    async fn crowded(&self, millis: u64) -> u64 {
        self.run(millis).await
    }
}

async fn provider() -> (Server, Counters) {
    let counters = Counters::default();
    let server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(TrafficServer::new(counters.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, counters)
}

fn client(server: &Server, application: &str) -> TrafficClient {
    TrafficClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .cluster(ClusterMode::Failfast)
        .application(application)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Runs `calls` of `call` at once; the successes, and the refusals' messages (any other
/// error fails the test).
async fn burst<F, Fut>(calls: usize, call: F) -> (usize, Vec<String>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, Error>> + Send + 'static,
{
    let tasks: Vec<_> = (0..calls).map(|_| tokio::spawn(call())).collect();
    let mut ok = 0;
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Rejected(message)) => refused.push(message),
            Err(other) => panic!("a call over a limit must be rejected, got {other:?}"),
        }
    }
    (ok, refused)
}

#[tokio::test]
async fn a_burst_over_tps_is_refused_with_status_100_before_the_handler() {
    let (server, counters) = provider().await;
    let client = client(&server, "shop");
    let (ok, refused) = burst(50, || {
        let client = client.clone();
        async move { client.limited().await }
    })
    .await;
    // The bucket holds 20; a few more may refill while the burst is on its way.
    assert!((20..=22).contains(&ok), "{ok} admitted");
    assert_eq!(counters.ran(), ok as u64, "refused calls never ran");
    assert_eq!(refused.len(), 50 - ok);
    for message in &refused {
        assert!(
            message.contains("test.Traffic.limited") && message.contains("20 calls per 1s"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_caller_waits_up_to_tps_wait_ms_for_a_permit() {
    let (server, counters) = provider().await;
    let client = client(&server, "shop");
    let started = std::time::Instant::now();
    let (ok, refused) = burst(12, || {
        let client = client.clone();
        async move { client.patient().await }
    })
    .await;
    // 5 at once, then one every 200 ms for the callers that can wait 1 s: 10 in all.
    assert!((10..=11).contains(&ok), "{ok} admitted, {refused:?}");
    assert_eq!(counters.ran(), ok as u64);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "the waiters waited: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn limits_change_at_run_time_through_the_server_handle() {
    let (server, counters) = provider().await;
    let client = client(&server, "shop");
    let call = || {
        let client = client.clone();
        async move { client.open().await }
    };
    assert_eq!(burst(30, call).await.0, 30, "no limit yet");
    let scope = Scope::Method("test.Traffic".into(), "open".into());
    server
        .limits()
        .set(scope.clone(), Rule::rate(RateLimit::per_second(5)))
        .unwrap();
    let (ok, refused) = burst(30, call).await;
    assert!((5..=6).contains(&ok), "{ok}");
    assert!(refused[0].contains("test.Traffic.open"), "{}", refused[0]);

    let Err(Error::Config(message)) = server
        .limits()
        .set(scope.clone(), Rule::rate(RateLimit::per_second(0)))
    else {
        panic!("a limit of 0 is a configuration error");
    };
    assert!(message.contains("0 permits"), "{message}");
    server.limits().remove(&scope);
    assert_eq!(burst(30, call).await.0, 30, "limit removed");
    assert_eq!(counters.ran(), 60 + ok as u64);
}

#[tokio::test]
async fn per_application_limits_give_each_caller_its_own_budget() {
    let (server, counters) = provider().await;
    server
        .limits()
        .set(
            Scope::Service("test.Traffic".into()),
            Rule::rate(RateLimit::per_second(5).per_application()),
        )
        .unwrap();
    let shop = client(&server, "shop");
    let bank = client(&server, "bank");
    let (shop_ok, _) = burst(15, || {
        let shop = shop.clone();
        async move { shop.open().await }
    })
    .await;
    let (bank_ok, _) = burst(15, || {
        let bank = bank.clone();
        async move { bank.open().await }
    })
    .await;
    assert!((5..=6).contains(&shop_ok), "{shop_ok}");
    assert!((5..=6).contains(&bank_ok), "{bank_ok}");
    assert_eq!(counters.ran(), (shop_ok + bank_ok) as u64);
}

#[tokio::test]
async fn executes_caps_running_calls_and_refuses_the_rest_at_once() {
    let (server, counters) = provider().await;
    let client = client(&server, "shop");
    let (ok, refused) = burst(50, || {
        let client = client.clone();
        async move { client.busy(300).await }
    })
    .await;
    assert!(counters.most_running.load(Ordering::SeqCst) <= 4);
    assert!(ok >= 4, "{ok}");
    assert_eq!(counters.ran(), ok as u64, "refused calls never ran");
    assert_eq!(ok + refused.len(), 50);
    assert!(
        refused[0].contains("executes limit of test.Traffic.busy"),
        "{}",
        refused[0]
    );
    assert_eq!(
        server
            .limits()
            .executing("test.Traffic", &TRAFFIC_DESCRIPTOR.methods[3]),
        Some(0)
    );
}

#[tokio::test]
async fn actives_makes_callers_wait_for_a_slot_to_one_provider() {
    let (server, counters) = provider().await;
    let client = client(&server, "shop");
    let (ok, refused) = burst(50, || {
        let client = client.clone();
        async move { client.crowded(20).await }
    })
    .await;
    assert_eq!((ok, refused.len()), (50, 0), "everyone waited for a slot");
    assert!(counters.most_running.load(Ordering::SeqCst) <= 4);
    assert_eq!(counters.ran(), 50);
}

#[tokio::test]
async fn actives_refuses_a_call_that_finds_no_slot_before_its_deadline() {
    let (server, counters) = provider().await;
    // Four calls with time to spare hold every slot for a second...
    let shop = client(&server, "shop");
    let holders = shop.with_timeout(Duration::from_secs(10));
    let held: Vec<_> = (0..4)
        .map(|_| {
            let client = holders.clone();
            tokio::spawn(async move { client.crowded(1000).await })
        })
        .collect();
    for _ in 0..500 {
        if counters.ran() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.ran(), 4, "the four holders are running");
    // ...so calls whose deadline comes first never find one.
    let hurried = shop.with_timeout(Duration::from_millis(300));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = hurried.clone();
            tokio::spawn(async move { client.crowded(1000).await })
        })
        .collect();
    for task in tasks {
        let error = task
            .await
            .unwrap()
            .expect_err("no slot before the deadline");
        assert!(
            error.is_timeout() || matches!(error, Error::Rejected(_)),
            "{error:?}"
        );
    }
    assert_eq!(counters.ran(), 4, "the hurried calls were never sent");
    for task in held {
        assert_eq!(task.await.unwrap().unwrap(), 1000);
    }
}

#[tokio::test]
async fn a_client_rate_limit_holds_back_its_own_calls() {
    let (server, counters) = provider().await;
    let client = TrafficClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .rate_limit(RateLimit::per_second(10))
        .build()
        .unwrap();
    let (ok, refused) = burst(30, || {
        let client = client.clone();
        async move { client.open().await }
    })
    .await;
    assert!((10..=11).contains(&ok), "{ok}");
    assert_eq!(counters.ran(), ok as u64);
    assert!(refused[0].contains("client rate limit"), "{}", refused[0]);
    let bad = TrafficClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .actives(0)
        .build();
    assert!(
        matches!(bad, Err(Error::Config(_))),
        "actives = 0 is refused"
    );
}

#[tokio::test]
async fn a_server_with_a_limit_of_zero_does_not_start() {
    let result = Server::builder()
        .transport(TcpTransport::default())
        .add_service(TrafficServer::new(Counters::default()))
        .rate_limit(RateLimit::per_second(0))
        .bind("127.0.0.1:0")
        .await;
    let Err(Error::Config(message)) = result else {
        panic!("a limit of 0 must be refused");
    };
    assert!(message.contains("0 permits"), "{message}");
}
