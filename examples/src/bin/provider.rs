//! Serves the example `Greeter` and `Echo` services until Ctrl-C.
//!
//! `provider --listen 127.0.0.1:20880 --codec bincode,json --name p1 --registry URL
//!   [--admin 127.0.0.1:0] [--admin-token T] [--monitor HOST:PORT]`
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

use std::io::Write;

use examples::{
    EchoServer, Echoer, GreeterServer, Greeting, default_registry, exit_code, init_logging,
    parse_flags, parse_protocols,
};
use rpc_core::{Codec, Server};
use transports::{GrpcTransport, TcpTransport};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    exit_code("provider", run().await)
}

async fn run() -> Result<(), String> {
    let mut listen = "127.0.0.1:20880".to_owned();
    let mut codecs = Codec::ALL.to_vec();
    let mut name = "provider".to_owned();
    let mut listen_tri = "127.0.0.1:50051".to_owned();
    let mut protocols = vec!["tcp".to_owned()];
    let mut registry_url = default_registry();
    let mut admin_address = None;
    let mut admin_token = None;
    let mut monitor = None;
    let flags = [
        "--listen",
        "--listen-tri",
        "--protocols",
        "--codec",
        "--name",
        "--registry",
        "--admin",
        "--admin-token",
        "--monitor",
    ];
    for (flag, value) in parse_flags(&flags)? {
        match flag.as_str() {
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
    let mut builder = Server::builder();
    if registry_url != "none" {
        let registry = registry::connect(&registry_url)
            .await
            .map_err(|e| e.to_string())?;
        builder = builder.registry(registry).application("examples-provider");
    }
    // The first protocol listed is bound by `bind`, the others by `listen`.
    for (i, protocol) in protocols.iter().enumerate() {
        builder = match (i, protocol.as_str()) {
            (0, "tcp") => builder.transport(TcpTransport::default()),
            (0, _) => builder.transport(GrpcTransport::default()),
            (_, "tcp") => builder.listen(TcpTransport::default(), listen.clone()),
            (_, _) => builder.listen(GrpcTransport::default(), listen_tri.clone()),
        };
    }
    let first = match protocols.first().map(String::as_str) {
        Some("tri") => &listen_tri,
        Some(_) => &listen,
        None => return Err("--protocols: name at least one protocol".into()),
    };
    let server = builder
        .codecs(codecs.clone())
        .add_service(GreeterServer::new(Greeting::new(name)))
        .add_service(EchoServer::new(Echoer))
        .bind(first)
        .await
        .map_err(|e| e.to_string())?;
    let codecs: Vec<_> = codecs.iter().map(|c| c.name()).collect();
    for (protocol, address) in server.local_addrs() {
        println!(
            "listening on {address} ({protocol}, codecs: {})",
            codecs.join(",")
        );
    }
    if registry_url != "none" {
        println!("registered in {registry_url}");
    }
    let _admin = match admin_address {
        Some(address) => {
            let mut admin = admin::Admin::builder()
                .bind(address)
                .application("examples-provider")
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
