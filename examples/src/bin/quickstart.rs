//! One command, no external server: three providers on ephemeral ports, a consumer calling
//! them with both codecs, a deadline that expires and a remote error, a rate limit refusing
//! a burst and a circuit breaker opening and closing, then a summary.
//!
//! `cargo run -p examples --bin quickstart`

use std::time::{Duration, Instant};

use examples::{
    EchoClient, EchoServer, Echoer, GreetError, GreeterClient, GreeterServer, Greeting,
};
use rpc_core::{Client, Code, Codec, Error, Server};
use transports::TcpTransport;

/// Each check prints one line and counts towards the exit code.
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            self.passed += 1;
            println!("  ok    {what:<44} {detail}");
        } else {
            self.failed += 1;
            println!("  FAIL  {what:<44} {detail}");
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        examples::init_logging();
    }
    match run().await {
        Ok(report) if report.failed == 0 => {
            println!("\nquickstart: {} checks passed", report.passed);
            std::process::ExitCode::SUCCESS
        }
        Ok(report) => {
            println!(
                "\nquickstart: {} of {} checks failed",
                report.failed,
                report.passed + report.failed
            );
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("quickstart: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<Report, Error> {
    let transport = TcpTransport::default();
    let mut providers = Vec::new();
    for i in 1..=3 {
        let server = Server::builder()
            .transport(transport.clone())
            .add_service(GreeterServer::new(Greeting::new(format!("provider-{i}"))))
            .add_service(EchoServer::new(Echoer))
            .bind("127.0.0.1:0")
            .await?;
        println!("provider-{i} listening on {}", server.local_addr());
        providers.push(server);
    }
    let addresses: Vec<String> = providers
        .iter()
        .map(|p| p.local_addr().to_string())
        .collect();
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    // The admin endpoint of this process: every provider's services and statistics.
    let mut admin = admin::Admin::builder().application("quickstart");
    for provider in &providers {
        admin = admin.server(provider.control());
    }
    let admin = admin
        .start()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    println!(
        "admin endpoint at {} (dashboard, /api/stats, /metrics)",
        admin.url()
    );

    for codec in Codec::SERDE {
        println!("\nconsumer, codec {codec}:");
        let greeter = GreeterClient::builder()
            .transport(transport.clone())
            .addresses(addresses.clone())
            .load_balance_by_name("roundrobin")
            .codec(codec)
            .build()?;

        let mut answered_by = std::collections::BTreeSet::new();
        let started = Instant::now();
        for name in ["ada", "bob", "cy"] {
            let reply = greeter.greet(name.into()).await?;
            if let Ok(text) = &reply {
                answered_by.insert(self::answered_by(text));
            }
            report.check(
                &format!("greet({name:?})"),
                matches!(&reply, Ok(text) if text.starts_with(&format!("Hello, {name}!"))),
                format!("{reply:?}"),
            );
        }
        report.check(
            "calls spread over the 3 providers",
            answered_by.len() == 3,
            format!("{answered_by:?} in {:?}", started.elapsed()),
        );

        let sum = greeter.add(40, 2).await?;
        report.check("add(40, 2)", sum == 42, sum);

        let traced = greeter
            .with_attachment("trace-id", "qs-42")
            .trace_id()
            .await?;
        report.check(
            "attachment reaches the handler",
            traced.as_deref() == Some("qs-42"),
            format!("{traced:?}"),
        );

        let logged = greeter.log("hello from the quickstart".into()).await;
        report.check("oneway log", logged.is_ok(), format!("{logged:?}"));

        let echo = EchoClient::builder()
            .transport(transport.clone())
            .addresses(addresses.clone())
            .codec(codec)
            .build()?;
        let payload = vec![7u8; 4096];
        let echoed = echo.echo(payload.clone()).await?;
        report.check(
            "echo 4 KiB",
            echoed == payload,
            format!("{} bytes", echoed.len()),
        );

        let started = Instant::now();
        let late = greeter.slow(1000).await;
        report.check(
            "slow(1000) under a 200 ms method timeout",
            late.as_ref().is_err_and(Error::is_timeout),
            format!("{} after {:?}", display(&late), started.elapsed()),
        );

        let refused = greeter.greet("   ".into()).await?;
        report.check(
            "greet(\"   \") returns the provider's error",
            refused == Err(GreetError::EmptyName),
            match &refused {
                Err(e) => format!("remote error: {e}"),
                Ok(v) => v.clone(),
            },
        );

        let wrong_version: Client = Client::builder("demo.Greeter")
            .version("9.9")
            .transport(transport.clone())
            .addresses(addresses.clone())
            .codec(codec)
            .build()?;
        let missing = examples::GreeterClient::new(wrong_version).add(1, 2).await;
        // Failover tried each provider; the root of the error is the providers' answer.
        report.check(
            "unknown version gets the provider's message",
            matches!(
                missing.as_ref().map_err(Error::root),
                Err(Error::Remote {
                    code: Code::NotFound,
                    ..
                })
            ),
            display(&missing),
        );
    }

    println!("\nload balancing: 300 greet calls over 10 names, per balancer:");
    for balancer in [
        "random",
        "roundrobin",
        "leastactive",
        "p2c",
        "shortestresponse",
        "consistenthash",
    ] {
        let greeter = GreeterClient::builder()
            .transport(transport.clone())
            .addresses(addresses.clone())
            .load_balance_by_name(balancer)
            .build()?;
        let mut spread = std::collections::BTreeMap::<String, usize>::new();
        let mut owner_of =
            std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        for i in 0..300 {
            let name = format!("user-{}", i % 10);
            if let Ok(text) = greeter.greet(name.clone()).await? {
                let provider = answered_by(&text);
                *spread.entry(provider.clone()).or_default() += 1;
                owner_of.entry(name).or_default().insert(provider);
            }
        }
        let ok = match balancer {
            // One name, one provider: the ring maps each key to the same place every time.
            "consistenthash" => owner_of.values().all(|owners| owners.len() == 1),
            "roundrobin" => spread.values().all(|count| *count == 100),
            _ => spread.values().sum::<usize>() == 300 && !spread.is_empty(),
        };
        report.check(&format!("{balancer} spread"), ok, format!("{spread:?}"));
    }

    println!("\nfailover: 60 add calls, provider-3 stopped after 20:");
    let greeter = GreeterClient::builder()
        .transport(transport.clone())
        .addresses(addresses.clone())
        .load_balance_by_name("roundrobin")
        .build()?;
    let mut answered = 0;
    let mut failures = Vec::new();
    for i in 0..60 {
        if i == 20 {
            let stopped = providers.remove(2);
            let address = stopped.local_addr();
            stopped.shutdown().await;
            println!("  stopped provider-3 ({address})");
        }
        match greeter.add(i, 1).await {
            Ok(sum) if sum == i + 1 => answered += 1,
            other => failures.push(format!("{other:?}")),
        }
    }
    report.check(
        "failover around a stopped provider",
        answered == 60,
        format!("{answered}/60 answered {failures:?}"),
    );

    registry_section(&transport, &mut report).await?;
    traffic_section(&transport, &mut report).await?;
    admin_section(&admin, &mut report).await;

    println!("\nshutting down providers (draining in-flight calls)");
    for provider in providers {
        let address = provider.local_addr();
        let started = Instant::now();
        provider.shutdown().await;
        println!("  {address} stopped in {:?}", started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(report)
}

/// The provider named in a greeting (`Hello, bob! (from provider-2)`).
fn answered_by(greeting: &str) -> String {
    greeting
        .rsplit("from ")
        .next()
        .unwrap_or("")
        .trim_end_matches(')')
        .to_owned()
}

fn display<T: std::fmt::Debug>(result: &Result<T, Error>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(error) => format!("error: {error}"),
    }
}

/// Providers found through the in-process registry: one joins and one leaves while a
/// consumer keeps calling.
async fn registry_section(transport: &TcpTransport, report: &mut Report) -> Result<(), Error> {
    println!("\nregistry (memory://quickstart): providers join and leave while a consumer calls:");
    let registry = registry::connect("memory://quickstart").await?;
    let start = |name: &'static str| {
        Server::builder()
            .registry(registry.clone())
            .application("quickstart")
            .transport(transport.clone())
            .add_service(GreeterServer::new(Greeting::new(name)))
            .bind("127.0.0.1:0")
    };
    let mut servers = vec![start("registered-1").await?, start("registered-2").await?];
    let greeter = GreeterClient::builder()
        .transport(transport.clone())
        .registry(registry.clone())
        .load_balance_by_name("roundrobin")
        .build()?;
    let listed = |greeter: &GreeterClient| greeter.client().providers().len();

    // A caller running throughout: every answer must come back, whatever moves.
    let caller = {
        let greeter = greeter.clone();
        tokio::spawn(async move {
            let (mut answered, mut failed) = (0u32, Vec::new());
            for i in 0..400i64 {
                match greeter.add(i, 1).await {
                    Ok(sum) if sum == i + 1 => answered += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (answered, failed)
        })
    };
    let names = greet_names(&greeter, 20).await;
    report.check(
        "consumer finds 2 registered providers",
        listed(&greeter) == 2 && names.len() == 2,
        format!("{names:?}"),
    );

    let joined = Instant::now();
    servers.push(start("registered-3").await?);
    let seen = wait_for(|| listed(&greeter) == 3).await;
    let names = greet_names(&greeter, 30).await;
    report.check(
        "a joining provider is called",
        seen && names.contains("registered-3"),
        format!("listed after {:?}; {names:?}", joined.elapsed()),
    );

    let left = Instant::now();
    servers.remove(0).shutdown().await;
    let gone = wait_for(|| listed(&greeter) == 2).await;
    let names = greet_names(&greeter, 30).await;
    report.check(
        "a leaving provider is dropped",
        gone && !names.contains("registered-1"),
        format!("unlisted after {:?}; {names:?}", left.elapsed()),
    );

    let (answered, failed) = caller
        .await
        .map_err(|e| Error::Config(format!("caller task: {e}")))?;
    report.check(
        "no call failed while providers moved",
        failed.is_empty(),
        format!("{answered}/400 answered {failed:?}"),
    );
    for server in servers {
        server.shutdown().await;
    }
    Ok(())
}

/// A few numbers from the admin endpoint, read over HTTP as an operator would.
async fn admin_section(admin: &admin::AdminHandle, report: &mut Report) {
    println!("\nadmin endpoint {}:", admin.url());
    let ready = examples::http::request("GET", &format!("{}ready", admin.url()), None, None).await;
    report.check(
        "GET /ready answers 200 (a stopped provider aside)",
        matches!(ready, Ok((200, _))),
        format!("{:?}", ready.as_ref().map(|(status, _)| status)),
    );
    let stats = examples::http::request("GET", &format!("{}api/stats", admin.url()), None, None)
        .await
        .and_then(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(&body).map_err(|e| e.to_string())
        });
    let methods = match &stats {
        Ok(stats) => stats["methods"].as_array().cloned().unwrap_or_default(),
        Err(error) => {
            report.check("GET /api/stats", false, error);
            return;
        }
    };
    println!(
        "  {:<9} {:<22} {:>7} {:>7} {:>9} {:>9}",
        "side", "method", "calls", "failed", "p50", "p99"
    );
    for m in methods
        .iter()
        .filter(|m| m["total"].as_u64().unwrap_or(0) > 0)
    {
        println!(
            "  {:<9} {:<22} {:>7} {:>7} {:>7}µs {:>7}µs",
            m["side"].as_str().unwrap_or("?"),
            format!(
                "{}.{}",
                m["service"]
                    .as_str()
                    .unwrap_or("?")
                    .rsplit('.')
                    .next()
                    .unwrap_or("?"),
                m["method"].as_str().unwrap_or("?")
            ),
            m["total"].as_u64().unwrap_or(0),
            m["failed_total"].as_u64().unwrap_or(0),
            m["latency_us"]["p50"].as_u64().unwrap_or(0),
            m["latency_us"]["p99"].as_u64().unwrap_or(0),
        );
    }
    let greets = methods
        .iter()
        .filter(|m| m["side"] == "provider" && m["method"] == "greet")
        .map(|m| m["total"].as_u64().unwrap_or(0))
        .sum::<u64>();
    report.check(
        "the admin endpoint counted the greet calls",
        greets > 0,
        format!("{greets} served"),
    );
}

/// The providers that answered `calls` greetings.
async fn greet_names(greeter: &GreeterClient, calls: usize) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for i in 0..calls {
        if let Ok(Ok(greeting)) = greeter.greet(format!("guest-{i}")).await {
            names.insert(answered_by(&greeting));
        }
    }
    names
}

/// Polls `done` until it holds (true) or 5 s pass (false).
async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// A rate limit refusing a burst, then a circuit breaker opening on a provider that refuses
/// calls and closing once it recovers (its limit removed at run time).
async fn traffic_section(transport: &TcpTransport, report: &mut Report) -> Result<(), Error> {
    use rpc_core::client::{BreakerConfig, BreakerState, ClusterMode};
    use rpc_core::limit::{RateLimit, Rule, Scope};

    println!("\ntraffic control: a burst of 50 add calls against a limit of 20 calls/s:");
    let add = Scope::Method("demo.Greeter".into(), "add".into());
    let start = |name: &'static str, limit: Option<u32>| {
        let mut builder = Server::builder()
            .transport(transport.clone())
            .add_service(GreeterServer::new(Greeting::new(name)));
        if let Some(limit) = limit {
            builder = builder.limit(add.clone(), Rule::rate(RateLimit::per_second(limit)));
        }
        builder.bind("127.0.0.1:0")
    };
    let limited = start("limited", Some(20)).await?;
    let greeter = GreeterClient::builder()
        .transport(transport.clone())
        .address(limited.local_addr().to_string())
        .cluster(ClusterMode::Failfast)
        .build()?;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let greeter = greeter.clone();
            tokio::spawn(async move { greeter.add(i, 1).await })
        })
        .collect();
    let (mut admitted, mut refused, mut other) = (0, Vec::new(), Vec::new());
    for call in calls {
        match call.await {
            Ok(Ok(_)) => admitted += 1,
            Ok(Err(Error::Rejected(message))) => refused.push(message),
            outcome => other.push(format!("{outcome:?}")),
        }
    }
    report.check(
        "the limit admits its bucket, refuses the rest",
        (20..=22).contains(&admitted) && other.is_empty(),
        format!(
            "{admitted} admitted, {} refused with status 100",
            refused.len()
        ),
    );
    if let Some(message) = refused.first() {
        println!("  refusal: {message}");
    }
    limited.shutdown().await;

    println!("\ncircuit breaker: one of 3 providers refuses add (limit 1 call/s), then recovers:");
    let sick = start("sick", Some(1)).await?;
    let healthy = [
        start("healthy-1", None).await?,
        start("healthy-2", None).await?,
    ];
    let sick_address = sick.local_addr().to_string();
    let greeter = GreeterClient::builder()
        .transport(transport.clone())
        .address(sick_address.clone())
        .addresses(healthy.iter().map(|s| s.local_addr().to_string()))
        .load_balance_by_name("roundrobin")
        .circuit_breaker(
            BreakerConfig::default()
                .window(Duration::from_secs(10), 10)
                .recovery(Duration::from_millis(500), 3),
        )
        .build()?;
    let traffic = greeter.client().traffic();
    let sick_breaker = || {
        traffic
            .breakers()
            .into_iter()
            .find(|b| b.provider == sick_address)
    };
    let mut answered = 0;
    for i in 0..60 {
        // Failover takes a refused call to another provider: the caller never notices.
        if greeter.add(i, 1).await.is_ok() {
            answered += 1;
        }
    }
    let opened = sick_breaker();
    report.check(
        "the breaker opens on the refusing provider",
        answered == 60
            && opened
                .as_ref()
                .is_some_and(|b| b.state == BreakerState::Open),
        format!("{answered}/60 answered; {opened:?}"),
    );
    sick.limits().remove(&add);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..30 {
        greeter.add(i, 1).await?;
    }
    let closed = sick_breaker();
    report.check(
        "probes close it once the provider recovers",
        closed
            .as_ref()
            .is_some_and(|b| b.state == BreakerState::Closed && b.closed == 1),
        format!("{closed:?}"),
    );
    sick.shutdown().await;
    for server in healthy {
        server.shutdown().await;
    }
    Ok(())
}
