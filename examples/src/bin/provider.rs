//! Serves the example `Greeter` and `Echo` services, and `helloworld.Greeter` generated from
//! `proto/helloworld.proto`, until Ctrl-C.
//!
//! `provider --listen 127.0.0.1:20880 --codec bincode,json --name p1 --registry URL`
//!
//! It registers its services in the registry (default: a file registry under the system's
//! temporary directory; `--registry none` registers nowhere) and unregisters on Ctrl-C
//! before draining.

use std::io::Write;

use examples::{
    EchoServer, Echoer, GreeterServer, Greeting, default_registry, exit_code, helloworld,
    init_logging, parse_flags,
};
use rpc_core::{Codec, Server};
use transports::TcpTransport;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    exit_code("provider", run().await)
}

async fn run() -> Result<(), String> {
    let mut listen = "127.0.0.1:20880".to_owned();
    let mut codecs = Codec::ALL.to_vec();
    let mut name = "provider".to_owned();
    let mut registry_url = default_registry();
    for (flag, value) in parse_flags(&["--listen", "--codec", "--name", "--registry"])? {
        match flag.as_str() {
            "--listen" => listen = value,
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
    let server = builder
        .transport(TcpTransport::default())
        .codecs(codecs.clone())
        .add_service(GreeterServer::new(Greeting::new(name.clone())))
        .add_service(EchoServer::new(Echoer))
        .add_service(helloworld::GreeterServer::new(
            helloworld::ProtoGreeting::new(name.clone()),
        ))
        .bind(&listen)
        .await
        .map_err(|e| e.to_string())?;
    let codecs: Vec<_> = codecs.iter().map(|c| c.name()).collect();
    println!(
        "listening on {} (codecs: {})",
        server.local_addr(),
        codecs.join(",")
    );
    if registry_url != "none" {
        println!("registered in {registry_url}");
    }
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // Not println!: a closed stdout (the parent went away) must not turn a clean stop
    // into a panic.
    let _ = writeln!(std::io::stdout(), "stopped");
    Ok(())
}
