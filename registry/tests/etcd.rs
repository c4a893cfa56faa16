//! The etcd registry against a real etcd server.
//!
//! `RPC_TEST_ETCD` (host:port) is the server most tests share, each with services of its
//! own; the outage test stops and resumes a server of its own, `RPC_TEST_ETCD_OUTAGE`
//! (pid in `RPC_TEST_ETCD_OUTAGE_PID`). `scripts/test.sh` starts both; a test fails, rather
//! than skips, when they are not set. Waits are generous bounds, not timed assertions:
//! the figures measured are printed (run with `--nocapture`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions};
use registry::etcd::EtcdRegistry;
use registry::{ProviderUrl, Registry, Subscription, Update, path_segment};

/// Tells this test binary, re-run as a child, to be a provider process: "REGISTRY URL".
const CHILD_ENV: &str = "RPC_TEST_ETCD_CHILD";
/// What a provider process prints once it registered.
const REGISTERED_LINE: &str = "provider registered: ";

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run scripts/test.sh, or start the servers first with \
             `source scripts/servers.sh && start_etcd && start_etcd RPC_TEST_ETCD_OUTAGE`"
        )
    })
}

/// A service name no other test (or test run) uses.
fn unique(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("test.etcd.{name}.p{}n{n}", std::process::id())
}

fn open(server: &str, params: &str) -> EtcdRegistry {
    EtcdRegistry::open(format!("etcd://{server}{params}").parse().unwrap()).unwrap()
}

fn provider(service: &str, port: u16) -> ProviderUrl {
    ProviderUrl::new("tcp", &format!("127.0.0.1:{port}"), service).with_param("side", "provider")
}

fn ports(urls: &[ProviderUrl]) -> Vec<u16> {
    urls.iter()
        .map(|url| url.address().rsplit_once(':').unwrap().1.parse().unwrap())
        .collect()
}

/// Waits up to `limit` for a pushed provider set that satisfies `done`, and returns it.
async fn wait_providers(
    subscription: &mut Subscription,
    what: &str,
    limit: Duration,
    done: impl Fn(&[ProviderUrl]) -> bool,
) -> Vec<ProviderUrl> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = subscription.latest();
    if let Some(Update::Providers(urls)) = &last
        && done(urls)
    {
        return urls.to_vec();
    }
    loop {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(Some(Update::Providers(urls))) if done(&urls) => return urls.to_vec(),
            Ok(Some(update)) => last = Some(update),
            Ok(None) => panic!("the subscription ended while waiting for {what}"),
            Err(_) => panic!("no push with {what} within {limit:?}; last update: {last:?}"),
        }
    }
}

/// Waits up to `limit` for an [`Update::Unreachable`].
async fn wait_unreachable(subscription: &mut Subscription, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(Some(Update::Unreachable(reason))) => return reason,
            Ok(Some(Update::Providers(_))) => {}
            Ok(None) => panic!("the subscription ended while waiting for unreachable"),
            Err(_) => panic!("no Update::Unreachable within {limit:?}"),
        }
    }
}

async fn plain_client(server: &str) -> etcd_client::Client {
    etcd_client::Client::connect([server], None)
        .await
        .expect("a plain etcd client connects")
}

