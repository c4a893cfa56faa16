//! The ZooKeeper registry against real servers.
//!
//! scripts/test.sh starts them (see scripts/servers.sh) and exports `RPC_TEST_ZOOKEEPER` and
//! `RPC_TEST_ZOOKEEPER_OUTAGE` (host:port) and `RPC_TEST_ZOOKEEPER_OUTAGE_PID`. Without them
//! the tests fail: they never pass by skipping. Only [`a_server_outage_is_reported_and_survived`]
//! touches the outage server, which it stops and resumes.
//!
//! Providers that must die or freeze run in child processes: this test binary, re-run as
//! [`provider_process`]. Timings are printed, not asserted: every wait is bounded generously
//! and only fails the test when something never happens.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registry::zookeeper::ZooKeeperRegistry;
use registry::{ProviderUrl, Registry, Subscription, Update, path_segment};
use zookeeper_client as zk;

/// The longest any step may take before the test fails: far above what each needs.
const PATIENCE: Duration = Duration::from_secs(60);
/// Session timeout of the providers run in child processes.
const CHILD_SESSION_MS: u64 = 2000;

/// Set in a child process: the registry URL to open.
const CHILD_REGISTRY_ENV: &str = "RPC_TEST_ZK_CHILD_REGISTRY";
/// Set in a child process: the provider URL to register.
const CHILD_URL_ENV: &str = "RPC_TEST_ZK_CHILD_URL";
/// Printed by a child process once its provider is registered.
const REGISTERED_LINE: &str = "zookeeper test provider registered";

fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run scripts/test.sh, or start the servers with \
             `source scripts/servers.sh && start_zookeeper && start_zookeeper RPC_TEST_ZOOKEEPER_OUTAGE` \
             in the shell that runs cargo test"
        )
    })
}

fn registry_url(var: &str, params: &str) -> String {
    format!("zookeeper://{}{params}", server(var))
}

fn open(var: &str, params: &str) -> ZooKeeperRegistry {
    ZooKeeperRegistry::open(registry_url(var, params).parse().unwrap()).unwrap()
}

/// A service name no other test (nor an earlier run) uses.
fn unique_service(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "test.zk.{label}.p{}.t{millis}.n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn provider(service: &str, port: u16) -> ProviderUrl {
    ProviderUrl::new("tcp", &format!("127.0.0.1:{port}"), service)
        .with_param("side", "provider")
        .with_param("methods", "greet,charge")
}

/// Waits (at most [`PATIENCE`]) for a pushed set that satisfies `done`, and returns it.
async fn wait_for(
    subscription: &mut Subscription,
    what: &str,
    done: impl Fn(&[ProviderUrl]) -> bool,
) -> Vec<ProviderUrl> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(Update::Providers(urls)) = subscription.latest()
            && done(&urls)
        {
            return urls.to_vec();
        }
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the subscription ended while waiting for {what}"),
            Err(_) => panic!(
                "no push with {what} within {PATIENCE:?}; last: {:?}",
                subscription.latest()
            ),
        }
    }
}

fn ports(urls: &[ProviderUrl]) -> Vec<u16> {
    let mut ports: Vec<u16> = urls
        .iter()
        .map(|url| url.address().rsplit_once(':').unwrap().1.parse().unwrap())
        .collect();
    ports.sort_unstable();
    ports
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid} failed: {status}");
}

/// A plain client, with a session of its own, to look at the tree as any other tool would.
async fn plain_client(var: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server(var))
        .await
        .unwrap()
}

/// Not a test: a provider in a process of its own, for the tests above to kill or freeze.
/// Does nothing unless [`CHILD_REGISTRY_ENV`] is set; serves until its standard input closes.
#[test]
#[ignore = "the provider process of the ZooKeeper tests, which start it themselves"]
fn provider_process() {
    let (Ok(registry_url), Ok(url)) = (
        std::env::var(CHILD_REGISTRY_ENV),
        std::env::var(CHILD_URL_ENV),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = ZooKeeperRegistry::open(registry_url.parse().unwrap()).unwrap();
        registry.register(&url.parse().unwrap()).await.unwrap();
        println!("{REGISTERED_LINE}");
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| {
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
        })
        .await;
        registry.close().await;
    });
}

/// A provider in a child process; killed when dropped.
struct ChildProvider {
    child: Child,
}

