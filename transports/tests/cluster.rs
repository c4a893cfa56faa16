//! The consumer's cluster stage over real TCP providers: failover and failfast read from
//! `#[rpc(...)]`, providers picked per attempt, connections shared per address, and the
//! provider layer that sees where each attempt went.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rpc_core::client::FromClient;
use rpc_core::client::{LoadBalance, Providers, RoundRobin, Tried};
use rpc_core::{
    Client, ClientBuilder, Codec, Error, MethodDescriptor, Request, Response, Server,
    ServiceDescriptor,
};
use tower::{Layer, Service};
use transports::{TcpConfig, TcpTransport};

/// A service whose methods carry cluster settings.
#[rpc_core::service(name = "test.Ledger")]
pub trait Ledger {
    /// Safe to repeat: failover may retry it anywhere.
    #[rpc(idempotent, retries = 3, cluster = "failover")]
    async fn balance(&self, account: String) -> u64;
    /// Never retried.
    #[rpc(cluster = "failfast")]
    async fn charge(&self, account: String, amount: u64) -> u64;
    /// Its second argument keys consistent hashing.
    #[rpc(hash_arg = "account")]
    async fn statement(&self, month: u32, account: String) -> String;
    /// Asks two providers at once; the first answer wins.
    #[rpc(cluster = "forking")]
    async fn quote(&self) -> String;
    /// Asks three providers at once.
    #[rpc(cluster = "forking", forks = 3)]
    async fn quote_widely(&self) -> String;
    /// Tells every provider.
    #[rpc(cluster = "broadcast")]
    async fn notify(&self, n: u32) -> u32;
    /// Best effort: a failure gives 0.
    #[rpc(cluster = "failsafe", timeout_ms = 200)]
    async fn audit(&self, n: u32) -> u32;
    /// A failure gives 0 now and is retried in the background.
    #[rpc(cluster = "failback")]
    async fn settle(&self, n: u32) -> u32;
    /// The first reachable provider answers.
    #[rpc(cluster = "available")]
    async fn ping(&self) -> String;
    /// Not idempotent, default cluster (failover): must never run twice.
    #[rpc(timeout_ms = 300)]
    async fn transfer(&self, amount: u64) -> u64;
}

#[derive(Clone, Default)]
struct Counters {
    quotes_started: Arc<AtomicU64>,
    quotes_finished: Arc<AtomicU64>,
    notified: Arc<AtomicU64>,
    settle_attempts: Arc<AtomicU64>,
    /// `settle` fails while fewer attempts than this were made.
    settle_fails: Arc<AtomicU64>,
    settled: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Books {
    name: &'static str,
    delay: Duration,
    counters: Counters,
}

impl Ledger for Books {
    async fn balance(&self, _account: String) -> u64 {
        100
    }

    async fn charge(&self, _account: String, amount: u64) -> u64 {
        100 - amount
    }

    async fn statement(&self, month: u32, account: String) -> String {
        format!("{account}/{month} from {}", self.name)
    }

    async fn quote(&self) -> String {
        self.counters.quotes_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.counters.quotes_finished.fetch_add(1, Ordering::SeqCst);
        self.name.to_owned()
    }

    async fn quote_widely(&self) -> String {
        self.quote().await
    }

    async fn notify(&self, n: u32) -> u32 {
        self.counters.notified.fetch_add(1, Ordering::SeqCst);
        n
    }

    async fn audit(&self, n: u32) -> u32 {
        tokio::time::sleep(self.delay).await;
        n + 1
    }

    async fn ping(&self) -> String {
        self.name.to_owned()
    }

    async fn transfer(&self, amount: u64) -> u64 {
        self.counters.quotes_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        amount
    }

