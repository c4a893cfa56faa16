//! Serves the example `Greeter` and `Echo` services, and `helloworld.Greeter` generated from
//! `proto/helloworld.proto`, until Ctrl-C.
//!
//! `provider --listen 127.0.0.1:20880 --codec bincode,json --name p1 --registry URL
//!   [--admin 127.0.0.1:0] [--admin-token T] [--monitor HOST:PORT]`
//! `provider --config examples/config/provider.toml`
//!
//! `--admin` turns the admin endpoint on (dashboard, statistics, `/metrics`) and prints its
//! URL; `--monitor` pushes statistics every 60 s to a `monitor` process's address.
//!
//! `--protocols tcp,tri` serves both transports at once: TCP on `--listen`, HTTP/2 (gRPC,
//! protocol `tri`; `h2` is accepted too) on `--listen-tri` (default 127.0.0.1:50051),
//! one line per listening address. The default is TCP only.
//!
//! It registers its services in the registry (default: a file registry under the system's
//! temporary directory; `--registry none` registers nowhere) and unregisters on Ctrl-C or SIGTERM
//! before draining.
//!
//! With `--config FILE` (TOML or YAML, Dubbo's key names, `RPC_*` environment overrides)
//! the listen addresses come from `[protocols.tcp]` and `[protocols.http2]` (each section
//! present turns its protocol on), the registry from `registry.address`, TLS from
//! `[ssl]`, the token, IP rules, limits and access log from `[provider]` and the
//! service sections, the admin endpoint from `admin.address`; flags given on the command
//! line win over the file.

use std::io::Write;

use examples::{
    EchoServer, Echoer, GreeterServer, Greeting, default_registry, exit_code, helloworld,
    init_logging_with, load_config, parse_flags, parse_protocols,
};
use rpc_core::{Codec, ServerBuilder};
use transports::{GrpcTransport, TcpTransport};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_code("provider", run().await)
}

async fn run() -> Result<(), String> {
    let flags = parse_flags(&[
        "--listen",
        "--listen-tri",
        "--protocols",
        "--codec",
        "--name",
        "--registry",
        "--admin",
        "--admin-token",
        "--monitor",
        "--config",
    ])?;
    let config_path = flags
        .iter()
        .find(|(flag, _)| flag == "--config")
        .map(|(_, path)| path.as_str());
    let config = load_config(config_path)?;
    let _access_log = init_logging_with(&config)?;
    let tcp = config.protocol("tcp");
    let mut listen = match (&tcp.host, tcp.port) {
        (None, None) => "127.0.0.1:20880".to_owned(),
        _ => tcp.bind_address(20880),
    };
    let mut codecs = Codec::ALL.to_vec();
    let mut name = "provider".to_owned();
    let http2 = config.protocol("http2");
    let mut listen_tri = match (&http2.host, http2.port) {
        (None, None) => "127.0.0.1:50051".to_owned(),
        _ => http2.bind_address(50051),
    };
    // The protocols the file configures (TCP first), else TCP; `--protocols` overrides.
    let mut protocols: Vec<String> = ["tcp", "http2"]
        .into_iter()
        .filter(|name| config.protocols.contains_key(*name))
        .map(|name| if name == "http2" { "tri" } else { name }.to_owned())
        .collect();
    if protocols.is_empty() {
        protocols.push("tcp".to_owned());
    }
    let mut registry_url = config
        .registry
        .address
        .clone()
        .unwrap_or_else(default_registry);
    let mut admin_address = config.admin.address.clone();
    let mut admin_token = None;
    let mut monitor = None;
    for (flag, value) in flags {
        match flag.as_str() {
            "--config" => {}
            "--admin" => admin_address = Some(value),
            "--admin-token" => admin_token = Some(value),
            "--monitor" => monitor = Some(value),
            "--listen" => listen = value,
            "--listen-tri" => listen_tri = value,
            "--protocols" => {
                protocols = parse_protocols("--protocols", &value)?;
            }
            "--codec" => {
                codecs = value
                    .split(',')
                    .map(|c| c.parse::<Codec>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--registry" => registry_url = value,
            _ => name = value,
        }
    }
    let mut builder = ServerBuilder::from_config(&config).map_err(|e| e.to_string())?;
    if config.application.name.is_none() {
        builder = builder.application("examples-provider");
    }
    if registry_url != "none" {
        let registry = registry::connect(&registry_url)
            .await
            .map_err(|e| e.to_string())?;
        builder = builder.registry(registry);
    }
    // TLS, handshake and frame limits from the config apply to TCP; the first protocol
    // listed is bound by `bind`, the others by `listen`.
    let tcp_transport = TcpTransport::from_config(&config).map_err(|e| e.to_string())?;
    let tls = rpc_core::Transport::tls(&tcp_transport);
    let grpc_transport = GrpcTransport::from_config(&config).map_err(|e| e.to_string())?;
    for (i, protocol) in protocols.iter().enumerate() {
        builder = match (i, protocol.as_str()) {
            (0, "tcp") => builder.transport(tcp_transport.clone()),
            (0, _) => builder.transport(grpc_transport.clone()),
            (_, "tcp") => builder.listen(tcp_transport.clone(), listen.clone()),
            (_, _) => builder.listen(grpc_transport.clone(), listen_tri.clone()),
        };
    }
    let first = match protocols.first().map(String::as_str) {
        Some("tri") => &listen_tri,
        Some(_) => &listen,
        None => return Err("--protocols: name at least one protocol".into()),
    };
    let server = builder
        .codecs(codecs.clone())
        .add_service(GreeterServer::new(Greeting::new(name.clone())))
        .add_service(EchoServer::new(Echoer))
        .add_service(helloworld::GreeterServer::new(
            helloworld::ProtoGreeting::new(name.clone()),
        ))
        .bind(first)
        .await
        .map_err(|e| e.to_string())?;
    let codecs: Vec<_> = codecs.iter().map(|c| c.name()).collect();
    for (protocol, address) in server.local_addrs() {
        println!(
            "listening on {address} ({protocol}, codecs: {}{})",
            codecs.join(","),
            if tls && protocol == "tcp" {
                ", TLS"
            } else {
                ""
            }
        );
    }
    if server.token_of("demo.Greeter").is_some() {
        println!("calls need the token published in the registry");
    }
    if registry_url != "none" {
        println!("registered in {registry_url}");
    }
    let _admin = match admin_address {
        Some(address) => {
            let mut admin = admin::Admin::builder()
                .application("examples-provider")
                .config(&config)
                .bind(address)
                .server(server.control());
            if let Some(token) = admin_token {
                admin = admin.token(token);
            }
            let admin = admin.start().await.map_err(|e| e.to_string())?;
            println!("admin at {}", admin.url());
            Some(admin)
        }
        None => None,
    };
    let _pushes = match monitor {
        Some(address) => {
            let client = admin::monitor::MonitorClient::builder()
                .transport(TcpTransport::default())
                .address(address.clone())
                .without_stats()
                .build()
                .map_err(|e| e.to_string())?;
            println!("pushing statistics to the monitor at {address}");
            Some(admin::monitor::push(
                client,
                rpc_core::stats::Stats::global().clone(),
                "examples-provider",
                admin::monitor::DEFAULT_INTERVAL,
            ))
        }
        None => None,
    };
    server.run_until(examples::stop_signal()).await;
    // Not println!: a closed stdout (the parent went away) must not turn a clean stop
    // into a panic.
    let _ = writeln!(std::io::stdout(), "stopped");
    Ok(())
}
