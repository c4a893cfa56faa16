//! Consumers following providers through each registry, end to end: provider processes
//! (the `provider` binary) come, are killed with SIGKILL, and come again while a consumer
//! calls; not one call may fail. ZooKeeper and etcd are the servers `scripts/test.sh`
//! starts (`RPC_TEST_ZOOKEEPER`, `RPC_TEST_ETCD`, and their `_OUTAGE` twins, which only
//! the outage scenarios here stop).
//!
//! Times printed (`--nocapture`) are measurements, never assertions: the bounds waited
//! for are generous so a loaded CI machine does not fail them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use examples::{GreeterClient, GreeterServer, Greeting};
use registry::Registry;
use rpc_core::Server;
use transports::TcpTransport;

/// A `provider` process, killed when dropped.
struct ProviderProcess {
    child: Child,
    address: String,
}

impl ProviderProcess {
    fn start(registry: &str, name: &str) -> ProviderProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_provider"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--name",
                name,
                "--registry",
                registry,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn provider");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut address = None;
        // "listening on ADDR ..." then "registered in URL": registered once both are out.
        for line in lines.by_ref() {
            let line = line.expect("read provider output");
            if let Some(rest) = line.strip_prefix("listening on ") {
                address = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("registered in ") {
                break;
            }
        }
        // Keep draining its stdout so the provider never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ProviderProcess {
            child,
            address: address.expect("provider printed its address"),
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the provider");
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        signal_pid(self.child.id(), signal);
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A test server's address from the environment; no silent skip when it is missing.
fn server(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run scripts/test.sh, or start the server (scripts/servers.sh) and export it")
    })
}

fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "rpc-discovery-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Calls `add` every 2 ms until stopped; counts answers and keeps every failure.
struct Caller {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Caller {
    fn start(greeter: &GreeterClient) -> Caller {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (greeter, stop) = (greeter.clone(), stop.clone());
            async move {
                let (mut answered, mut failed) = (0, Vec::new());
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    match greeter.add(i, 1).await {
                        Ok(sum) if sum == i + 1 => answered += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (answered, failed)
            }
        });
        Caller { stop, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (answered, failed) = self.task.await.expect("caller task");
        assert!(
            failed.is_empty(),
            "{} calls failed: {failed:?}",
            failed.len()
        );
        assert!(answered > 0, "no call was answered");
        answered
    }
}

fn consumer(registry: &Arc<dyn Registry>, cache: PathBuf) -> GreeterClient {
    GreeterClient::builder()
        .transport(TcpTransport::default())
        .registry(registry.clone())
        .registry_cache(cache)
        .load_balance_by_name("roundrobin")
        .build()
        .expect("build a registry-fed client")
}

fn addresses(greeter: &GreeterClient) -> Vec<String> {
    let mut addresses: Vec<String> = greeter
        .client()
        .providers()
        .iter()
        .map(|p| p.address.to_string())
        .collect();
    addresses.sort();
    addresses
}

/// Waits until the consumer lists exactly `expected`, up to `bound`; the time it took.
async fn until_listed(greeter: &GreeterClient, expected: &[&str], bound: Duration) -> Duration {
    let mut expected: Vec<String> = expected.iter().map(|a| a.to_string()).collect();
    expected.sort();
    let started = Instant::now();
    loop {
        let listed = addresses(greeter);
        if listed == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "after {bound:?} the consumer lists {listed:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Three providers register, one is killed, a fourth joins; the consumer follows and
/// no call fails. `gone_within` bounds how long a killed provider may stay listed.
async fn follow_provider_processes(label: &str, registry_url: &str, gone_within: Duration) {
    let registry = registry::connect(registry_url)
        .await
        .expect("open the registry");
    let greeter = consumer(&registry, temp_path(&format!("{label}-cache")));
    let mut providers: Vec<ProviderProcess> = (1..=3)
        .map(|i| ProviderProcess::start(registry_url, &format!("{label}-{i}")))
        .collect();
    let all: Vec<&str> = providers.iter().map(|p| p.address.as_str()).collect();
    let seen = until_listed(&greeter, &all, Duration::from_secs(10)).await;
    println!("{label}: consumer lists 3 providers {seen:?} after the third registered");
    let caller = Caller::start(&greeter);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let killed = providers.remove(0);
    let killed_at = Instant::now();
    killed.kill();
    let left: Vec<&str> = providers.iter().map(|p| p.address.as_str()).collect();
    until_listed(&greeter, &left, gone_within).await;
    println!(
        "{label}: a SIGKILLed provider left the list {:?} after the kill",
        killed_at.elapsed()
    );

    providers.push(ProviderProcess::start(registry_url, &format!("{label}-4")));
    let all: Vec<&str> = providers.iter().map(|p| p.address.as_str()).collect();
    let joined = until_listed(&greeter, &all, Duration::from_secs(10)).await;
    println!("{label}: a fourth provider was listed {joined:?} after it registered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answered = caller.finish().await;
    println!("{label}: {answered} calls, none failed");
    registry.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_registry_follows_providers_coming_and_going() {
    let registry = registry::connect("memory://discovery-test")
        .await
        .expect("open");
    let transport = TcpTransport::default();
    let start = |name: String| {
        Server::builder()
            .registry(registry.clone())
            .transport(transport.clone())
            .add_service(GreeterServer::new(Greeting::new(name)))
            .bind("127.0.0.1:0")
    };
    let greeter = consumer(&registry, temp_path("memory-cache"));
    let mut servers = Vec::new();
    for i in 1..=3 {
        servers.push(start(format!("memory-{i}")).await.expect("bind"));
    }
    let address = |server: &Server| server.local_addr().to_string();
    let all: Vec<String> = servers.iter().map(address).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    until_listed(&greeter, &all, Duration::from_secs(10)).await;
    let caller = Caller::start(&greeter);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Dropped, not shut down: its calls are cut and its registration withdrawn at once.
    let killed_at = Instant::now();
    drop(servers.remove(0));
    let left: Vec<String> = servers.iter().map(address).collect();
    let left: Vec<&str> = left.iter().map(String::as_str).collect();
    until_listed(&greeter, &left, Duration::from_secs(10)).await;
    println!(
        "memory: a dropped provider left the list after {:?}",
        killed_at.elapsed()
    );
    servers.push(start("memory-4".to_owned()).await.expect("bind"));
    let all: Vec<String> = servers.iter().map(address).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let joined = until_listed(&greeter, &all, Duration::from_secs(10)).await;
    println!("memory: a fourth provider was listed {joined:?} after it registered");
    tokio::time::sleep(Duration::from_millis(100)).await;
    caller.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_registry_follows_provider_processes() {
    let dir = temp_path("file-registry");
    let url = format!("file://{}", dir.display());
    // The process check notices a killed provider at the next rescan (500 ms).
    follow_provider_processes("file", &url, Duration::from_secs(15)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_registry_follows_provider_processes() {
    let url = format!(
        "zookeeper://{}?session_timeout_ms=2000",
        server("RPC_TEST_ZOOKEEPER")
    );
    // The killed provider's session expires after 2 s.
    follow_provider_processes("zookeeper", &url, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_registry_follows_provider_processes() {
    let url = format!("etcd://{}?lease_ttl_ms=2000", server("RPC_TEST_ETCD"));
    // The killed provider's lease runs out after 2 s.
    follow_provider_processes("etcd", &url, Duration::from_secs(30)).await;
}

/// The registry server stops (SIGSTOP) while a consumer calls: calls go on with the last
/// list; a consumer started meanwhile uses the cache file; once the server is back,
/// changes flow again.
async fn survive_registry_outage(label: &str, registry_url: &str, server_pid: u32) {
    let cache = temp_path(&format!("{label}-outage-cache"));
    let registry = registry::connect(registry_url)
        .await
        .expect("open the registry");
    let greeter = consumer(&registry, cache.clone());
    let mut providers: Vec<ProviderProcess> = (1..=2)
        .map(|i| ProviderProcess::start(registry_url, &format!("{label}-outage-{i}")))
        .collect();
    let all: Vec<String> = providers.iter().map(|p| p.address.clone()).collect();
    let all_ref: Vec<&str> = all.iter().map(String::as_str).collect();
    until_listed(&greeter, &all_ref, Duration::from_secs(10)).await;
    let caller = Caller::start(&greeter);

    signal_pid(server_pid, "-STOP");
    let stopped_at = Instant::now();
    // A consumer started now cannot reach the registry: it lists the cached providers.
    let late_registry = registry::connect(registry_url)
        .await
        .expect("open while down");
    let late = consumer(&late_registry, cache.clone());
    let cached = until_listed(&late, &all_ref, Duration::from_secs(10)).await;
    println!(
        "{label}: a consumer started during the outage listed the cached providers after {cached:?}"
    );
    let sum = late
        .add(20, 22)
        .await
        .expect("a call through cached providers");
    assert_eq!(sum, 42);
    // Longer than the providers' sessions and leases: they expire on the server.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(addresses(&greeter), {
        let mut all = all.clone();
        all.sort();
        all
    });
    signal_pid(server_pid, "-CONT");
    println!("{label}: registry stopped for {:?}", stopped_at.elapsed());

    // Changes flow again: a new provider is seen by both consumers.
    let resumed = Instant::now();
    providers.push(ProviderProcess::start(
        registry_url,
        &format!("{label}-outage-3"),
    ));
    let all: Vec<&str> = providers.iter().map(|p| p.address.as_str()).collect();
    until_listed(&greeter, &all, Duration::from_secs(30)).await;
    until_listed(&late, &all, Duration::from_secs(30)).await;
    println!(
        "{label}: after the outage a new provider was listed in {:?}",
        resumed.elapsed()
    );
    let answered = caller.finish().await;
    println!("{label}: {answered} calls through the outage, none failed");
    for provider in &providers {
        provider.signal("-CONT");
    }
    late_registry.close().await;
    registry.close().await;
    let _ = std::fs::remove_file(cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_outage_keeps_calls_flowing() {
    let address = server("RPC_TEST_ZOOKEEPER_OUTAGE");
    let pid: u32 = server("RPC_TEST_ZOOKEEPER_OUTAGE_PID")
        .parse()
        .expect("a pid");
    let url = format!("zookeeper://{address}?session_timeout_ms=2000");
    survive_registry_outage("zookeeper", &url, pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_calls_flowing() {
    let address = server("RPC_TEST_ETCD_OUTAGE");
    let pid: u32 = server("RPC_TEST_ETCD_OUTAGE_PID").parse().expect("a pid");
    let url = format!("etcd://{address}?lease_ttl_ms=2000");
    survive_registry_outage("etcd", &url, pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_registry_consumer_uses_its_cache_when_the_registry_cannot_be_read() {
    // The file registry's outage: the service's folder cannot be read (here: a file took
    // its place). A consumer started then falls back to its cache file.
    let dir = temp_path("file-outage");
    let url = format!("file://{}", dir.display());
    let cache = temp_path("file-outage-cache");
    let registry = registry::connect(&url).await.expect("open");
    let greeter = consumer(&registry, cache.clone());
    let provider = ProviderProcess::start(&url, "file-outage-1");
    until_listed(&greeter, &[&provider.address], Duration::from_secs(10)).await;
    drop(greeter);
    let folder = dir.join("demo.Greeter");
    // The provider process re-creates its folder when it refreshes its entry: retry until
    // the file is in place (from then on the provider cannot take the path back).
    let mut blocked = false;
    for _ in 0..100 {
        let _ = std::fs::remove_dir_all(&folder);
        if std::fs::write(&folder, b"not a folder").is_ok() {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "block the service folder");
    let late = consumer(&registry, cache.clone());
    let cached = until_listed(&late, &[&provider.address], Duration::from_secs(10)).await;
    println!("file: a consumer that cannot read its registry used the cache after {cached:?}");
    assert_eq!(late.add(1, 2).await.expect("call a cached provider"), 3);
    drop(provider);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_waits_for_the_first_provider() {
    let registry = registry::connect(&format!("memory://first-call-{}", std::process::id()))
        .await
        .expect("open");
    let greeter = consumer(&registry, temp_path("first-call-cache"));
    let late_provider = {
        let registry = registry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Server::builder()
                .registry(registry)
                .transport(TcpTransport::default())
                .add_service(GreeterServer::new(Greeting::new("late")))
                .bind("127.0.0.1:0")
                .await
                .expect("bind")
        })
    };
    let started = Instant::now();
    let sum = greeter
        .with_timeout(Duration::from_secs(10))
        .add(1, 1)
        .await
        .expect("the call waits for a provider instead of failing");
    assert_eq!(sum, 2);
    println!(
        "memory: the first call was answered {:?} after it was made, its provider registered 300 ms in",
        started.elapsed()
    );
    // Without any provider, a call fails with NoProvider at its deadline, not earlier.
    let nobody = GreeterClient::builder()
        .transport(TcpTransport::default())
        .registry(registry.clone())
        .version("no-such-version")
        .registry_cache(temp_path("nobody-cache"))
        .build()
        .expect("build");
    let started = Instant::now();
    let error = nobody
        .with_timeout(Duration::from_millis(300))
        .add(1, 1)
        .await
        .expect_err("no provider serves that version");
    assert!(matches!(error, rpc_core::Error::NoProvider(_)), "{error:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    late_provider.await.expect("provider task").shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_lists_only_providers_it_can_call_with_what_they_announce() {
    use registry::ProviderUrl;
    let registry = registry::connect(&format!("memory://filter-{}", std::process::id()))
        .await
        .expect("open");
    let greeter = consumer(&registry, temp_path("filter-cache"));
    let url = |text: &str| -> ProviderUrl { text.parse().expect("a provider url") };
    let good = url(
        "tcp://127.0.0.1:1/demo.Greeter?version=1.0.0&weight=7&timestamp=1000&serialization=bincode,json",
    );
    for announced in [
        good.clone(),
        url("h2://127.0.0.1:2/demo.Greeter?version=1.0.0"),
        url("tcp://127.0.0.1:3/demo.Greeter?version=2.0.0"),
        url("tcp://127.0.0.1:4/demo.Greeter?version=1.0.0&serialization=json"),
        url("tcp://127.0.0.1:5/demo.Greeter"),
    ] {
        registry.register(&announced).await.expect("register");
    }
    until_listed(&greeter, &["127.0.0.1:1"], Duration::from_secs(10)).await;
    let listed = greeter.client().providers();
    assert_eq!(listed[0].weight, 7);
    assert_eq!(
        listed[0].start,
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1))
    );
    assert_eq!(
        listed[0].metadata.get("serialization").map(String::as_str),
        Some("bincode,json")
    );

    // A push that keeps a provider keeps its Provider: same channel, same statistics.
    let stats = listed[0].stats.clone();
    registry
        .register(&url("tcp://127.0.0.1:6/demo.Greeter?version=1.0.0"))
        .await
        .expect("register");
    until_listed(
        &greeter,
        &["127.0.0.1:1", "127.0.0.1:6"],
        Duration::from_secs(10),
    )
    .await;
    let kept = greeter.client().providers();
    let kept = kept
        .iter()
        .find(|p| &*p.address == "127.0.0.1:1")
        .expect("still listed");
    assert!(Arc::ptr_eq(&kept.stats, &stats), "the provider was rebuilt");

    // An empty push (every provider gone, as a wiped registry looks) keeps the last list.
    registry.unregister(&good).await.expect("unregister");
    // Seen before the last one goes: a subscriber is pushed the latest set only, and
    // both changes at once would be one empty push.
    until_listed(&greeter, &["127.0.0.1:6"], Duration::from_secs(10)).await;
    registry
        .unregister(&url("tcp://127.0.0.1:6/demo.Greeter?version=1.0.0"))
        .await
        .expect("unregister");
    until_listed(&greeter, &["127.0.0.1:6"], Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(addresses(&greeter), ["127.0.0.1:6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_removed_mid_call_still_answers_that_call() {
    let registry = registry::connect(&format!("memory://mid-call-{}", std::process::id()))
        .await
        .expect("open");
    let transport = TcpTransport::default();
    let start = |name: &'static str| {
        Server::builder()
            .registry(registry.clone())
            .transport(transport.clone())
            .add_service(GreeterServer::new(Greeting::new(name)))
            .bind("127.0.0.1:0")
    };
    let first = start("first").await.expect("bind");
    let greeter = consumer(&registry, temp_path("mid-call-cache"));
    let first_address = first.local_addr().to_string();
    until_listed(&greeter, &[&first_address], Duration::from_secs(10)).await;
    // A 150 ms call is under way when its provider leaves the registry (but keeps
    // serving): the directory drops it, the connection stays until the call is answered.
    let call = tokio::spawn({
        let greeter = greeter.clone();
        async move { greeter.slow(150).await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = start("second").await.expect("bind");
    let urls = first.registered().to_vec();
    for url in &urls {
        registry.unregister(url).await.expect("unregister");
    }
    let second_address = second.local_addr().to_string();
    until_listed(&greeter, &[&second_address], Duration::from_secs(10)).await;
    let answer = call
        .await
        .expect("call task")
        .expect("the in-flight call is answered");
    assert_eq!(answer, "slept 150 ms");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unregisters_before_it_drains() {
    let registry = registry::connect(&format!("memory://unregister-first-{}", std::process::id()))
        .await
        .expect("open");
    let server = Server::builder()
        .registry(registry.clone())
        .transport(TcpTransport::default())
        .add_service(GreeterServer::new(Greeting::new("draining")))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    assert_eq!(server.registered().len(), 1);
    let address = server.local_addr().to_string();
    let greeter = consumer(&registry, temp_path("unregister-first-cache"));
    until_listed(&greeter, &[&address], Duration::from_secs(10)).await;
    let mut subscription = registry.subscribe("demo.Greeter").await.expect("subscribe");
    let call = tokio::spawn({
        let greeter = greeter.clone();
        async move { greeter.slow(150).await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let shutdown = tokio::spawn(server.shutdown());
    // The registry loses the provider while its call is still being served.
    loop {
        match subscription.next().await {
            Some(registry::Update::Providers(urls)) if urls.is_empty() => break,
            Some(_) => continue,
            None => panic!("subscription ended"),
        }
    }
    assert!(!call.is_finished(), "unregistered only after draining");
    assert_eq!(call.await.expect("task").expect("drained"), "slept 150 ms");
    shutdown.await.expect("shutdown task");
}