impl ChildProvider {
    /// Starts the process and waits until its provider is registered.
    async fn spawn(url: &ProviderUrl) -> ChildProvider {
        let registry = registry_url(
            "RPC_TEST_ZOOKEEPER",
            &format!("?session_timeout_ms={CHILD_SESSION_MS}"),
        );
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "provider_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_REGISTRY_ENV, registry)
            .env(CHILD_URL_ENV, url.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (registered, is_registered) = tokio::sync::oneshot::channel();
        // Watches for the line, then keeps draining so the child never blocks on stdout.
        std::thread::spawn(move || {
            let mut registered = Some(registered);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have written the test's name on the same line.
                if line.contains(REGISTERED_LINE)
                    && let Some(registered) = registered.take()
                {
                    let _ = registered.send(());
                }
            }
        });
        let mut provider = ChildProvider { child };
        match tokio::time::timeout(PATIENCE, is_registered).await {
            Ok(Ok(())) => provider,
            other => {
                let status = provider.child.try_wait();
                panic!("the provider process did not register {url}: {other:?}, status {status:?}")
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildProvider {
    fn drop(&mut self) {
        // Resumed first in case a test stopped it and failed meanwhile.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_in_other_processes_come_and_a_killed_one_goes() {
    let service = unique_service("kill");
    let consumer = open("RPC_TEST_ZOOKEEPER", "");
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    assert!(
        wait_for(&mut subscription, "the empty set", |_| true)
            .await
            .is_empty()
    );

    let start = Instant::now();
    let mut children = Vec::new();
    for port in [20001, 20002, 20003] {
        children.push(ChildProvider::spawn(&provider(&service, port)).await);
    }
    let registered = start.elapsed();
    wait_for(&mut subscription, "3 providers", |urls| urls.len() == 3).await;
    println!(
        "zookeeper: 3 provider processes registered in {registered:?}, all seen after {:?}",
        start.elapsed()
    );

    let killed = Instant::now();
    let mut victim = children.remove(1);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let left = wait_for(&mut subscription, "the killed provider gone", |urls| {
        urls.len() == 2
    })
    .await;
    assert_eq!(ports(&left), [20001, 20003]);
    println!(
        "zookeeper: a provider killed with SIGKILL was gone from the subscription after {:?} (session timeout {CHILD_SESSION_MS} ms)",
        killed.elapsed()
    );

    let fourth = Instant::now();
    children.push(ChildProvider::spawn(&provider(&service, 20004)).await);
    let now = wait_for(&mut subscription, "the 4th provider", |urls| {
        urls.len() == 3
    })
    .await;
    assert_eq!(ports(&now), [20001, 20003, 20004]);
    println!(
        "zookeeper: a 4th provider process was seen {:?} after it started",
        fourth.elapsed()
    );
    drop(children);
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_where_dubbo_puts_them() {
    let service = unique_service("layout");
    let registry = open("RPC_TEST_ZOOKEEPER", "");
    let url = provider(&service, 20880).with_param("weight", "50");
    let consumer_url = ProviderUrl::new("consumer", "127.0.0.1:0", &service)
        .with_param("side", "consumer")
        .with_param("methods", "greet");
    registry.register(&url).await.unwrap();
    registry.register(&consumer_url).await.unwrap();

    // Visible to another session as soon as register returned.
    let plain = plain_client("RPC_TEST_ZOOKEEPER").await;
    let providers = format!("/dubbo/{}/providers", path_segment(&service));
    let children = plain.list_children(&providers).await.unwrap();
    assert_eq!(children, [url.to_path_segment()]);
    assert_eq!(ProviderUrl::from_path_segment(&children[0]).unwrap(), url);
    let node = format!("{providers}/{}", children[0]);
    let (data, stat) = plain.get_data(&node).await.unwrap();
    assert_ne!(
        stat.ephemeral_owner, 0,
        "a provider's node must be ephemeral"
    );
    assert_eq!(String::from_utf8(data).unwrap(), url.to_string());
    let (_, folder) = plain.get_data(&providers).await.unwrap();
    assert_eq!(
        folder.ephemeral_owner, 0,
        "the providers folder must be persistent"
    );

    let consumers = format!("/dubbo/{}/consumers", path_segment(&service));
    let children = plain.list_children(&consumers).await.unwrap();
    assert_eq!(children, [consumer_url.to_path_segment()]);
    let (_, stat) = plain
        .get_data(&format!("{consumers}/{}", children[0]))
        .await
        .unwrap();
    assert_ne!(
        stat.ephemeral_owner, 0,
        "a consumer's node must be ephemeral"
    );

    // Consumers are never listed as providers.
    let mut subscription = registry.subscribe(&service).await.unwrap();
    match subscription.latest() {
        Some(Update::Providers(urls)) => assert_eq!(*urls, *std::slice::from_ref(&url)),
        other => panic!("no provider set when subscribe returned: {other:?}"),
    }

    registry.unregister(&url).await.unwrap();
    assert!(plain.list_children(&providers).await.unwrap().is_empty());
    wait_for(&mut subscription, "no provider", <[ProviderUrl]>::is_empty).await;
    registry.close().await;
    assert!(
        plain.list_children(&consumers).await.unwrap().is_empty(),
        "close must delete the handle's nodes"
    );
    // Close ends subscriptions (after what was pushed before it).
    tokio::time::timeout(PATIENCE, async {
        while subscription.next().await.is_some() {}
    })
    .await
    .expect("close must end subscriptions");

    // Another root, as the URL may ask.
    let root = format!("/rpc-test-root-{}", std::process::id());
    let rooted = open("RPC_TEST_ZOOKEEPER", &format!("?root={root}"));
    rooted.register(&url).await.unwrap();
    let under_root = format!("{root}/{}/providers", path_segment(&service));
    assert_eq!(
        plain.list_children(&under_root).await.unwrap(),
        [url.to_path_segment()]
    );
    rooted.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_session_expires_a_provider_registers_again_by_itself() {
    let service = unique_service("expiry");
    let consumer = open("RPC_TEST_ZOOKEEPER", "");
    let plain = plain_client("RPC_TEST_ZOOKEEPER").await;
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    let url = provider(&service, 20001);
    let child = ChildProvider::spawn(&url).await;
    wait_for(&mut subscription, "the provider", |urls| urls.len() == 1).await;
    let node = format!(
        "/dubbo/{}/providers/{}",
        path_segment(&service),
        url.to_path_segment()
    );
    let (_, before) = plain.get_data(&node).await.unwrap();

    // Frozen past its session timeout: the server expires the session and deletes its node.
    let stopped = Instant::now();
    signal(child.pid(), "-STOP");
    wait_for(
        &mut subscription,
        "the frozen provider gone",
        <[ProviderUrl]>::is_empty,
    )
    .await;
    let gone = stopped.elapsed();
    // Stay frozen well past the client's own expiry deadline (7/5 of the session timeout).
    tokio::time::sleep(Duration::from_millis(5000).saturating_sub(gone)).await;
    let resumed = Instant::now();
    signal(child.pid(), "-CONT");
    wait_for(&mut subscription, "the provider back", |urls| {
        urls == [url.clone()]
    })
    .await;
    let back = resumed.elapsed();
    println!(
        "zookeeper: a provider frozen with SIGSTOP was gone after {gone:?} (session timeout {CHILD_SESSION_MS} ms); \
         resumed after {:?} of freeze, it re-registered in a new session within {back:?}",
        resumed - stopped
    );
    let (_, after) = plain.get_data(&node).await.unwrap();
    assert_ne!(
        before.ephemeral_owner, after.ephemeral_owner,
        "the node must belong to a new session"
    );
    drop(child);
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_are_not_provider_urls_are_skipped() {
    let service = unique_service("garbage");
    let providers = format!("/dubbo/{}/providers", path_segment(&service));
    let plain = plain_client("RPC_TEST_ZOOKEEPER").await;
    plain
        .mkdir(
            &providers,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    // Ephemeral, so they go with the plain client's session.
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let garbage_data = provider(&service, 20009);
    for (name, data) in [
        ("not%20a%20url".to_owned(), &b"x"[..]),
        ("%FF".to_owned(), b""),
        ("%E2%28%A1".to_owned(), b""),
        ("plain-garbage".to_owned(), b"\xff\xfe"),
        // A valid name with garbage data: the name is what counts.
        (garbage_data.to_path_segment(), b"\x00\xffnot a url"),
    ] {
        plain
            .create(&format!("{providers}/{name}"), data, &ephemeral)
            .await
            .unwrap();
    }

    let registry = open("RPC_TEST_ZOOKEEPER", "");
    let mut subscription = registry.subscribe(&service).await.unwrap();
    let seen = wait_for(&mut subscription, "the valid node", |urls| urls.len() == 1).await;
    assert_eq!(seen, std::slice::from_ref(&garbage_data));
    let valid = provider(&service, 20001);
    registry.register(&valid).await.unwrap();
    let seen = wait_for(&mut subscription, "both valid nodes", |urls| {
        urls.len() == 2
    })
    .await;
    assert_eq!(ports(&seen), [20001, 20009]);
    // More garbage while subscribed: still no crash, still the valid set.
    plain
        .create(&format!("{providers}/%%%"), b"", &ephemeral)
        .await
        .unwrap();
    registry.unregister(&valid).await.unwrap();
    let seen = wait_for(&mut subscription, "the valid node alone", |urls| {
        urls.len() == 1
    })
    .await;
    assert_eq!(seen, [garbage_data]);
    registry.close().await;
}

/// Resumes a stopped server even when the test fails while it is stopped.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outage_is_reported_and_survived() {
    const SERVER: &str = "RPC_TEST_ZOOKEEPER_OUTAGE";
    let pid: u32 = server("RPC_TEST_ZOOKEEPER_OUTAGE_PID").parse().unwrap();
    // Shorter than the outage, so the sessions expire during it.
    let params = "?session_timeout_ms=4000";
    let service = unique_service("outage");
    let consumer = open(SERVER, params);
    let providers = open(SERVER, params);
    let first = provider(&service, 20001);
    let second = provider(&service, 20002);
    providers.register(&first).await.unwrap();
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    wait_for(&mut subscription, "the first provider", |urls| {
        urls.len() == 1
    })
    .await;

    let stopped = Instant::now();
    signal(pid, "-STOP");
    let resume = Resume(pid);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let reason = loop {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(Some(Update::Unreachable(reason))) => break reason,
            Ok(Some(Update::Providers(_))) => {}
            other => panic!("no Unreachable while the server is stopped: {other:?}"),
        }
    };
    let unreachable = stopped.elapsed();

    let call = Instant::now();
    tokio::time::timeout(PATIENCE, providers.register(&second))
        .await
        .expect("register must not hang while the server is stopped")
        .unwrap();
    let register_took = call.elapsed();

    tokio::time::sleep(Duration::from_secs(8).saturating_sub(stopped.elapsed())).await;
    let resumed = Instant::now();
    drop(resume);
    wait_for(
        &mut subscription,
        "both providers after the outage",
        |urls| urls.len() == 2,
    )
    .await;
    let recovered = resumed.elapsed();
    println!(
        "zookeeper outage: Unreachable pushed {unreachable:?} after SIGSTOP ({reason:?}); \
         register during the outage returned Ok in {register_took:?}; after {:?} stopped, \
         the new provider was seen {recovered:?} after SIGCONT",
        resumed - stopped
    );

    // Changes flow again.
    providers.unregister(&first).await.unwrap();
    let left = wait_for(&mut subscription, "the first provider gone", |urls| {
        urls.len() == 1
    })
    .await;
    assert_eq!(left, [second]);
    providers.close().await;
    wait_for(&mut subscription, "no provider", <[ProviderUrl]>::is_empty).await;
    consumer.close().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "zookeeper {label} p50={:?} p99={:?} max={:?} (n={})",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default(),
        samples.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_to_push_latency() {
    const N: u16 = 100;
    let service = unique_service("latency");
    let providers = open("RPC_TEST_ZOOKEEPER", "");
    let consumer = open("RPC_TEST_ZOOKEEPER", "");
    let mut subscription = consumer.subscribe(&service).await.unwrap();
    let mut calls = Vec::new();
    let mut pushes = Vec::new();
    for i in 0..N {
        let url = provider(&service, 30000 + i);
        let start = Instant::now();
        providers.register(&url).await.unwrap();
        calls.push(start.elapsed());
        wait_for(&mut subscription, "the new provider", |urls| {
            urls.contains(&url)
        })
        .await;
        pushes.push(start.elapsed());
    }
    summary("register() call", calls);
    summary("register->push", pushes);
    let mut pushes = Vec::new();
    for i in 0..N {
        let url = provider(&service, 30000 + i);
        let start = Instant::now();
        providers.unregister(&url).await.unwrap();
        wait_for(&mut subscription, "the provider gone", |urls| {
            !urls.contains(&url)
        })
        .await;
        pushes.push(start.elapsed());
    }
    summary("unregister->push", pushes);
    providers.close().await;
    consumer.close().await;
}
