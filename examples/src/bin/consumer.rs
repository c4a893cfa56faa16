//! Calls the example services on one or more providers.
//!
//! `consumer [--registry URL | --connect 127.0.0.1:20880[,127.0.0.1:20881]] --codec json --calls 5`
//!
//! Without `--connect` it finds providers in the registry (default: the file registry the
//! `provider` binary uses too). It calls `demo.Greeter`, `Echo` and the proto-generated
//! `helloworld.Greeter`; with `--codec protobuf` only the last, the others being serde
//! services that refuse protobuf.

use std::sync::Arc;
use std::time::Duration;

use examples::helloworld::{self, HelloRequest};
use examples::{EchoClient, GreeterClient, default_registry, exit_code, init_logging, parse_flags};
use rpc_core::client::FromClient;
use rpc_core::{ClientBuilder, Codec};
use transports::TcpTransport;

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
    for (flag, value) in parse_flags(&["--connect", "--registry", "--codec", "--calls"])? {
        match flag.as_str() {
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
    let transport = TcpTransport::default();
    let mut failures = 0;
    let proto: helloworld::GreeterClient =
        providers(helloworld::GreeterClient::builder(), &registry, &addresses)
            .transport(transport.clone())
            .application("examples-consumer")
            .codec(codec)
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
    match proto
        .say_hello(HelloRequest {
            name: "proto consumer".into(),
        })
        .await
    {
        Ok(reply) => println!("SayHello -> {}", reply.message),
        Err(error) => {
            failures += 1;
            println!("SayHello failed: {error}");
        }
    }
    if !Codec::SERDE.contains(&codec) {
        return match failures {
            0 => Ok(()),
            _ => Err(format!("{failures} calls failed")),
        };
    }
    let greeter: GreeterClient = providers(GreeterClient::builder(), &registry, &addresses)
        .transport(transport.clone())
        .application("examples-consumer")
        .codec(codec)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let echo: EchoClient = providers(EchoClient::builder(), &registry, &addresses)
        .transport(transport)
        .application("examples-consumer")
        .codec(codec)
        .build()
        .map_err(|e| e.to_string())?;
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
    if failures > 0 {
        return Err(format!("{failures} calls failed"));
    }
    Ok(())
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
