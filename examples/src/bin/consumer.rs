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
//! `provider` binary uses too), and sends each the token it published there.
//!
//! With `--config FILE` the registry, timeouts, retries, balancing, cluster mode and TLS
//! (`[ssl]` `client-*` keys) come from the file and `RPC_*` environment variables;
//! flags given on the command line win over them.
//!
//! It calls `demo.Greeter`, `Echo` and the proto-generated `helloworld.Greeter`; with
//! `--codec protobuf` only the last, the others being serde services that refuse protobuf.

use std::sync::Arc;
use std::time::Duration;

use examples::helloworld::{self, HelloRequest};
use examples::{
    EchoClient, GreeterClient, default_registry, exit_code, init_logging, load_config, parse_flags,
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
    let flags = parse_flags(&[
        "--connect",
        "--registry",
        "--codec",
        "--calls",
        "--protocol",
        "--admin",
        "--config",
    ])?;
    let config_path = flags
        .iter()
        .find(|(flag, _)| flag == "--config")
        .map(|(_, path)| path.as_str());
    let config = load_config(config_path)?;
    let mut addresses: Vec<String> = Vec::new();
    let mut registry_url = config
        .registry
        .address
        .clone()
        .unwrap_or_else(default_registry);
    let mut codec: Option<Codec> = None;
    let mut calls = 3u32;
    let mut admin_address = config.admin.address.clone();
    let mut protocols = vec!["tcp".to_owned()];
    for (flag, value) in flags {
        match flag.as_str() {
            "--config" => {}
            "--admin" => admin_address = Some(value),
            "--protocol" => {
                protocols = parse_protocols("--protocol", &value)?;
            }
            "--connect" => addresses = value.split(',').map(str::to_owned).collect(),
            "--registry" => registry_url = value,
            "--codec" => codec = Some(value.parse().map_err(|e: rpc_core::Error| e.to_string())?),
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
    // TLS and connection settings from the config apply to TCP.
    let tcp = TcpTransport::from_config(&config).map_err(|e| e.to_string())?;
    let tri = GrpcTransport::default();
    let mut failures = 0;
    let mut proto = helloworld::GreeterClient::builder().application("examples-consumer");
    if config.consumer.timeout.is_none() {
        proto = proto.timeout(Duration::from_secs(2));
    }
    let proto = configure(proto, &config, codec)?;
    let proto: helloworld::GreeterClient = with_transports(
        providers(proto, &registry, &addresses),
        &protocols,
        &tcp,
        &tri,
    )
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
    if codec.is_some_and(|codec| !Codec::SERDE.contains(&codec)) {
        return match failures {
            0 => Ok(()),
            _ => Err(format!("{failures} calls failed")),
        };
    }
    // TLS and connection settings from the config apply to TCP.
    let tcp = TcpTransport::from_config(&config).map_err(|e| e.to_string())?;
    let tri = GrpcTransport::default();
    let mut greeter = GreeterClient::builder().application("examples-consumer");
    if config.consumer.timeout.is_none() {
        greeter = greeter.timeout(Duration::from_secs(2));
    }
    let greeter = configure(greeter, &config, codec)?;
    let greeter: GreeterClient = with_transports(
        providers(greeter, &registry, &addresses),
        &protocols,
        &tcp,
        &tri,
    )
    .build()
    .map_err(|e| e.to_string())?;
    let echo = configure(
        EchoClient::builder().application("examples-consumer"),
        &config,
        codec,
    )?;
    let echo: EchoClient = with_transports(
        providers(echo, &registry, &addresses),
        &protocols,
        &tcp,
        &tri,
    )
    .build()
    .map_err(|e| e.to_string())?;
    let admin = match admin_address {
        Some(address) => {
            let admin = admin::Admin::builder()
                .application("examples-consumer")
                .config(&config)
                .bind(address)
                .client(greeter.client().clone())
                .client(echo.client().clone())
                .client(proto.client().clone())
                .start()
                .await
                .map_err(|e| e.to_string())?;
            println!("admin at {}", admin.url());
            Some(admin)
        }
        None => None,
    };
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

/// The builder with the config's consumer settings, then the `--codec` flag over them.
fn configure<S: FromClient>(
    builder: ClientBuilder<S>,
    config: &rpc_core::Config,
    codec: Option<Codec>,
) -> Result<ClientBuilder<S>, String> {
    let builder = builder.config(config).map_err(|e| e.to_string())?;
    Ok(match codec {
        Some(codec) => builder.codec(codec),
        None => builder,
    })
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
