//! How fast a consumer's directory follows its registry: the time from a provider's
//! `register` (or `unregister`) call to the moment a registry-fed client lists (or stops
//! listing) it, over N changes.
//!
//! ```text
//! registry-latency --registry URL [--registry URL ...] [--changes 100]
//! ```
//!
//! The provider side and the consumer side open the registry separately (two sessions, as
//! two processes would). The consumer's list is polled without sleeping (tokio's timer
//! resolution is a millisecond), so figures are in microseconds. One line per registry:
//!
//! ```text
//! registry=file register_p50_ms=.. register_p99_ms=.. unregister_p50_ms=.. unregister_p99_ms=..
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use registry::ProviderUrl;
use rpc_core::Client;
use transports::TcpTransport;

const USAGE: &str = "usage: registry-latency --registry URL [--registry URL ...] [--changes N]";

/// Longest a change may take to show before the run is declared failed.
const GIVE_UP: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut registries = Vec::new();
    let mut changes = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--registry", Some(url)) => registries.push(url),
            ("--changes", Some(n)) if n.parse::<usize>().is_ok_and(|n| n > 0) => {
                changes = n.parse().unwrap_or(100);
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    if registries.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    }
    for url in registries {
        match measure(&url, changes).await {
            Ok(line) => println!("{line}"),
            Err(error) => {
                eprintln!("registry-latency: {url}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

async fn measure(url: &str, changes: usize) -> Result<String, String> {
    let provider_side = registry::connect(url).await.map_err(|e| e.to_string())?;
    let consumer_side = registry::connect(url).await.map_err(|e| e.to_string())?;
    let service = format!("bench.Latency{}", std::process::id());
    let client = Client::builder(service.clone())
        .transport(TcpTransport::default())
        .registry(consumer_side.clone())
        .registry_cache(std::env::temp_dir().join(format!("{service}.cache")))
        .build()
        .map_err(|e| e.to_string())?;
    let url_of = |i: usize| ProviderUrl::new("tcp", &format!("127.0.0.1:{}", 10_000 + i), &service);
    let listed = |address: &str| client.providers().iter().any(|p| &*p.address == address);

    // One provider stays throughout: an empty list is never pushed into the directory.
    let anchor = url_of(0);
    provider_side
        .register(&anchor)
        .await
        .map_err(|e| e.to_string())?;
    wait_until(|| listed(anchor.address())).await?;

    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for i in 1..=changes {
        let url = url_of(i);
        let started = Instant::now();
        provider_side
            .register(&url)
            .await
            .map_err(|e| e.to_string())?;
        wait_until(|| listed(url.address())).await?;
        added.push(started.elapsed());

        let started = Instant::now();
        provider_side
            .unregister(&url)
            .await
            .map_err(|e| e.to_string())?;
        wait_until(|| !listed(url.address())).await?;
        removed.push(started.elapsed());
    }
    provider_side.close().await;
    consumer_side.close().await;
    let scheme = url.split("://").next().unwrap_or(url);
    Ok(format!(
        "registry={scheme} changes={changes} register_p50_ms={:.2} register_p99_ms={:.2} unregister_p50_ms={:.2} unregister_p99_ms={:.2}",
        percentile(&mut added, 50),
        percentile(&mut added, 99),
        percentile(&mut removed, 50),
        percentile(&mut removed, 99),
    ))
}

/// Polls `done` (yielding, not sleeping) until it holds.
async fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > GIVE_UP {
            return Err(format!("a change did not show within {GIVE_UP:?}"));
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// The `p`th percentile of `samples`, in milliseconds.
fn percentile(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    let index = (samples.len() * p / 100).min(samples.len().saturating_sub(1));
    samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
