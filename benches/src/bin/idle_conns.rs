//! Provider memory per idle connection: RSS of a provider before and after `--connections`
//! clients connect to it, make one call each and then stay idle.
//!
//! ```text
//! idle_conns [--connections 10000]
//! ```
//!
//! This process is the provider (`Server::builder()`, `TcpTransport` defaults except
//! room for the connections, the `#[service]` echo); it re-executes itself as
//! `idle_conns clients --addr ADDR --connections N` for the consumers, so their memory is
//! not counted. Each consumer is an `EchoClient` of its own transport (one connection
//! each), makes one 64 B echo call, and keeps its connection open; the consumer process
//! prints `ready` once every call succeeded. The provider reads its `VmRSS`
//! (`/proc/self/status`) before the consumers start and one second after `ready`. Both
//! processes raise their open-file limit to the hard limit first. One line on stdout:
//!
//! ```text
//! connections=10000 rss_before_kib=9000 rss_after_kib=200000 per_connection_kib=19.1
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use benches::rpc_echo::{self, EchoClient};
use transports::{TcpConfig, TcpTransport};

const USAGE: &str = "usage: idle_conns [--connections N]";

/// Connections opened at once by the consumer process.
const OPENING_AT_ONCE: usize = 200;

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
fn raise_nofile() -> Result<u64, String> {
    rlimit::increase_nofile_limit(u64::MAX).map_err(|e| format!("raise RLIMIT_NOFILE: {e}"))
}

/// This process's resident set, in KiB.
fn rss_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_owned())
}

fn parse(args: &[String]) -> Result<(usize, Option<SocketAddr>), String> {
    let (mut connections, mut addr) = (10_000, None);
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--connections" => {
                connections = value
                    .parse()
                    .map_err(|e| format!("--connections {value}: {e}\n{USAGE}"))?
            }
            "--addr" => addr = Some(value.parse().map_err(|e| format!("--addr {value}: {e}"))?),
            "--bench" => {}
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok((connections, addr))
}

/// The consumers: `connections` clients of their own, one call each, then idle until
/// stdin closes.
fn clients(addr: SocketAddr, connections: usize) -> Result<(), String> {
    let limit = raise_nofile()?;
    if (limit as usize) < connections + 64 {
        eprintln!("idle_conns: consumer open-file limit {limit} < {connections} connections");
    }
    let rt = benches::runtime(2).map_err(|e| format!("runtime: {e}"))?;
    let held = rt.block_on(async {
        let mut held = Vec::with_capacity(connections);
        let mut pending = Vec::new();
        for _ in 0..connections {
            let client = EchoClient::builder()
                .transport(TcpTransport::default())
                .address(addr.to_string())
                .timeout(Duration::from_secs(30))
                .without_stats()
                .build()
                .map_err(|e| format!("client: {e}"))?;
            let caller = client.clone();
            pending.push(tokio::spawn(
                async move { caller.echo(vec![7u8; 64]).await },
            ));
            held.push(client);
            if pending.len() == OPENING_AT_ONCE {
                for call in pending.drain(..) {
                    call.await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("call: {e}"))?;
                }
            }
        }
        for call in pending.drain(..) {
            call.await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("call: {e}"))?;
        }
        Ok::<_, String>(held)
    })?;
    println!("ready");
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
    drop(held);
    drop(rt);
    Ok(())
}

fn provider(connections: usize) -> Result<(), String> {
    let limit = raise_nofile()?;
    if (limit as usize) < connections + 64 {
        eprintln!(
            "idle_conns: open-file limit {limit} (the hard limit) < {connections} connections; \
             the run will fall short"
        );
    }
    let rt = benches::runtime(2).map_err(|e| format!("runtime: {e}"))?;
    let transport = TcpTransport::new(TcpConfig::default().max_connections(connections + 100));
    let addr = rt
        .block_on(rpc_echo::serve_defaults(transport))
        .map_err(|e| format!("bind: {e}"))?;
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib()?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .args(["clients", "--addr", &addr.to_string()])
        .args(["--connections", &connections.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn consumers: {e}"))?;
    let started = Instant::now();
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let ready = line.trim() == "ready";
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib()?;
    drop(child.stdin.take());
    let _ = child.wait();
    if !ready {
        return Err("the consumers did not all connect and call (see their error above)".into());
    }
    eprintln!("idle_conns: {connections} connections opened and called in {opened:.1?}");
    println!(
        "connections={connections} rss_before_kib={before} rss_after_kib={after} \
         per_connection_kib={:.1}",
        after.saturating_sub(before) as f64 / connections as f64
    );
    drop(rt);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((mode, rest)) if mode == "clients" => parse(rest).and_then(|(n, addr)| match addr {
            Some(addr) => clients(addr, n),
            None => Err(format!("clients needs --addr\n{USAGE}")),
        }),
        _ => parse(&args).and_then(|(n, _)| provider(n)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("idle_conns: {message}");
            ExitCode::FAILURE
        }
    }
}