/// Keys under `prefix`, with their values and leases.
async fn keys_under(
    client: &mut etcd_client::Client,
    prefix: &str,
) -> BTreeMap<String, (String, i64)> {
    let got = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    got.kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().to_owned();
            (key, (kv.value_str().unwrap().to_owned(), kv.lease()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_in_other_processes_come_and_a_killed_one_goes_with_its_lease() {
    let server = env("RPC_TEST_ETCD");
    let service = unique("processes");
    let consumer = open(&server, "");
    let mut subscription = consumer.subscribe(&service).await.unwrap();

    let started = Instant::now();
    let mut children = Vec::new();
    for port in 1..=3 {
        children.push(ProviderProcess::spawn(&server, provider(&service, port)));
    }
    for child in &mut children {
        child.registered().await;
    }
    println!(
        "3 provider processes started and registered in {:?}",
        started.elapsed()
    );
    let seen = Instant::now();
    let urls = wait_providers(
        &mut subscription,
        "3 providers",
        Duration::from_secs(30),
        |urls| urls.len() == 3,
    )
    .await;
    assert_eq!(ports(&urls), [1, 2, 3]);
    println!(
        "the consumer saw all 3 within {:?} of the last registration",
        seen.elapsed()
    );

    let killed = Instant::now();
    let mut first = children.remove(0);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Lease TTL 2 s (etcd's minimum), plus generous slack for etcd's expiry checks.
    let urls = wait_providers(
        &mut subscription,
        "the killed provider gone",
        Duration::from_secs(20),
        |urls| urls.len() == 2,
    )
    .await;
    assert_eq!(ports(&urls), [2, 3]);
    println!(
        "a provider killed with SIGKILL was gone for the consumer after {:?} (lease TTL 2 s)",
        killed.elapsed()
    );

    let fourth = Instant::now();
    let mut child = ProviderProcess::spawn(&server, provider(&service, 4));
    child.registered().await;
    children.push(child);
    let urls = wait_providers(
        &mut subscription,
        "the 4th provider",
        Duration::from_secs(30),
        |urls| urls.len() == 3 && ports(urls).contains(&4),
    )
    .await;
    assert_eq!(ports(&urls), [2, 3, 4]);
    println!(
        "a 4th provider process showed up after {:?}",
        fourth.elapsed()
    );
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_dubbos_layout_and_are_bound_to_a_lease() {
    let server = env("RPC_TEST_ETCD");
    let mut client = plain_client(&server).await;
    let service = unique("layout");
    let prefix = format!("/{}", unique("prefix"));
    let registry = open(&server, &format!("?prefix={prefix}&lease_ttl_ms=5000"));
    let url = provider(&service, 1).with_param("methods", "greet,charge");
    let consumer_url =
        ProviderUrl::new("consumer", "127.0.0.1:0", &service).with_param("side", "consumer");
    registry.register(&url).await.unwrap();
    registry.register(&consumer_url).await.unwrap();

    // A successful register means the key is there: no waiting.
    let keys = keys_under(&mut client, &format!("{prefix}/")).await;
    let provider_key = format!(
        "{prefix}/{}/providers/{}",
        path_segment(&service),
        url.to_path_segment()
    );
    let consumer_key = format!(
        "{prefix}/{}/consumers/{}",
        path_segment(&service),
        consumer_url.to_path_segment()
    );
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        [&consumer_key, &provider_key],
        "{keys:#?}"
    );
    let (value, lease) = &keys[&provider_key];
    assert_eq!(value, &url.to_string());
    assert_ne!(*lease, 0, "the key is bound to a lease");
    assert_eq!(
        keys[&consumer_key],
        (consumer_url.to_string(), *lease),
        "one lease for all"
    );
    let segment = provider_key.rsplit('/').next().unwrap();
    assert_eq!(ProviderUrl::from_path_segment(segment).unwrap(), url);

    // Without `prefix`, Dubbo's `/dubbo`.
    let default = open(&server, "");
    default.register(&url).await.unwrap();
    let under_dubbo = keys_under(&mut client, &format!("/dubbo/{}/", path_segment(&service))).await;
    assert_eq!(
        under_dubbo.keys().collect::<Vec<_>>(),
        [&format!(
            "/dubbo/{}/providers/{}",
            path_segment(&service),
            url.to_path_segment()
        )]
    );

    // Closing withdraws the keys and revokes the lease.
    registry.close().await;
    default.close().await;
    assert!(
        keys_under(&mut client, &format!("{prefix}/"))
            .await
            .is_empty()
    );
    assert!(
        keys_under(&mut client, &format!("/dubbo/{}/", path_segment(&service)))
            .await
            .is_empty()
    );
    let ttl = client.lease_time_to_live(*lease, None).await.unwrap().ttl();
    assert_eq!(ttl, -1, "the lease is revoked");
    assert!(matches!(
        registry.register(&url).await,
        Err(registry::Error::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_back_by_themselves_when_the_lease_is_revoked_from_outside() {
    let server = env("RPC_TEST_ETCD");
    let mut client = plain_client(&server).await;
    let service = unique("revoked");
    let provider_registry = open(&server, "?lease_ttl_ms=3000");
    let consumer = open(&server, "");
    let url = provider(&service, 1);
    provider_registry.register(&url).await.unwrap();
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    // Published before subscribe returned.
    assert_eq!(
        subscription.latest(),
        Some(Update::Providers(vec![url.clone()].into()))
    );

    let key = format!(
        "/dubbo/{}/providers/{}",
        path_segment(&service),
        url.to_path_segment()
    );
    let (_, old_lease) = keys_under(&mut client, &key).await[&key].clone();
    let mut watch = client.watch(key.as_str(), None).await.unwrap();
    let revoked = Instant::now();
    client.lease_revoke(old_lease).await.unwrap();

    // The plain watch sees every event: the deletion by the revocation, then the new put.
    let mut deleted = None;
    let new_lease = loop {
        let response = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("the key came back within 30 s")
            .unwrap()
            .expect("the watch goes on");
        let mut put = None;
        for event in response.events() {
            match event.event_type() {
                EventType::Delete => deleted = Some(revoked.elapsed()),
                EventType::Put => put = event.kv().map(|kv| kv.lease()),
            }
        }
        if let Some(lease) = put
            && deleted.is_some()
        {
            break lease;
        }
    };
    let back = revoked.elapsed();
    assert_ne!(new_lease, old_lease);
    assert_ne!(new_lease, 0);
    let urls = wait_providers(
        &mut subscription,
        "the provider back",
        Duration::from_secs(30),
        |urls| urls == std::slice::from_ref(&url),
    )
    .await;
    assert_eq!(urls, std::slice::from_ref(&url));
    println!(
        "lease revoked from outside: key deleted after {:?}, put again with a new lease after {back:?} (lease TTL 3 s, renewed every 1 s)",
        deleted.unwrap_or_default()
    );
    provider_registry.close().await;
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_name_no_url_are_skipped_and_values_do_not_matter() {
    let server = env("RPC_TEST_ETCD");
    let mut client = plain_client(&server).await;
    let service = unique("garbage");
    let dir = format!("/dubbo/{}/providers/", path_segment(&service));
    for (key, value) in [
        (format!("{dir}not%20a%20url"), "x".to_owned()),
        (format!("{dir}%FF"), "y".to_owned()),
        (format!("{dir}a/b"), String::new()),
        (
            format!("{dir}{}", provider(&service, 1).to_path_segment()),
            "\u{1}garbage value".to_owned(),
        ),
    ] {
        client.put(key, value, None).await.unwrap();
    }
    let registry = open(&server, "");
    registry.register(&provider(&service, 2)).await.unwrap();
    let consumer = open(&server, "");
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    let urls = wait_providers(
        &mut subscription,
        "the 2 valid providers",
        Duration::from_secs(30),
        |urls| urls.len() == 2,
    )
    .await;
    assert_eq!(urls, [provider(&service, 1), provider(&service, 2)]);

    // Through the watch too.
    client
        .put(format!("{dir}tcp%3A%2F%2Fnoport%2Fx"), "z", None)
        .await
        .unwrap();
    client
        .put(
            format!("{dir}{}", provider(&service, 3).to_path_segment()),
            vec![0xff, 0xfe],
            None,
        )
        .await
        .unwrap();
    let urls = wait_providers(
        &mut subscription,
        "3 valid providers",
        Duration::from_secs(30),
        |urls| urls.len() == 3,
    )
    .await;
    assert_eq!(ports(&urls), [1, 2, 3]);
    client
        .delete(
            format!("{dir}{}", provider(&service, 1).to_path_segment()),
            None,
        )
        .await
        .unwrap();
    client.delete(format!("{dir}%FF"), None).await.unwrap();
    let urls = wait_providers(
        &mut subscription,
        "provider 1 gone",
        Duration::from_secs(30),
        |urls| urls.len() == 2,
    )
    .await;
    assert_eq!(ports(&urls), [2, 3]);

    client
        .delete(
            dir.as_str(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    registry.close().await;
    consumer.close().await;
}

/// All outage scenarios, on a server of their own, one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_subscriptions_live_through_an_outage() {
    let server = env("RPC_TEST_ETCD_OUTAGE");
    let pid = env("RPC_TEST_ETCD_OUTAGE_PID");
    let service = unique("outage");
    let late_service = unique("outage-late");
    let consumer = open(&server, "?lease_ttl_ms=3000");
    let provider_registry = open(&server, "?lease_ttl_ms=2000");
    provider_registry
        .register(&provider(&service, 1))
        .await
        .unwrap();
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    wait_providers(
        &mut subscription,
        "provider 1",
        Duration::from_secs(30),
        |urls| ports(urls) == [1],
    )
    .await;

    // Its lease outlives the outage: only deleting the key withdraws provider 5.
    let long_lease = open(&server, "?lease_ttl_ms=30000");
    long_lease.register(&provider(&service, 5)).await.unwrap();
    wait_providers(
        &mut subscription,
        "providers 1 and 5",
        Duration::from_secs(30),
        |urls| ports(urls) == [1, 5],
    )
    .await;
    let key = format!(
        "/dubbo/{}/providers/{}",
        path_segment(&service),
        provider(&service, 1).to_path_segment()
    );
    let lease_before = keys_under(&mut plain_client(&server).await, &key).await[&key].1;

    let stopped = Stopped::new(&pid);
    let outage = Instant::now();
    let reason = wait_unreachable(&mut subscription, Duration::from_secs(30)).await;
    println!(
        "outage: the subscription was told unreachable after {:?} ({reason})",
        outage.elapsed()
    );

    // All bounded and all answered during the outage; run together, as they may wait for
    // a request to time out.
    let opened_during = open(&server, "?lease_ttl_ms=2000");
    let (registered, unregistered, late, registered_by_new) = tokio::join!(
        bounded(
            "register",
            provider_registry.register(&provider(&service, 2))
        ),
        bounded("unregister", long_lease.unregister(&provider(&service, 5))),
        bounded("subscribe", consumer.subscribe(&late_service)),
        bounded(
            "register on a handle opened during the outage",
            opened_during.register(&provider(&service, 4))
        ),
    );
    registered.expect("register succeeds while etcd is stopped: it is applied later");
    unregistered.expect("unregister succeeds while etcd is stopped");
    registered_by_new.expect("register succeeds on a handle opened while etcd is stopped");
    let mut late = late.expect("subscribe succeeds while etcd is stopped");
    assert!(
        matches!(late.latest(), Some(Update::Unreachable(_))),
        "{:?}",
        late.latest()
    );

    // Longer than the provider's lease: etcd expires it on resuming.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(outage.elapsed())).await;
    drop(stopped);
    let resumed = Instant::now();
    println!("outage: etcd resumed after {:?} stopped", outage.elapsed());

    // 1 put again, 2 and 4 registered during the outage, 5 withdrawn during it.
    let urls = wait_providers(
        &mut subscription,
        "providers 1, 2 and 4",
        Duration::from_secs(60),
        |urls| ports(urls) == [1, 2, 4],
    )
    .await;
    assert_eq!(urls, [1, 2, 4].map(|port| provider(&service, port)));
    println!(
        "outage: providers 1, 2 and 4 listed {:?} after etcd resumed",
        resumed.elapsed()
    );
    // The provider's lease (2 s) ran out during the outage: its key is back because the
    // registry granted a new lease and put it again.
    let mut client = plain_client(&server).await;
    let lease_after = keys_under(&mut client, &key).await[&key].1;
    assert_ne!(lease_after, lease_before, "put again under a new lease");
    assert!(
        client
            .lease_time_to_live(lease_after, None)
            .await
            .unwrap()
            .ttl()
            > 0
    );
    wait_providers(
        &mut late,
        "the late subscription's empty set",
        Duration::from_secs(30),
        |urls| urls.is_empty(),
    )
    .await;

    // Changes flow again.
    provider_registry
        .register(&provider(&service, 3))
        .await
        .unwrap();
    provider_registry
        .unregister(&provider(&service, 1))
        .await
        .unwrap();
    wait_providers(
        &mut subscription,
        "providers 2, 3 and 4",
        Duration::from_secs(30),
        |urls| ports(urls) == [2, 3, 4],
    )
    .await;
    provider_registry.close().await;
    wait_providers(
        &mut subscription,
        "provider 4 after a close",
        Duration::from_secs(30),
        |urls| ports(urls) == [4],
    )
    .await;
    let dropped = Instant::now();
    drop(opened_during);
    wait_providers(
        &mut subscription,
        "no provider after a drop",
        Duration::from_secs(30),
        |urls| urls.is_empty(),
    )
    .await;
    println!(
        "a dropped handle's provider was gone for the consumer after {:?}",
        dropped.elapsed()
    );
    long_lease.close().await;
    consumer.close().await;
    // Close ends subscriptions (after any update not read yet).
    while let Some(update) = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("close ends subscriptions")
    {
        assert!(matches!(update, Update::Providers(_)), "{update:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_to_push_latency() {
    let server = env("RPC_TEST_ETCD");
    let service = unique("latency");
    let provider_registry = open(&server, "");
    let consumer = open(&server, "");
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    let mut samples = Vec::new();
    for port in 0..100 {
        let url = provider(&service, 10_000 + port);
        let start = Instant::now();
        provider_registry.register(&url).await.unwrap();
        wait_providers(
            &mut subscription,
            "the new provider",
            Duration::from_secs(30),
            |urls| urls.contains(&url),
        )
        .await;
        samples.push(start.elapsed());
    }
    samples.sort();
    let percentile = |p: usize| samples[(samples.len() * p).div_ceil(100) - 1];
    println!(
        "etcd register->push p50={:?} p99={:?} max={:?} (n={})",
        percentile(50),
        percentile(99),
        percentile(100),
        samples.len()
    );
    provider_registry.close().await;
    consumer.close().await;
}

/// `future`, which must finish within 30 s; prints how long it took.
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("{what} hangs while etcd is stopped"));
    println!("outage: {what} returned after {:?}", start.elapsed());
    output
}

/// Not a test: a provider process of the tests above, which start it themselves. Does
/// nothing unless [`CHILD_ENV`] is set; stays registered until its standard input closes
/// or it is killed.
#[test]
#[ignore = "a provider process of the etcd tests, which start it themselves"]
fn provider_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (registry_url, url) = spec.split_once(' ').expect("REGISTRY_URL PROVIDER_URL");
    let url: ProviderUrl = url.parse().expect("a provider URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = registry::connect(registry_url)
            .await
            .expect("open the registry");
        registry.register(&url).await.expect("register");
        println!("{REGISTERED_LINE}{url}");
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| {
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
        })
        .await;
    });
}

/// A provider process (this test binary, re-run as [`provider_process`]); killed when
/// dropped.
struct ProviderProcess {
    child: Child,
    registered: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl ProviderProcess {
    fn spawn(server: &str, url: ProviderUrl) -> ProviderProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "provider_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("etcd://{server}?lease_ttl_ms=2000 {url}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a provider process");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Waits for the line, then keeps draining so the child never blocks on its stdout.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have written the test's name on the same line.
                if line.contains(REGISTERED_LINE)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        ProviderProcess {
            child,
            registered: Some(rx),
        }
    }

    async fn registered(&mut self) {
        if let Some(rx) = self.registered.take() {
            tokio::time::timeout(Duration::from_secs(60), rx)
                .await
                .expect("the provider process did not register within 60 s")
                .expect("the provider process exited before registering");
        }
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server stopped with SIGSTOP; resumed (SIGCONT) when dropped, even by a failed test.
struct Stopped {
    pid: String,
}

impl Stopped {
    fn new(pid: &str) -> Stopped {
        assert!(signal("-STOP", pid), "cannot stop etcd (pid {pid})");
        Stopped {
            pid: pid.to_owned(),
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        if !signal("-CONT", &self.pid) {
            eprintln!("cannot resume etcd (pid {})", self.pid);
        }
    }
}

fn signal(signal: &str, pid: &str) -> bool {
    Command::new("kill")
        .args([signal, pid])
        .status()
        .is_ok_and(|status| status.success())
}
