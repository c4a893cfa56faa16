//! Calls the example services on one or more providers.
//!
//! `consumer [--registry URL | --connect 127.0.0.1:20880[,127.0.0.1:20881]] --codec json --calls 5
//!   [--admin 127.0.0.1:0]`
//!
//! With `--admin` it prints the admin endpoint's URL, makes its calls, then keeps the
//! endpoint up (its providers and statistics) until Ctrl-C.
//!
//! `--protocol tri` (or `h2`) calls over HTTP/2 instead of TCP; `--protocol tcp,tri` speaks
//! both and uses every provider the registry lists on either.
//!
//! Without `--connect` it finds providers in the registry (default: the file registry the
//! `provider` binary uses too).

use std::sync::Arc;
use std::time::Duration;

use examples::{
    EchoClient, GreeterClient, default_registry, exit_code, init_logging, parse_flags,
    parse_protocols,
};
use rpc_core::client::FromClient;
use rpc_core::{ClientBuilder, Codec};
use transports::{GrpcTransport, TcpTransport};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    exit_code("consumer", run().await)
}

async fn run() -> Result<(), String> {
    let mut addresses: Vec<String> = Vec::new();
    let mut registry_url = default_registry();
    let mut codec = Codec::Bincode;
    let mut calls = 3u32;
    let mut admin_address = None;
    let mut protocols = vec!["tcp".to_owned()];
    let flags = [
        "--connect",
        "--registry",
        "--codec",
        "--calls",
        "--protocol",
        "--admin",
    ];
    for (flag, value) in parse_flags(&flags)? {
        match flag.as_str() {
            "--admin" => admin_address = Some(value),
            "--protocol" => {
                protocols = parse_protocols("--protocol", &value)?;
            }
            "--connect" => addresses = value.split(',').map(str::to_owned).collect(),
            "--registry" => registry_url = value,
            "--codec" => codec = value.parse().map_err(|e: rpc_core::Error| e.to_string())?,
            _ => calls = value.parse().map_err(|e| format!("--calls: {e}"))?,
        }
    }
    let registry = match addresses.is_empty() {
        true => Some(
            registry::connect(&registry_url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        false => None,
    };
    let (tcp, tri) = (TcpTransport::default(), GrpcTransport::default());
    let greeter: GreeterClient = with_transports(
        providers(GreeterClient::builder(), &registry, &addresses),
        &protocols,
        &tcp,
        &tri,
    )
    .application("examples-consumer")
    .codec(codec)
    .timeout(Duration::from_secs(2))
    .build()
    .map_err(|e| e.to_string())?;
    let echo: EchoClient = with_transports(
        providers(EchoClient::builder(), &registry, &addresses),
        &protocols,
        &tcp,
        &tri,
    )
    .application("examples-consumer")
    .codec(codec)
    .build()
    .map_err(|e| e.to_string())?;
    let admin = match admin_address {
        Some(address) => {
            let admin = admin::Admin::builder()
                .bind(address)
                .application("examples-consumer")
                .client(greeter.client().clone())
                .client(echo.client().clone())
                .start()
                .await
                .map_err(|e| e.to_string())?;
            println!("admin at {}", admin.url());
            Some(admin)
        }
        None => None,
    };
    let mut failures = 0;
    for i in 0..calls {
        match greeter.greet(format!("consumer #{i}")).await {
            Ok(Ok(text)) => println!("greet -> {text}"),
            Ok(Err(refused)) => println!("greet refused: {refused}"),
            Err(error) => {
                failures += 1;
                println!("greet failed: {error}");
            }
        }
    }
    match echo.echo(b"ping".to_vec()).await {
        Ok(bytes) => println!("echo -> {}", String::from_utf8_lossy(&bytes)),
        Err(error) => {
            failures += 1;
            println!("echo failed: {error}");
        }
    }
    if let Some(admin) = admin {
        println!("admin endpoint stays up until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        admin.shutdown().await;
    }
    if failures > 0 {
        return Err(format!("{failures} calls failed"));
    }
    Ok(())
}

/// `builder` with the transports of `protocols`.
fn with_transports<S: FromClient>(
    mut builder: ClientBuilder<S>,
    protocols: &[String],
    tcp: &TcpTransport,
    tri: &GrpcTransport,
) -> ClientBuilder<S> {
    for protocol in protocols {
        builder = match protocol.as_str() {
            "tcp" => builder.transport(tcp.clone()),
            _ => builder.transport(tri.clone()),
        };
    }
    builder
}

/// The registry when there is one, else the addresses given: the same for every client.
fn providers<S: FromClient>(
    builder: ClientBuilder<S>,
    registry: &Option<Arc<dyn registry::Registry>>,
    addresses: &[String],
) -> ClientBuilder<S> {
    match registry {
        Some(registry) => builder.registry(registry.clone()),
        None => builder.addresses(addresses.iter().cloned()),
    }
}
