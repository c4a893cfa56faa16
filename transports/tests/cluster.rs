//! The consumer's cluster stage over real TCP providers: failover and failfast read from
//! `#[rpc(...)]`, providers picked per attempt, connections shared per address, and the
//! provider layer that sees where each attempt went.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rpc_core::client::{LoadBalance, Provider, Tried};
use rpc_core::{Codec, Error, Request, Response, Server};
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
}

#[derive(Clone)]
struct Books {
    name: &'static str,
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
}

async fn provider(name: &'static str, config: TcpConfig) -> Server {
    Server::builder()
        .transport(TcpTransport::new(config))
        .add_service(LedgerServer::new(Books { name }))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port")
}

/// An address nothing listens on.
fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// A client whose providers are a dead address and `live`, in that order.
fn dead_then(live: &Server) -> LedgerClient {
    LedgerClient::builder()
        .transport(TcpTransport::default())
        .address(dead_address().to_string())
        .address(live.local_addr().to_string())
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
    // Round robin over two addresses: every other call meets the dead one.
    assert_eq!(failed, 10);
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
    fn select(&self, _providers: &[Provider], request: &Request, _tried: &Tried) -> Option<usize> {
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
fn an_unknown_balancer_or_cluster_name_fails_when_the_client_is_built() {
    #[rpc_core::service(name = "test.Typo")]
    trait Typo {
        #[rpc(loadbalance = "fastest")]
        async fn go(&self) -> u32;
    }
    let built = TypoClient::builder()
        .transport(TcpTransport::default())
        .address("127.0.0.1:1")
        .build();
    assert!(
        matches!(&built, Err(Error::Config(message)) if message.contains("go") && message.contains("fastest")),
        "{:?}",
        built.err()
    );
}
