//! One command, no external server: three providers on ephemeral ports, a consumer calling
//! them with both codecs, a deadline that expires and a remote error, then a summary.
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

    for codec in Codec::ALL {
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
            matches!(late, Err(Error::Timeout(_))),
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
