//! Load generator: echo throughput and latency of our framework against tarpc and tonic;
//! `rpc` is our TCP transport, `rpc-h2` our HTTP/2 (gRPC) transport, the one to hold
//! against tonic, and `raw` the ceiling: the same pipelined echo on bare tokio
//! ([`benches::raw_echo`]).
//!
//! ```text
//! loadgen [--secs 10] [--warmup 1] [--concurrency 64] [--size 64] [--threads 2]
//!         [--rounds 1] [--systems raw,rpc,rpc-h2,tarpc,tonic]
//! ```
//!
//! For each system the server runs in a child process (this binary re-executed as
//! `loadgen serve --system NAME --addr 127.0.0.1:0 --threads N`, which prints its bound
//! address on stdout and exits when its stdin closes). This process opens ONE connection
//! to it and runs `concurrency` tasks on it, each calling `echo(payload)` in a loop. Calls
//! started during the warm-up are not counted; the latency of every later call goes into
//! an HDR histogram, and the CPU time both processes spend in that window (every thread's
//! `/proc/PID/task/TID/schedstat`) is divided by the calls made in it. With `--rounds N`
//! the systems run N times, alternating (in reverse order every other round), and the
//! round with the median throughput is reported (per-round lines go to stderr), after the
//! median over rounds of the per-round ratios of every pair of systems (`raw` always the
//! divisor). One line per system on stdout, then ratio lines of `rpc` against the others:
//!
//! ```text
//! per-round rpc/tarpc qps median=2.31x cpu_per_call median=0.52x rounds=[..] cpu_rounds=[..]
//! system=rpc qps=N p50_us=N p99_us=N p999_us=N errors=N client_cpu_us_per_call=N server_cpu_us_per_call=N
//! ratio rpc/tarpc qps=2.31x p50=0.40x p99=0.42x
//! ratio rpc-h2/tonic qps=1.30x p50=0.80x p99=0.75x
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use benches::stats::{CpuPerCall, Recorder, Summary};
use benches::{proto_echo, raw_echo, rpc_echo, tarpc_echo, tls_echo, tonic_echo};

/// The systems run by default. `raw` is the ceiling: length-prefixed frames with a
/// request id echoed on bare tokio, the client matching answers to callers by id.
const SYSTEMS: [&str; 5] = ["raw", "rpc", "rpc-h2", "tarpc", "tonic"];

/// The ceiling, the divisor of every per-round ratio it is part of.
const RAW: &str = "raw";

/// The largest `--size`: 8 MiB. Every system's limits are raised to carry it.
const MAX_SIZE: usize = 8 * 1024 * 1024;

/// Systems run only when asked for: `rpc-bare` is our client without its consumer stack
/// (deadline, cluster, load balancer, provider statistics), calling the transport's channel
/// directly, to measure what the stack costs (`rpc-h2-bare`: the same over HTTP/2,
/// against `rpc-h2`'s server); `rpc-nostats` is `rpc` with the call
/// statistics (the admin endpoint's numbers) switched off on both sides. `rpc-limited`
/// is `rpc` with a rate limit and an `executes` cap that never trigger, `rpc-breaker` with
/// a client circuit breaker that stays closed, `rpc-redis` with a Redis-shared rate limit
/// that never triggers (the Redis URL in `RPC_BENCH_REDIS`, e.g. `redis://127.0.0.1:6379`),
/// `rpc-token` with Dubbo's token checked on every call. `rpc-tls` and `rpc-h2-tls` are
/// `rpc` and `rpc-h2` over TLS (rustls, a certificate made for the run). `rpc-json` is
/// `rpc` in JSON instead of bincode, `rpc-proto` the same echo with a protobuf message
/// ([`benches::proto_echo`]) in protobuf, both over TCP: the codecs compared end to end.
const EXTRA_SYSTEMS: [&str; 11] = [
    "rpc-bare",
    "rpc-h2-bare",
    "rpc-nostats",
    "rpc-limited",
    "rpc-breaker",
    "rpc-redis",
    "rpc-token",
    "rpc-tls",
    "rpc-h2-tls",
    "rpc-json",
    "rpc-proto",
];