    async fn settle(&self, n: u32) -> u32 {
        let attempt = self.counters.settle_attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt <= self.counters.settle_fails.load(Ordering::SeqCst) {
            panic!("ledger busy (attempt {attempt})");
        }
        self.counters.settled.fetch_add(1, Ordering::SeqCst);
        n
    }
}

async fn provider(name: &'static str, config: TcpConfig) -> Server {
    provider_with(name, config, Duration::ZERO, Counters::default()).await
}

async fn provider_with(
    name: &'static str,
    config: TcpConfig,
    delay: Duration,
    counters: Counters,
) -> Server {
    Server::builder()
        .transport(TcpTransport::new(config))
        .add_service(LedgerServer::new(Books {
            name,
            delay,
            counters,
        }))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port")
}

/// An address nothing listens on.
fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// A client whose providers are a dead address and `live`, in that order, taken in turn.
fn dead_then(live: &Server) -> LedgerClient {
    LedgerClient::builder()
        .transport(TcpTransport::default())
        .address(dead_address().to_string())
        .address(live.local_addr().to_string())
        .load_balance(RoundRobin::default())
        .build()
        .expect("valid client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_one_dead_address_answers_every_call() {
    let live = provider("live", TcpConfig::default()).await;
    let ledger = dead_then(&live);
    for _ in 0..20 {
        assert_eq!(ledger.balance("a".into()).await.ok(), Some(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failfast_takes_one_attempt_and_reports_its_error() {
    let live = provider("live", TcpConfig::default()).await;
    let ledger = dead_then(&live);
    let mut failed = 0;
    for _ in 0..20 {
        match ledger.charge("a".into(), 1).await {
            Ok(left) => assert_eq!(left, 99),
            Err(Error::Unavailable { .. }) => failed += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // The first call meets the dead address; for a second after that the cluster passes
    // over it while the live provider answers.
    assert_eq!(failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_active_does_not_prefer_dead_providers() {
    // Four dead addresses and one live provider: the dead ones never have calls in flight,
    // so least-active would keep choosing them if refused connections were not remembered.
    let live = provider("live", TcpConfig::default()).await;
    let mut builder = LedgerClient::builder()
        .transport(TcpTransport::default())
        .load_balance_by_name("leastactive")
        .cluster(rpc_core::client::ClusterMode::Failfast);
    for _ in 0..4 {
        builder = builder.address(dead_address().to_string());
    }
    let ledger = builder
        .address(live.local_addr().to_string())
        .build()
        .expect("valid client");
    let mut failed = 0u64;
    let started = Instant::now();
    for _ in 0..100 {
        match ledger.charge("a".into(), 1).await {
            Ok(left) => assert_eq!(left, 99),
            Err(Error::Unavailable { .. }) => failed += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // A refused address is passed over for a second, then gets another chance: each dead
    // address is met at most once per started second (a slow machine takes longer).
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        failed <= 4 * seconds,
        "{failed} of 100 calls met a dead provider in {seconds} s"
    );
}

/// Records the provider and attempt number each call's attempts went to.
#[derive(Clone, Default)]
struct Seen {
    attempts: Arc<Mutex<Vec<(String, u32)>>>,
}

#[derive(Clone)]
struct Recording<S> {
    seen: Seen,
    inner: S,
}

impl<S> Layer<S> for Seen {
    type Service = Recording<S>;

    fn layer(&self, inner: S) -> Recording<S> {
        Recording {
            seen: self.clone(),
            inner,
        }
    }
}

impl<S: Service<Request, Response = Response, Error = Error>> Service<Request> for Recording<S> {
    type Response = Response;
    type Error = Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> S::Future {
        let provider = req.provider.as_deref().unwrap_or("none").to_owned();
        self.seen
            .attempts
            .lock()
            .expect("not poisoned")
            .push((provider, req.attempt));
        self.inner.call(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_layer_sees_which_provider_each_attempt_went_to() {
    let one = provider("one", TcpConfig::default()).await;
    let two = provider("two", TcpConfig::default()).await;
    let dead = dead_address().to_string();
    let seen = Seen::default();
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses([
            dead.clone(),
            one.local_addr().to_string(),
            two.local_addr().to_string(),
        ])
        .provider_layer(seen.clone())
        .load_balance(RoundRobin::default())
        .build()
        .expect("valid client");
    for _ in 0..6 {
        assert_eq!(ledger.balance("a".into()).await.ok(), Some(100));
    }
    let attempts = seen.attempts.lock().expect("not poisoned").clone();
    let went_to = |address: &str| attempts.iter().filter(|(p, _)| p == address).count();
    assert!(went_to(&one.local_addr().to_string()) >= 2, "{attempts:?}");
    assert!(went_to(&two.local_addr().to_string()) >= 2, "{attempts:?}");
    // Calls that met the dead address first were retried: attempt 1 on a live provider.
    assert!(
        attempts
            .iter()
            .any(|(p, attempt)| p == &dead && *attempt == 0),
        "{attempts:?}"
    );
    assert!(
        attempts
            .iter()
            .any(|(p, attempt)| p != &dead && *attempt == 1),
        "{attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_on_one_transport_share_one_connection() {
    // One slot only: a second connection would be refused, since the first has spoken.
    let transport = TcpTransport::default();
    let probe_server = Server::builder()
        .transport(TcpTransport::new(TcpConfig::default().max_connections(1)))
        .add_service(common::ProbeServer::new(common::ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let build_probe = || {
        common::ProbeClient::builder()
            .transport(transport.clone())
            .address(probe_server.local_addr().to_string())
            .build()
            .expect("valid client")
    };
    let first = build_probe();
    let second = build_probe();
    let (_, first_peer) = first
        .attachment("k".into())
        .await
        .expect("first client served");
    let (_, second_peer) = second
        .attachment("k".into())
        .await
        .expect("second client served");
    assert!(first_peer.is_some());
    assert_eq!(
        first_peer, second_peer,
        "both calls came over one connection"
    );
}

/// A balancer that records the hash key of each request and picks the first provider.
#[derive(Default, Clone)]
struct KeyRecorder {
    keys: Arc<Mutex<Vec<Option<u64>>>>,
}

impl LoadBalance for KeyRecorder {
    fn select(&self, _providers: &Providers, request: &Request, _tried: &Tried) -> Option<usize> {
        self.keys
            .lock()
            .expect("not poisoned")
            .push(request.hash_key);
        Some(0)
    }

    fn needs_hash_key(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stub_hashes_the_hash_arg_before_encoding_for_a_balancer_that_asks() {
    let server = provider("p", TcpConfig::default()).await;
    let recorder = KeyRecorder::default();
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .load_balance(recorder.clone())
        .codec(Codec::Json)
        .build()
        .expect("valid client");
    ledger.statement(1, "alice".into()).await.expect("served");
    ledger.statement(2, "alice".into()).await.expect("served");
    ledger.statement(1, "bob".into()).await.expect("served");
    let keys = recorder.keys.lock().expect("not poisoned").clone();
    assert!(keys.iter().all(Option::is_some), "{keys:?}");
    assert_eq!(
        keys[0], keys[1],
        "same account, same key, whatever the month"
    );
    assert_ne!(keys[0], keys[2], "another account, another key");
}

#[test]
fn an_unknown_balancer_name_in_a_hand_written_descriptor_fails_when_the_client_is_built() {
    // `#[rpc(loadbalance = "fastest")]` no longer compiles; a descriptor written by hand
    // still meets the same check at build time.
    static TYPO: ServiceDescriptor = ServiceDescriptor {
        name: "test.Typo",
        version: "",
        methods: &[MethodDescriptor {
            loadbalance: Some("fastest"),
            ..MethodDescriptor::new("go")
        }],
        codecs: &Codec::SERDE,
    };
    struct Typo;
    impl FromClient for Typo {
        fn from_client(_: Client) -> Typo {
            Typo
        }
        fn descriptor() -> Option<&'static ServiceDescriptor> {
            Some(&TYPO)
        }
    }
    let built = ClientBuilder::<Typo>::new(TYPO.name)
        .transport(TcpTransport::default())
        .address("127.0.0.1:1")
        .build();
    assert!(
        matches!(&built, Err(Error::Config(message)) if message.contains("go") && message.contains("fastest")),
        "{:?}",
        built.err().map(|e| e.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forking_takes_the_first_answer_and_cancels_the_slower_call_on_its_provider() {
    let slow_counters = Counters::default();
    let slow = provider_with(
        "slow",
        TcpConfig::default(),
        Duration::from_millis(1_000),
        slow_counters.clone(),
    )
    .await;
    let fast = provider_with(
        "fast",
        TcpConfig::default(),
        Duration::ZERO,
        Counters::default(),
    )
    .await;
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses([slow.local_addr().to_string(), fast.local_addr().to_string()])
        .timeout(Duration::from_secs(5))
        .build()
        .expect("valid client");
    let started = Instant::now();
    assert_eq!(ledger.quote().await.ok().as_deref(), Some("fast"));
    eprintln!("forking answered in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "did not wait for the slow provider"
    );
    // The slow provider started the call and was told to abort it: it never finishes.
    let started_there = common::eventually(Duration::from_secs(2), || {
        slow_counters.quotes_started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(started_there.is_some(), "both providers were asked");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        slow_counters.quotes_finished.load(Ordering::SeqCst),
        0,
        "the loser was cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_provider_and_names_the_ones_that_failed() {
    let counters = Counters::default();
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        servers.push(
            provider_with(name, TcpConfig::default(), Duration::ZERO, counters.clone()).await,
        );
    }
    let addresses: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    let all = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses(addresses.clone())
        .build()
        .expect("valid client");
    assert_eq!(all.notify(7).await.ok(), Some(7));
    assert_eq!(counters.notified.load(Ordering::SeqCst), 3);

    let dead = dead_address().to_string();
    let with_dead = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses(addresses.into_iter().chain([dead.clone()]))
        .build()
        .expect("valid client");
    match with_dead.notify(8).await {
        Err(Error::Broadcast { failed, total }) => {
            assert_eq!(total, 4);
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].0, dead);
            assert!(
                matches!(failed[0].1, Error::Unavailable { .. }),
                "{failed:?}"
            );
        }
        other => panic!("expected a broadcast error, got {other:?}"),
    }
    assert_eq!(
        counters.notified.load(Ordering::SeqCst),
        6,
        "the live providers still got it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_attribute_overrides_the_builder_which_overrides_the_default() {
    let live = provider("live", TcpConfig::default()).await;
    // Two clients, so each method's round robin walks the two addresses in turn.
    let failfast_client = || {
        LedgerClient::builder()
            .transport(TcpTransport::default())
            .address(dead_address().to_string())
            .address(live.local_addr().to_string())
            .cluster(rpc_core::client::ClusterMode::Failfast)
            .load_balance(RoundRobin::default())
            .build()
            .expect("valid client")
    };
    let (for_balance, for_statement) = (failfast_client(), failfast_client());
    let mut statement_failures = 0;
    for month in 0..20 {
        // `#[rpc(cluster = "failover")]` beats the builder's failfast.
        assert_eq!(for_balance.balance("a".into()).await.ok(), Some(100));
        // No attribute: the builder's failfast beats the default failover.
        if for_statement.statement(month, "a".into()).await.is_err() {
            statement_failures += 1;
        }
    }
    // Failover would have retried on the live provider every time; failfast reports the
    // dead address at least once (after that the cluster passes over it for a second).
    assert!(
        statement_failures >= 1,
        "a failfast call met the dead address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_gives_the_default_for_a_dead_or_hanging_provider() {
    let live = provider("live", TcpConfig::default()).await;
    let hanging = provider_with(
        "hanging",
        TcpConfig::default(),
        Duration::from_secs(2),
        Counters::default(),
    )
    .await;
    let client = |address: String| {
        LedgerClient::builder()
            .transport(TcpTransport::default())
            .address(address)
            .build()
            .expect("valid client")
    };
    assert_eq!(
        client(live.local_addr().to_string()).audit(1).await.ok(),
        Some(2)
    );
    assert_eq!(
        client(dead_address().to_string()).audit(1).await.ok(),
        Some(0)
    );
    let started = Instant::now();
    assert_eq!(
        client(hanging.local_addr().to_string()).audit(1).await.ok(),
        Some(0)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the 200 ms deadline still holds"
    );
}

#[test]
fn failsafe_for_a_method_without_a_default_fails_when_the_client_is_built() {
    #[rpc_core::service(name = "test.Strict")]
    trait Strict {
        async fn total(&self) -> u64;
        async fn check(&self) -> Result<u64, String>;
    }
    let builder = || {
        StrictClient::builder()
            .transport(TcpTransport::default())
            .address("127.0.0.1:1")
    };
    let built = builder()
        .cluster(rpc_core::client::ClusterMode::Failsafe)
        .build();
    assert!(
        matches!(&built, Err(Error::Config(message)) if message.contains("check") && message.contains("Default")),
        "{:?}",
        built.err()
    );
    assert!(builder().build().is_ok(), "failover needs no Default");
}

fn failback_client(server: &Server, settings: rpc_core::client::FailbackPolicy) -> LedgerClient {
    LedgerClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .failback(settings)
        .build()
        .expect("valid client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_answers_at_once_and_retries_the_failed_call_in_the_background() {
    let counters = Counters::default();
    counters.settle_fails.store(1, Ordering::SeqCst);
    let server = provider_with("p", TcpConfig::default(), Duration::ZERO, counters.clone()).await;
    let settings = rpc_core::client::FailbackPolicy::default().interval(Duration::from_millis(100));
    let ledger = failback_client(&server, settings);
    assert_eq!(
        ledger.settle(5).await.ok(),
        Some(0),
        "the failure gives the default"
    );
    let settled = common::eventually(Duration::from_secs(5), || {
        counters.settled.load(Ordering::SeqCst) == 1
    })
    .await;
    eprintln!("settled in the background after {settled:?}");
    assert!(settled.is_some(), "the retry reached the provider");
    assert_eq!(counters.settle_attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failbacks_queue_is_bounded_and_each_call_is_retried_a_bounded_number_of_times() {
    let counters = Counters::default();
    counters.settle_fails.store(u64::MAX, Ordering::SeqCst);
    let server = provider_with("p", TcpConfig::default(), Duration::ZERO, counters.clone()).await;
    let settings = rpc_core::client::FailbackPolicy::default()
        .interval(Duration::from_millis(50))
        .retries(3)
        .capacity(2);
    let ledger = failback_client(&server, settings);
    for n in 0..5 {
        assert_eq!(ledger.settle(n).await.ok(), Some(0));
    }
    // 5 first attempts; 2 calls fit the queue, each retried 3 times; the other 3 dropped.
    let all = common::eventually(Duration::from_secs(5), || {
        counters.settle_attempts.load(Ordering::SeqCst) == 11
    })
    .await;
    assert!(
        all.is_some(),
        "{} attempts",
        counters.settle_attempts.load(Ordering::SeqCst)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        counters.settle_attempts.load(Ordering::SeqCst),
        11,
        "no more than that"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_runs_out_names_each_provider_it_tried_and_its_error() {
    let (first, second) = (dead_address().to_string(), dead_address().to_string());
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses([first.clone(), second.clone()])
        .build()
        .expect("valid client");
    let error = ledger
        .balance("a".into())
        .await
        .expect_err("nobody listens");
    match &error {
        Error::Exhausted { attempts } => {
            // `balance` has retries = 3: four attempts, both providers before any repeat.
            assert_eq!(attempts.len(), 4, "{error}");
            let tried: std::collections::HashSet<&str> = attempts
                .iter()
                .map(|(address, _)| address.as_str())
                .collect();
            assert_eq!(
                tried,
                [first.as_str(), second.as_str()].into_iter().collect()
            );
            assert!(
                attempts
                    .iter()
                    .all(|(_, e)| matches!(e, Error::Unavailable { .. }))
            );
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert!(matches!(error.root(), Error::Unavailable { .. }));
    let message = error.to_string();
    assert!(
        message.contains(&first) && message.contains(&second),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_timed_out_on_a_provider_is_not_repeated_elsewhere() {
    let counters = Counters::default();
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        servers.push(
            provider_with(
                name,
                TcpConfig::default(),
                Duration::from_secs(2),
                counters.clone(),
            )
            .await,
        );
    }
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses(servers.iter().map(|s| s.local_addr().to_string()))
        .build()
        .expect("valid client");
    let result = ledger.transfer(10).await;
    assert!(result.as_ref().is_err_and(Error::is_timeout), "{result:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        counters.quotes_started.load(Ordering::SeqCst),
        1,
        "it ran once, on one provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_given_per_address_steer_the_weighted_balancers() {
    let heavy = provider("heavy", TcpConfig::default()).await;
    let light = provider("light", TcpConfig::default()).await;
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .weighted_address(heavy.local_addr().to_string(), 300)
        .weighted_address(light.local_addr().to_string(), 100)
        .load_balance(RoundRobin::default())
        .build()
        .expect("valid client");
    let mut heavy_calls = 0;
    for month in 0..400 {
        let text = ledger.statement(month, "a".into()).await.expect("served");
        if text.ends_with("from heavy") {
            heavy_calls += 1;
        }
    }
    assert_eq!(heavy_calls, 300, "smooth round robin follows 3:1 exactly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_skips_a_provider_found_unreachable_and_takes_the_next_in_order() {
    let first = provider("first", TcpConfig::default()).await;
    let second = provider("second", TcpConfig::default()).await;
    let dead = dead_address().to_string();
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses([
            first.local_addr().to_string(),
            second.local_addr().to_string(),
        ])
        .build()
        .expect("valid client");
    for _ in 0..5 {
        assert_eq!(
            ledger.ping().await.ok().as_deref(),
            Some("first"),
            "list order"
        );
    }
    let with_dead = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses([dead, second.local_addr().to_string()])
        .build()
        .expect("valid client");
    // The first call finds the dead address; from then on it is skipped.
    let found = with_dead.ping().await;
    assert!(matches!(found, Err(Error::Unavailable { .. })), "{found:?}");
    for _ in 0..5 {
        assert_eq!(with_dead.ping().await.ok().as_deref(), Some("second"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_set_on_the_method_override_the_builder() {
    let counters = Counters::default();
    let mut servers = Vec::new();
    for name in ["a", "b", "c", "d"] {
        servers.push(
            provider_with(
                name,
                TcpConfig::default(),
                Duration::from_millis(50),
                counters.clone(),
            )
            .await,
        );
    }
    let ledger = LedgerClient::builder()
        .transport(TcpTransport::default())
        .addresses(servers.iter().map(|s| s.local_addr().to_string()))
        .forks(1)
        .build()
        .expect("valid client");
    ledger.quote().await.expect("answered");
    assert_eq!(
        counters.quotes_started.load(Ordering::SeqCst),
        1,
        "the builder's forks = 1"
    );
    ledger.quote_widely().await.expect("answered");
    let widely = common::eventually(Duration::from_secs(2), || {
        counters.quotes_started.load(Ordering::SeqCst) == 4
    })
    .await;
    assert!(
        widely.is_some(),
        "the method's forks = 3: {} started",
        counters.quotes_started.load(Ordering::SeqCst)
    );
}
