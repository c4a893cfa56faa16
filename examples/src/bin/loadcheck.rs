//! A consumer that calls at a fixed rate, checks every answer and accounts for every call:
//! the load side of `scripts/chaos.sh`.
//!
//! `loadcheck --registry URL --rate 2000 --seconds 10 --method add|greet
//!  [--balancer NAME] [--cache FILE] [--timeout-ms 1000] [--retries N]`
//!
//! `--addresses A,B,C` calls that static list instead of the registry's (scenario
//! `netfault` reaches one provider through a relay); `--heartbeat-ms N --idle-timeout-ms N`
//! shorten the TCP transport's heartbeat and idle timeout (defaults 60 s and 180 s).
//!
//! While it runs it prints one `providers at_ms=EPOCH_MS count=N list=A,B` line each time the
//! provider list it calls changes. At the end it waits for every call still under way (each
//! has a deadline, so this ends), then prints
//! `calls=N ok=N failed=N lost=N p50_ms=X p99_ms=X max_ms=X` and, per error, how many calls
//! failed with it. A call is *lost* when it was sent but neither answered nor failed within
//! its deadline plus a grace period: the framework's promise is that this never happens.
//! `add` is idempotent (failover retries it wherever it may have run); `greet` is not.
//!
//! `loadcheck --churn 1000 --connect HOST:PORT` instead opens a new connection to one
//! provider, makes one call and closes it, that many times (connection churn).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use examples::{GreeterClient, exit_code, init_logging, parse_flags};
use tokio::sync::mpsc;
use transports::TcpTransport;

/// How long after its deadline a call may still report before it counts as lost.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Add,
    Greet,
}

struct Settings {
    registry: String,
    rate: u64,
    run_for: Duration,
    method: Method,
    balancer: Option<String>,
    cache: Option<String>,
    timeout: Duration,
    retries: Option<u32>,
    churn: u64,
    connect: Option<String>,
    addresses: Vec<String>,
    heartbeat: Option<Duration>,
    idle_timeout: Option<Duration>,
}

/// What one call came to.
enum Outcome {
    Ok(Duration),
    Failed(String),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    exit_code("loadcheck", run().await)
}

fn parse() -> Result<Settings, String> {
    let mut settings = Settings {
        registry: examples::default_registry(),
        rate: 1000,
        run_for: Duration::from_secs(10),
        method: Method::Add,
        balancer: None,
        cache: None,
        timeout: Duration::from_secs(1),
        retries: None,
        churn: 0,
        connect: None,
        addresses: Vec::new(),
        heartbeat: None,
        idle_timeout: None,
    };
    let flags = [
        "--registry",
        "--rate",
        "--seconds",
        "--method",
        "--balancer",
        "--cache",
        "--timeout-ms",
        "--retries",
        "--churn",
        "--connect",
        "--addresses",
        "--heartbeat-ms",
        "--idle-timeout-ms",
    ];
    for (flag, value) in parse_flags(&flags)? {
        let number = |value: &str| {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--registry" => settings.registry = value,
            "--rate" => settings.rate = number(&value)?.max(1),
            "--seconds" => settings.run_for = Duration::from_secs_f64(number(&value)? as f64),
            "--method" => {
                settings.method = match value.as_str() {
                    "add" => Method::Add,
                    "greet" => Method::Greet,
                    other => return Err(format!("--method {other}: expected add or greet")),
                }
            }
            "--balancer" => settings.balancer = Some(value),
            "--cache" => settings.cache = Some(value),
            "--timeout-ms" => settings.timeout = Duration::from_millis(number(&value)?),
            "--churn" => settings.churn = number(&value)?,
            "--connect" => settings.connect = Some(value),
            "--addresses" => settings.addresses = value.split(',').map(str::to_owned).collect(),
            "--heartbeat-ms" => settings.heartbeat = Some(Duration::from_millis(number(&value)?)),
            "--idle-timeout-ms" => {
                settings.idle_timeout = Some(Duration::from_millis(number(&value)?))
            }
            _ => {
                settings.retries =
                    Some(u32::try_from(number(&value)?).map_err(|e| format!("--retries: {e}"))?)
            }
        }
    }
    Ok(settings)
}

