//! Services shared by the example binaries: a greeter and an echo service, each with an
//! implementation a provider can serve.
//!
//! ```no_run
//! use examples::{GreeterClient, GreeterServer, Greeting};
//! use rpc_core::{Codec, Server};
//! use transports::TcpTransport;
//!
//! # async fn run() -> Result<(), rpc_core::Error> {
//! let server = Server::builder()
//!     .transport(TcpTransport::default())
//!     .add_service(GreeterServer::new(Greeting::new("p1")))
//!     .bind("127.0.0.1:0")
//!     .await?;
//! let greeter = GreeterClient::builder()
//!     .transport(TcpTransport::default())
//!     .address(server.local_addr().to_string())
//!     .codec(Codec::Json)
//!     .build()?;
//! assert_eq!(greeter.greet("bob".into()).await?, Ok("Hello, bob! (from p1)".into()));
//! # Ok(()) }
//! ```

pub mod helloworld;
pub mod http;
pub mod relay;

use std::time::Duration;

use rpc_core::Context;
use serde::{Deserialize, Serialize};

/// What `greet` refuses, sent back to the caller as a typed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GreetError {
    /// The name was empty or blank.
    #[error("name must not be empty")]
    EmptyName,
}

/// A greeter, the "hello world" of RPC.
#[rpc_core::service(name = "demo.Greeter", version = "1.0.0")]
pub trait Greeter {
    /// Greets `name`, naming the provider that answered.
    async fn greet(&self, name: String) -> Result<String, GreetError>;

    /// Sleeps `millis` before answering; its 200 ms timeout shows deadlines at work.
    #[rpc(timeout_ms = 200)]
    async fn slow(&self, millis: u64) -> String;

    /// Returns the caller's `trace-id` attachment.
    async fn trace_id(&self, cx: &Context) -> Option<String>;

    /// Adds two numbers.
    #[rpc(idempotent)]
    async fn add(&self, a: i64, b: i64) -> i64;

    /// Logs a line on the provider; the caller does not wait.
    #[rpc(oneway)]
    async fn log(&self, line: String);
}

/// An echo service: the payload comes back unchanged (used by the load generator too).
#[rpc_core::service]
pub trait Echo {
    /// Returns `payload`.
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8>;
}

/// The example [`Greeter`] implementation.
#[derive(Debug, Clone)]
pub struct Greeting {
    provider: String,
}

impl Greeting {
    /// A greeter that signs its answers with `provider`.
    pub fn new(provider: impl Into<String>) -> Greeting {
        Greeting {
            provider: provider.into(),
        }
    }
}

impl Greeter for Greeting {
    async fn greet(&self, name: String) -> Result<String, GreetError> {
        if name.trim().is_empty() {
            return Err(GreetError::EmptyName);
        }
        Ok(format!("Hello, {name}! (from {})", self.provider))
    }

    async fn slow(&self, millis: u64) -> String {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        format!("slept {millis} ms")
    }

    async fn trace_id(&self, cx: &Context) -> Option<String> {
        cx.attachment("trace-id").map(str::to_owned)
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn log(&self, line: String) {
        tracing::info!(provider = %self.provider, %line, "log");
    }
}

/// The example [`Echo`] implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM: what a terminal, a process manager
/// or a script sends to ask for a graceful stop.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Parses `--flag value` pairs; unknown flags are an error so typos do not pass silently.
pub fn parse_flags(allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut flags = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(format!("flags: {}", allowed.join(" ")));
        }
        if !allowed.contains(&flag.as_str()) {
            return Err(format!(
                "unknown flag {flag}; expected one of: {}",
                allowed.join(" ")
            ));
        }
        let value = args
            .next()
            .ok_or_else(|| format!("flag {flag} needs a value"))?;
        flags.push((flag, value));
    }
    Ok(flags)
}

/// The transport protocols of a comma-separated list (`tcp,tri`), `h2` and `grpc` read as
/// `tri`; the error names `flag`.
pub fn parse_protocols(flag: &str, value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|protocol| match protocol {
            "tcp" => Ok("tcp".to_owned()),
            "tri" | "h2" | "grpc" => Ok("tri".to_owned()),
            other => Err(format!(
                "{flag}: unknown protocol {other:?}; expected tcp or tri (h2)"
            )),
        })
        .collect()
}

/// The registry the example binaries use when not told otherwise: a directory under the
/// system's temporary directory, so a `provider` and a `consumer` started in two terminals
/// of one host find each other with no flags.
pub fn default_registry() -> String {
    format!(
        "file://{}",
        std::env::temp_dir().join("rpc-registry").display()
    )
}

/// The process exit code for a binary's outcome; an error is printed as `program: error`.
pub fn exit_code(program: &str, outcome: Result<(), String>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// [`init_logging`], plus the access log (`rpc::access`) written to rotating files when
/// `config` has an `[access-log]` `dir`. Keep the returned guard alive while serving: it
/// flushes the file on drop.
pub fn init_logging_with(
    config: &rpc_core::Config,
) -> Result<Option<rpc_core::server::access_log::FileGuard>, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let Some(dir) = &config.access_log.dir else {
        init_logging();
        return Ok(None);
    };
    let rotation = match &config.access_log.rotation {
        Some(name) => name
            .parse()
            .map_err(|e: rpc_core::Error| format!("access-log.rotation: {e}"))?,
        None => rpc_core::server::access_log::Rotation::Daily,
    };
    let (writer, guard) = rpc_core::server::access_log::file_writer(
        dir,
        "access.log",
        rotation,
        config.access_log.keep.unwrap_or(0),
    )
    .map_err(|e| e.to_string())?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let access = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(tracing_subscriber::EnvFilter::new(format!(
            "{}=info",
            rpc_core::server::access_log::ACCESS_TARGET
        )));
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(access)
        .try_init();
    Ok(Some(guard))
}

/// Reads `--config FILE` (TOML, with `RPC_*` environment overrides) when given.
pub fn load_config(path: Option<&str>) -> Result<rpc_core::Config, String> {
    match path {
        Some(path) => rpc_core::Config::load(path).map_err(|e| format!("--config: {e}")),
        None => rpc_core::Config::from_env(std::env::vars()).map_err(|e| e.to_string()),
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