const USAGE: &str = "usage: loadgen [--secs N] [--warmup N] [--concurrency N] [--size N (<= 8388608)] \
                     [--threads N] [--rounds N] [--systems raw,rpc,rpc-h2,tarpc,tonic]\n       \
                     loadgen serve --system NAME [--addr HOST:PORT] [--threads N]";

#[derive(Debug, Clone)]
struct Options {
    secs: f64,
    warmup: f64,
    concurrency: usize,
    size: usize,
    threads: usize,
    rounds: usize,
    systems: Vec<String>,
    // `serve` mode only.
    system: Option<String>,
    addr: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            secs: 10.0,
            warmup: 1.0,
            concurrency: 64,
            size: 64,
            threads: 2,
            rounds: 1,
            systems: SYSTEMS.iter().map(|s| (*s).to_owned()).collect(),
            system: None,
            addr: "127.0.0.1:0".to_owned(),
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || {
                iter.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            fn number<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
                v.parse()
                    .map_err(|_| format!("{flag}: not a number: {v:?}"))
            }
            match flag.as_str() {
                "--secs" => options.secs = number(flag, value()?)?,
                "--warmup" => options.warmup = number(flag, value()?)?,
                "--concurrency" => options.concurrency = number(flag, value()?)?,
                "--size" => options.size = number(flag, value()?)?,
                "--threads" => options.threads = number(flag, value()?)?,
                "--rounds" => options.rounds = number(flag, value()?)?,
                "--systems" => {
                    options.systems = value()?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "--system" => options.system = Some(value()?),
                "--addr" => options.addr = value()?,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        for system in options.systems.iter().chain(&options.system) {
            if !SYSTEMS.contains(&system.as_str()) && !EXTRA_SYSTEMS.contains(&system.as_str()) {
                return Err(format!(
                    "unknown system {system:?}; expected one of {SYSTEMS:?}"
                ));
            }
        }
        if options.concurrency == 0
            || options.threads == 0
            || options.rounds == 0
            || options.secs <= 0.0
        {
            return Err(
                "--concurrency, --threads, --rounds and --secs must be positive".to_owned(),
            );
        }
        if options.size > MAX_SIZE {
            return Err(format!(
                "--size {} exceeds the largest payload, {MAX_SIZE} (8 MiB)",
                options.size
            ));
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (serve, rest) = match args.split_first() {
        Some((first, rest)) if first == "serve" => (true, rest),
        _ => (false, &args[..]),
    };
    let options = match Options::parse(rest) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = if serve {
        run_server(&options)
    } else {
        run_benchmarks(&options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server process

fn run_server(options: &Options) -> Result<(), String> {
    let system = options
        .system
        .clone()
        .ok_or_else(|| format!("serve needs --system\n{USAGE}"))?;
    // The parent holds our stdin; when it goes away (killed, crashed, done), so do we.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let rt = benches::runtime(options.threads).map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        match system.as_str() {
            "rpc" | "rpc-bare" | "rpc-nostats" | "rpc-breaker" | "rpc-limited" | "rpc-redis"
            | "rpc-json" => {
                let limits = match system.as_str() {
                    "rpc-limited" => rpc_echo::Limits::Local,
                    "rpc-redis" => rpc_echo::Limits::Redis(
                        std::env::var("RPC_BENCH_REDIS")
                            .map_err(|_| "rpc-redis needs RPC_BENCH_REDIS=redis://HOST:PORT")?,
                    ),
                    _ => rpc_echo::Limits::None,
                };
                let (addr, serve) =
                    rpc_echo::serve_with(&options.addr, limits, system != "rpc-nostats")
                        .await
                        .map_err(|e| format!("rpc bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "rpc-proto" => {
                let (addr, serve) = proto_echo::serve(&options.addr)
                    .await
                    .map_err(|e| format!("rpc-proto bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "rpc-token" => {
                let (addr, serve) = rpc_echo::serve_with_token(&options.addr)
                    .await
                    .map_err(|e| format!("rpc-token bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "rpc-h2" | "rpc-h2-bare" => {
                let (addr, serve) = rpc_echo::serve_h2(&options.addr)
                    .await
                    .map_err(|e| format!("rpc-h2 bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "rpc-tls" | "rpc-h2-tls" => {
                let dir = tls_dir()?;
                let (addr, serve) = tls_echo::serve(&options.addr, tls_wire(&system), &dir)
                    .await
                    .map_err(|e| format!("{system} bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "raw" => {
                let (addr, serve) = raw_echo::serve(&options.addr)
                    .await
                    .map_err(|e| format!("raw bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "tarpc" => {
                let (addr, serve) = tarpc_echo::serve(&options.addr)
                    .await
                    .map_err(|e| format!("tarpc bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            "tonic" => {
                let addr: SocketAddr = options
                    .addr
                    .parse()
                    .map_err(|e| format!("--addr {:?}: {e}", options.addr))?;
                let (addr, serve) =
                    tonic_echo::serve(addr).map_err(|e| format!("tonic bind: {e}"))?;
                announce(addr)?;
                serve.await;
            }
            other => return Err(format!("unknown system {other:?}")),
        }
        Ok(())
    })
}

/// The certificates of the TLS systems, made by the benchmarking process for its run.
static TLS_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Where the TLS systems' certificates are: made by this process, or (in a server
/// process) named by the environment its parent set.
fn tls_dir() -> Result<std::path::PathBuf, String> {
    match TLS_DIR.get() {
        Some(dir) => Ok(dir.clone()),
        None => tls_echo::dir_from_env(),
    }
}

/// The transport a TLS system runs on.
fn tls_wire(system: &str) -> tls_echo::Wire {
    match system {
        "rpc-h2-tls" => tls_echo::Wire::Http2,
        _ => tls_echo::Wire::Tcp,
    }
}

fn announce(addr: SocketAddr) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))
}

// ---------------------------------------------------------------------------------------
// Client side

/// One echo call on a client that all tasks share a connection through.
trait EchoCall: Clone + Send + Sync + 'static {
    fn call(&mut self, payload: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

impl EchoCall for rpc_echo::EchoClient {
    async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(payload).await.map_err(|e| e.to_string())
    }
}

impl EchoCall for proto_echo::ProtoEchoClient {
    async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(proto_echo::EchoMessage { payload })
            .await
            .map(|message| message.payload)
            .map_err(|e| e.to_string())
    }
}

impl EchoCall for rpc_echo::BareClient {
    async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(payload).await.map_err(|e| e.to_string())
    }
}

impl EchoCall for raw_echo::Client {
    async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(payload).await.map_err(|e| e.to_string())
    }
}

impl EchoCall for tarpc_echo::EchoClient {
    async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(tarpc::context::current(), payload)
            .await
            .map_err(|e| e.to_string())
    }
}

impl EchoCall for tonic_echo::EchoClient {
    async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(payload).await.map_err(|e| e.to_string())
    }
}

/// The server child process; killed when dropped.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn spawn(system: &str, threads: usize) -> Result<(ServerProcess, SocketAddr), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--system", system, "--addr", "127.0.0.1:0"])
            .args(["--threads", &threads.to_string()])
            .envs(TLS_DIR.get().map(|dir| (tls_echo::DIR_VARIABLE, dir)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning the {system} server: {e}"))?;
        let stdout = child.stdout.take();
        let server = ServerProcess { child };
        let mut line = String::new();
        if let Some(stdout) = stdout {
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|e| format!("reading the {system} server's address: {e}"))?;
        }
        let addr = line
            .trim()
            .parse()
            .map_err(|_| format!("the {system} server printed {line:?}, not an address"))?;
        Ok((server, addr))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time each thread of process `pid` (or `self`) has used so far, in nanoseconds by
/// thread id, from `/proc/PID/task/TID/schedstat` (its first field is the time on CPU, in
/// ns, unlike the 10 ms ticks of `/proc/PID/stat`); `None` where that is not available.
fn thread_cpu(pid: &str) -> Option<HashMap<String, u64>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let times: HashMap<String, u64> = tasks
        .flatten()
        .filter_map(|task| {
            // A thread may end between listing and reading: skip it.
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            Some((task.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect();
    (!times.is_empty()).then_some(times)
}

/// CPU a process used between two [`thread_cpu`] samples: what each thread alive at the
/// end added, all of it for threads started in between. A thread that ended in between
/// is missed; the runtimes' worker threads, which do the work, live through the run.
fn cpu_between(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Duration {
    let ns = after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_nanos(ns)
}

/// CPU time the two processes used during the measured window.
#[derive(Debug, Clone, Copy)]
struct WindowCpu {
    client: Duration,
    server: Duration,
}

/// Samples both processes' CPU when the window opens and when it closes, on a thread of
/// its own: a runtime whose workers are busy (large payloads) would fire a timer late and
/// stretch the window.
fn measure_cpu(plan: &Plan, server_pid: &str) -> Option<WindowCpu> {
    let sleep_until =
        |at: Instant| std::thread::sleep(at.saturating_duration_since(Instant::now()));
    sleep_until(plan.measure_from);
    let (client, server) = (thread_cpu("self"), thread_cpu(server_pid));
    sleep_until(plan.end);
    let (client_end, server_end) = (thread_cpu("self")?, thread_cpu(server_pid)?);
    Some(WindowCpu {
        client: cpu_between(&client?, &client_end),
        server: cpu_between(&server?, &server_end),
    })
}

struct Plan {
    measure_from: Instant,
    end: Instant,
}

async fn drive<C: EchoCall>(
    client: C,
    options: &Options,
    server_pid: &str,
) -> (Recorder, Option<WindowCpu>) {
    let payload: Vec<u8> = (0..options.size).map(|i| i as u8).collect();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(options.warmup);
    let window = Duration::from_secs_f64(options.secs);
    let plan = std::sync::Arc::new(Plan {
        measure_from,
        end: measure_from + window,
    });
    let tasks: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let mut client = client.clone();
            let payload = payload.clone();
            let plan = plan.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::new();
                loop {
                    let started = Instant::now();
                    if started >= plan.end {
                        break;
                    }
                    let result = client.call(payload.clone()).await;
                    let elapsed = started.elapsed();
                    if started < plan.measure_from {
                        continue;
                    }
                    match result {
                        Ok(echoed) if echoed.len() == payload.len() => recorder.success(elapsed),
                        Ok(echoed) => recorder.failure(format!(
                            "echoed {} bytes instead of {}",
                            echoed.len(),
                            payload.len()
                        )),
                        Err(error) => recorder.failure(error),
                    }
                }
                recorder
            })
        })
        .collect();
    let cpu = {
        let (plan, server_pid) = (plan.clone(), server_pid.to_owned());
        tokio::task::spawn_blocking(move || measure_cpu(&plan, &server_pid))
            .await
            .ok()
            .flatten()
    };
    let mut total = Recorder::new();
    for task in tasks {
        match task.await {
            Ok(recorder) => total.merge(&recorder),
            Err(error) => total.failure(format!("load task panicked: {error}")),
        }
    }
    (total, cpu)
}

/// What one run of a system measured.
type Measured = (Recorder, Option<WindowCpu>);

async fn bench_system(
    system: &str,
    addr: SocketAddr,
    options: &Options,
    server_pid: &str,
) -> Result<Measured, String> {
    async fn check<C: EchoCall>(
        mut client: C,
        options: &Options,
        server_pid: &str,
    ) -> Result<Measured, String> {
        // One call first: connects, and fails fast if the server is not answering.
        client
            .call(vec![0; options.size])
            .await
            .map_err(|e| format!("first call failed: {e}"))?;
        Ok(drive(client, options, server_pid).await)
    }
    match system {
        "rpc" | "rpc-limited" | "rpc-redis" => {
            let client = rpc_echo::client(addr).map_err(|e| format!("rpc client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-breaker" => {
            let client =
                rpc_echo::client_with_breaker(addr).map_err(|e| format!("rpc client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-token" => {
            let client =
                rpc_echo::client_with_token(addr).map_err(|e| format!("rpc client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-nostats" => {
            let client =
                rpc_echo::client_counted(addr, false).map_err(|e| format!("rpc client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-json" => {
            let client = rpc_echo::json_client(addr).map_err(|e| format!("rpc client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-proto" => {
            let client = proto_echo::client(addr).map_err(|e| format!("rpc-proto client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-h2" => {
            let client = rpc_echo::h2_client(addr).map_err(|e| format!("rpc-h2 client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-tls" | "rpc-h2-tls" => {
            let dir = tls_dir()?;
            let client = tls_echo::client(addr, tls_wire(system), &dir)
                .map_err(|e| format!("{system} client: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-bare" => {
            let client =
                rpc_echo::BareClient::connect(addr).map_err(|e| format!("rpc channel: {e}"))?;
            check(client, options, server_pid).await
        }
        "rpc-h2-bare" => {
            let client = rpc_echo::BareClient::connect_h2(addr)
                .map_err(|e| format!("rpc-h2 channel: {e}"))?;
            check(client, options, server_pid).await
        }
        "raw" => {
            let client = raw_echo::Client::connect(addr)
                .await
                .map_err(|e| format!("raw connect: {e}"))?;
            check(client, options, server_pid).await
        }
        "tarpc" => {
            let client = tarpc_echo::connect(addr)
                .await
                .map_err(|e| format!("tarpc connect: {e}"))?;
            check(client, options, server_pid).await
        }
        "tonic" => {
            let client = tonic_echo::EchoClient::connect(addr)
                .await
                .map_err(|e| format!("tonic connect: {e}"))?;
            check(client, options, server_pid).await
        }
        other => Err(format!("unknown system {other:?}")),
    }
}

fn run_one(
    rt: &tokio::runtime::Runtime,
    system: &str,
    options: &Options,
    window: Duration,
) -> Result<Summary, String> {
    let (server, addr) = ServerProcess::spawn(system, options.threads)?;
    let server_pid = server.pid().to_string();
    let outcome = rt.block_on(bench_system(system, addr, options, &server_pid));
    drop(server);
    let (recorder, cpu) = outcome?;
    let mut summary = recorder.summary(system, window);
    let calls = recorder.ok + recorder.errors;
    match cpu {
        Some(cpu) if calls > 0 => {
            let per_call = |used: Duration| used.as_secs_f64() * 1e6 / calls as f64;
            summary.cpu_per_call = Some(CpuPerCall {
                client_us: per_call(cpu.client),
                server_us: per_call(cpu.server),
            });
            eprintln!(
                "#   {system}: cpu client={:.2} cores server={:.2} cores",
                cpu.client.as_secs_f64() / window.as_secs_f64(),
                cpu.server.as_secs_f64() / window.as_secs_f64(),
            );
        }
        Some(_) => {}
        None => eprintln!("#   {system}: no CPU figures (/proc/PID/task/TID/schedstat unreadable)"),
    }
    if let Some(error) = &recorder.first_error {
        eprintln!("#   {system}: first error: {error}");
    }
    Ok(summary)
}

/// `a/b` per round where both ran, sorted; `raw` is always `b`, so its ratios read as
/// a fraction of the ceiling.
fn per_round_ratios(
    a: &[Option<Summary>],
    b: &[Option<Summary>],
    value: impl Fn(&Summary) -> Option<f64>,
) -> Vec<f64> {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(a, b)| Some((value(a.as_ref()?)?, value(b.as_ref()?)?)))
        .filter(|(_, b)| *b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios
}

/// The median of sorted `ratios` (the upper one of an even count) and the list.
fn describe(ratios: &[f64]) -> Option<(f64, String)> {
    let median = *ratios.get(ratios.len() / 2)?;
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    Some((median, listed.join(",")))
}

fn run_benchmarks(options: &Options) -> Result<(), String> {
    let rt = benches::runtime(options.threads).map_err(|e| format!("runtime: {e}"))?;
    let window = Duration::from_secs_f64(options.secs);
    eprintln!(
        "# loadgen: {} s (+{} s warm-up), concurrency {}, payload {} B, {} worker threads per process, {} cores",
        options.secs,
        options.warmup,
        options.concurrency,
        options.size,
        options.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if options.systems.iter().any(|s| s.ends_with("-tls")) {
        // Made once for the run; the server processes find it through the environment.
        let dir = std::env::temp_dir().join(format!("rpc-loadgen-tls-{}", std::process::id()));
        tls_echo::make_certificates(&dir)?;
        let _ = TLS_DIR.set(dir);
    }
    // Every system runs once per round, in turn, so that background load drifting over
    // time hits every system alike; every other round runs them in reverse order
    // (A B, B A, ...), so that whatever running first or after another system does to a
    // run (a fresh server process, caches, the previous server's exit) hits each system
    // alike too. A failed run leaves its slot empty.
    let mut per_system: Vec<(String, Vec<Option<Summary>>)> = options
        .systems
        .iter()
        .map(|s| (s.clone(), Vec::new()))
        .collect();
    for round in 1..=options.rounds {
        let order: Box<dyn Iterator<Item = &mut (String, Vec<Option<Summary>>)>> = match round % 2 {
            1 => Box::new(per_system.iter_mut()),
            _ => Box::new(per_system.iter_mut().rev()),
        };
        for (system, runs) in order {
            match run_one(&rt, system, options, window) {
                Ok(summary) => {
                    if options.rounds > 1 {
                        eprintln!("# round {round}: {summary}");
                    }
                    runs.push(Some(summary));
                }
                Err(error) => {
                    println!("system={system} failed: {error}");
                    runs.push(None);
                }
            }
        }
    }
    // Noise moves whole rounds, so the fair comparison is per round: every pair of
    // systems, in the order listed (the ceiling always the divisor), in the same round,
    // then the median of those ratios.
    if options.rounds > 1 {
        for (i, (first, first_runs)) in per_system.iter().enumerate() {
            for (second, second_runs) in &per_system[i + 1..] {
                let ((a, a_runs), (b, b_runs)) = match first == RAW {
                    true => ((second, second_runs), (first, first_runs)),
                    false => ((first, first_runs), (second, second_runs)),
                };
                let qps = per_round_ratios(a_runs, b_runs, |s| Some(s.qps));
                let Some((qps_median, qps_listed)) = describe(&qps) else {
                    continue;
                };
                let cpu =
                    per_round_ratios(a_runs, b_runs, |s| s.cpu_per_call.map(|cpu| cpu.total_us()));
                let cpu = match describe(&cpu) {
                    Some((median, listed)) => (
                        format!(" cpu_per_call median={median:.2}x"),
                        format!(" cpu_rounds=[{listed}]"),
                    ),
                    None => Default::default(),
                };
                println!(
                    "per-round {a}/{b} qps median={qps_median:.2}x{} rounds=[{qps_listed}]{}",
                    cpu.0, cpu.1
                );
            }
        }
    }
    // One line per system: the round with the median throughput.
    let mut summaries = Vec::new();
    for (_, runs) in per_system {
        let mut runs: Vec<Summary> = runs.into_iter().flatten().collect();
        if runs.is_empty() {
            continue;
        }
        runs.sort_by(|a, b| a.qps.total_cmp(&b.qps));
        let median = runs.swap_remove(runs.len() / 2);
        println!("{median}");
        summaries.push(median);
    }
    let find = |name: &str| summaries.iter().find(|s| s.system == name);
    if let Some(ours) = find("rpc") {
        for other in summaries
            .iter()
            .filter(|s| s.system != "rpc" && s.system != "rpc-h2")
        {
            println!("{}", ours.ratio(other));
        }
    }
    // HTTP/2 against HTTP/2: our gRPC transport against tonic.
    if let (Some(ours), Some(tonic)) = (find("rpc-h2"), find("tonic")) {
        println!("{}", ours.ratio(tonic));
    }
    std::io::stdout().flush().ok();
    Ok(())
}
