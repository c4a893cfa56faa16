//! Heap allocations per echo call, on the consumer and on the provider side separately.
//!
//! ```text
//! allocs [--calls 100000] [--warmup 10000] [--concurrency 1,64] [--size 64]
//! ```
//!
//! The two sides run in two processes, each counting every allocation of its own with a
//! counting global allocator ([`stats_alloc`]): this process is the consumer, and it
//! re-executes itself as `allocs serve` for the provider. So nothing needs attributing
//! to a side: whatever the provider process allocates is the provider's. Both use the
//! public API with its defaults (`#[service]` echo, `Server::builder()`,
//! `EchoClient::builder()`, `TcpTransport::default()`, the default codec, loopback).
//!
//! For each concurrency, after `--warmup` calls (connection, statistics tables, maps at
//! their working size), both processes read their counters, `--calls` calls run (in
//! `concurrency` tasks on one connection), and both read them again; the growth divided
//! by the calls is the figure. The provider reads its counters when this process asks on
//! its stdin (`mark`), and answers on its stdout.
//!
//! What the user's own code allocates is shown apart: on the consumer the argument
//! (`payload.clone()`, since the stub takes the `Vec<u8>` by value) and the decoded
//! result, on the provider the decoded argument (which the echo hands back). One line
//! per concurrency on stdout:
//!
//! ```text
//! concurrency=1 calls=100000 client_allocs_per_call=9.00 client_framework=7.00 client_bytes_per_call=812 server_allocs_per_call=6.00 server_framework=5.00 server_bytes_per_call=600
//! ```

use std::alloc::System;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use benches::rpc_echo::{self, EchoClient};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use transports::TcpTransport;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations the user's code makes per call, consumer side: the argument the loop
/// clones for the by-value stub parameter, and the decoded `Vec<u8>` result.
const CLIENT_USER_ALLOCS: f64 = 2.0;

/// Allocations the user's code makes per call, provider side: the decoded `Vec<u8>`
/// argument (the echo returns it, so the result costs nothing more).
const SERVER_USER_ALLOCS: f64 = 1.0;

const USAGE: &str = "usage: allocs [--calls N] [--warmup N] [--concurrency N,N..] [--size N]";