async fn run() -> Result<(), String> {
    let settings = parse()?;
    if let Some(address) = &settings.connect {
        return churn(address, settings.churn.max(1), settings.timeout).await;
    }
    let defaults = transports::TcpConfig::default();
    let transport = TcpTransport::new(defaults.clone().heartbeat(
        settings.heartbeat.unwrap_or(defaults.heartbeat_interval),
        settings.idle_timeout.unwrap_or(defaults.idle_timeout),
    ));
    let mut builder = GreeterClient::builder().transport(transport);
    if settings.addresses.is_empty() {
        let registry = registry::connect(&settings.registry)
            .await
            .map_err(|e| e.to_string())?;
        builder = builder.registry(registry);
    } else {
        builder = builder.addresses(settings.addresses.clone());
    }
    let mut builder = builder
        .application("examples-loadcheck")
        .timeout(settings.timeout);
    if let Some(cache) = &settings.cache {
        builder = builder.registry_cache(cache);
    }
    if let Some(balancer) = &settings.balancer {
        builder = builder.load_balance_by_name(balancer.clone());
    }
    if let Some(retries) = settings.retries {
        builder = builder.retries(retries);
    }
    let greeter: GreeterClient = builder.build().map_err(|e| e.to_string())?;
    let watcher = tokio::spawn(watch_providers(greeter.client().clone()));

    let (done, mut outcomes) = mpsc::unbounded_channel::<Outcome>();
    // Outcomes are counted as they come, into fixed-size counters: the consumer's memory
    // is what the soak watches, so its own bookkeeping must not grow with the calls.
    let tally = std::sync::Arc::new(std::sync::Mutex::new(Tally::new()));
    let collector = tokio::spawn({
        let tally = tally.clone();
        async move {
            while let Some(outcome) = outcomes.recv().await {
                tally.lock().unwrap_or_else(|p| p.into_inner()).add(outcome);
            }
        }
    });
    let mut sent = 0u64;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < settings.run_for {
        ticks.tick().await;
        // Every call due by now, so the rate holds when a tick comes late.
        let due = (started.elapsed().as_secs_f64() * settings.rate as f64) as u64;
        while sent < due {
            let (greeter, done, method, n) = (greeter.clone(), done.clone(), settings.method, sent);
            tokio::spawn(async move {
                let _ = done.send(call(&greeter, method, n).await);
            });
            sent += 1;
        }
    }
    drop(done);
    // The collector ends once every call reported; calls that never did are the lost ones.
    let give_up = tokio::time::Instant::now() + settings.timeout + GRACE;
    let _ = tokio::time::timeout_at(give_up, collector).await;
    watcher.abort();
    let tally = std::mem::replace(
        &mut *tally.lock().unwrap_or_else(|p| p.into_inner()),
        Tally::new(),
    );
    tally.summarize(sent);
    Ok(())
}

/// One connection per call, `cycles` times: each client has a transport of its own, so its
/// connection closes when the client is dropped.
async fn churn(address: &str, cycles: u64, timeout: Duration) -> Result<(), String> {
    let mut tally = Tally::new();
    for n in 0..cycles {
        let greeter: GreeterClient = GreeterClient::builder()
            .address(address)
            .transport(TcpTransport::default())
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        tally.add(call(&greeter, Method::Add, n).await);
    }
    tally.summarize(cycles);
    Ok(())
}

/// Calls answered and failed so far, with the answers' latencies in a histogram (fixed
/// size, microseconds, 3 significant digits).
struct Tally {
    ok: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    latencies: hdrhistogram::Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
            // Auto-resizing from a small start: never fails to record a latency.
            // invariant: 3 significant digits is within hdrhistogram's valid 0..=5.
            latencies: hdrhistogram::Histogram::new(3).expect("3 significant digits is valid"),
        }
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok(latency) => {
                self.ok += 1;
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = self.latencies.record(micros);
            }
            Outcome::Failed(error) => {
                self.failed += 1;
                *self.errors.entry(error).or_default() += 1;
            }
        }
    }

    fn summarize(&self, sent: u64) {
        let lost = sent.saturating_sub(self.ok + self.failed);
        let ms = |q: f64| match self.latencies.len() {
            0 => 0.0,
            _ => self.latencies.value_at_quantile(q) as f64 / 1000.0,
        };
        println!(
            "calls={sent} ok={} failed={} lost={lost} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.ok,
            self.failed,
            ms(0.50),
            ms(0.99),
            match self.latencies.len() {
                0 => 0.0,
                _ => self.latencies.max() as f64 / 1000.0,
            }
        );
        for (error, count) in &self.errors {
            println!("error count={count} {error}");
        }
    }
}

async fn call(greeter: &GreeterClient, method: Method, n: u64) -> Outcome {
    let started = Instant::now();
    let checked = match method {
        Method::Add => {
            let (a, b) = (n as i64, 7i64);
            match greeter.add(a, b).await {
                Ok(sum) if sum == a + b => Ok(()),
                Ok(sum) => Err(format!("wrong answer: add({a}, {b}) gave {sum}")),
                Err(error) => Err(error.to_string()),
            }
        }
        Method::Greet => {
            let name = format!("call-{n}");
            match greeter.greet(name.clone()).await {
                Ok(Ok(text)) if text.starts_with(&format!("Hello, {name}!")) => Ok(()),
                Ok(Ok(text)) => Err(format!("wrong answer: greet({name}) gave {text:?}")),
                Ok(Err(refused)) => Err(format!("refused: {refused}")),
                Err(error) => Err(error.to_string()),
            }
        }
    };
    match checked {
        Ok(()) => Outcome::Ok(started.elapsed()),
        Err(error) => Outcome::Failed(error),
    }
}

/// Prints the provider list each time it changes, stamped with the wall clock so a script
/// can set it against the moment it killed or started a process.
async fn watch_providers(client: rpc_core::Client) {
    let mut last: Option<Vec<String>> = None;
    loop {
        let mut list: Vec<String> = client
            .providers()
            .iter()
            .map(|p| p.address.to_string())
            .collect();
        list.sort();
        if last.as_ref() != Some(&list) {
            let at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            println!(
                "providers at_ms={at_ms} count={} list={}",
                list.len(),
                list.join(",")
            );
            last = Some(list);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