struct Options {
    calls: usize,
    warmup: usize,
    concurrency: Vec<usize>,
    size: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            calls: 100_000,
            warmup: 10_000,
            concurrency: vec![1, 64],
            size: 64,
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let value = iter
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = |v: &str| {
                v.parse::<usize>()
                    .map_err(|e| format!("{flag} {v}: {e}\n{USAGE}"))
            };
            match flag.as_str() {
                "--calls" => options.calls = number(value)?.max(1),
                "--warmup" => options.warmup = number(value)?,
                "--size" => options.size = number(value)?,
                "--concurrency" => {
                    options.concurrency = value
                        .split(',')
                        .map(|v| number(v).map(|n| n.max(1)))
                        .collect::<Result<_, _>>()?;
                }
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

/// Counters of this process: allocations (a reallocation counts as one), bytes asked for.
#[derive(Clone, Copy)]
struct Count {
    allocs: u64,
    bytes: u64,
}

impl Count {
    fn now() -> Count {
        let stats = GLOBAL.stats();
        Count {
            allocs: (stats.allocations + stats.reallocations) as u64,
            bytes: (stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize) as u64,
        }
    }

    fn since(self, earlier: Count) -> Count {
        Count {
            allocs: self.allocs - earlier.allocs,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// The provider: serves the echo, prints its address, then answers every `mark` on stdin
/// with its counters; exits when stdin closes.
fn serve() -> Result<(), String> {
    let rt = benches::runtime(2).map_err(|e| format!("runtime: {e}"))?;
    let addr = rt
        .block_on(rpc_echo::serve_defaults(TcpTransport::default()))
        .map_err(|e| format!("bind: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{addr}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim() == "mark" {
            let count = Count::now();
            writeln!(out, "{} {}", count.allocs, count.bytes).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
    }
    drop(rt);
    Ok(())
}

/// The provider process, driven through its stdin and stdout.
struct Provider {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Provider {
    fn start() -> Result<(Provider, SocketAddr), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn provider: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("provider without pipes".into());
        };
        let mut provider = Provider {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let addr = provider
            .line()?
            .parse()
            .map_err(|e| format!("provider address: {e}"))?;
        Ok((provider, addr))
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("provider: {e}"))?;
        if line.is_empty() {
            return Err("provider exited".into());
        }
        Ok(line.trim().to_owned())
    }

    fn mark(&mut self) -> Result<Count, String> {
        writeln!(self.stdin, "mark").map_err(|e| format!("provider: {e}"))?;
        self.stdin.flush().map_err(|e| format!("provider: {e}"))?;
        let line = self.line()?;
        let mut numbers = line.split(' ').map(|n| n.parse::<u64>());
        match (numbers.next(), numbers.next()) {
            (Some(Ok(allocs)), Some(Ok(bytes))) => Ok(Count { allocs, bytes }),
            _ => Err(format!("provider counters: {line:?}")),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `calls` echo calls of `size` bytes in `concurrency` tasks sharing `client`.
async fn run(client: &EchoClient, calls: usize, concurrency: usize, size: usize) -> usize {
    let payload = vec![7u8; size];
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let client = client.clone();
            let payload = payload.clone();
            let share = calls / concurrency + usize::from(task < calls % concurrency);
            tokio::spawn(async move {
                let mut failed = 0;
                for _ in 0..share {
                    match client.echo(payload.clone()).await {
                        Ok(back) if back.len() == payload.len() => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        // A task that panicked counts as having failed every call.
        failed += task.await.unwrap_or(calls);
    }
    failed
}

fn measure(options: &Options) -> Result<(), String> {
    let (mut provider, addr) = Provider::start()?;
    let rt = benches::runtime(2).map_err(|e| format!("runtime: {e}"))?;
    let client = rt.block_on(async {
        EchoClient::builder()
            .transport(TcpTransport::default())
            .address(addr.to_string())
            .build()
            .map_err(|e| format!("client: {e}"))
    })?;
    eprintln!(
        "allocs: provider at {addr}, {} B payload, {} calls after {} warm-up calls per run",
        options.size, options.calls, options.warmup
    );
    for &concurrency in &options.concurrency {
        let client = client.clone();
        let failed = rt.block_on(run(&client, options.warmup, concurrency, options.size));
        if failed > 0 {
            return Err(format!("{failed} warm-up calls failed"));
        }
        // Let the last answers' bookkeeping settle on both sides before reading.
        std::thread::sleep(Duration::from_millis(100));
        let (client_before, server_before) = (Count::now(), provider.mark()?);
        let failed = rt.block_on(run(&client, options.calls, concurrency, options.size));
        std::thread::sleep(Duration::from_millis(100));
        let (client_used, server_used) = (
            Count::now().since(client_before),
            provider.mark()?.since(server_before),
        );
        if failed > 0 {
            return Err(format!("{failed} calls failed"));
        }
        let per_call = |n: u64| n as f64 / options.calls as f64;
        let (client_allocs, server_allocs) =
            (per_call(client_used.allocs), per_call(server_used.allocs));
        println!(
            "concurrency={concurrency} calls={} client_allocs_per_call={client_allocs:.2} \
             client_framework={:.2} client_bytes_per_call={:.0} server_allocs_per_call={server_allocs:.2} \
             server_framework={:.2} server_bytes_per_call={:.0}",
            options.calls,
            client_allocs - CLIENT_USER_ALLOCS,
            per_call(client_used.bytes),
            server_allocs - SERVER_USER_ALLOCS,
            per_call(server_used.bytes),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(),
        _ => Options::parse(&args).and_then(|options| measure(&options)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("allocs: {message}");
            ExitCode::FAILURE
        }
    }
}
