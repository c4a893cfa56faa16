//! Serves the example `Greeter` and `Echo` services until Ctrl-C.
//!
//! `provider --listen 127.0.0.1:20880 --codec bincode,json --name p1 --registry URL`
//! `provider --config examples/config/provider.toml`
//!
//! It registers its services in the registry (default: a file registry under the system's
//! temporary directory; `--registry none` registers nowhere) and unregisters on Ctrl-C
//! before draining.
//!
//! With `--config FILE` (TOML, Dubbo's key names, `RPC_*` environment overrides) the
//! listen address comes from `[protocols.tcp]`, the registry from `registry.address`,
//! TLS from `[ssl]`, the token, IP rules and access log from `[provider]`; flags given
//! on the command line win over the file.

use std::io::Write;

use examples::{
    EchoServer, Echoer, GreeterServer, Greeting, default_registry, exit_code, init_logging_with,
    load_config, parse_flags,
};
use rpc_core::{Codec, ServerBuilder};
use transports::TcpTransport;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_code("provider", run().await)
}

async fn run() -> Result<(), String> {
    let flags = parse_flags(&["--listen", "--codec", "--name", "--registry", "--config"])?;
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
    let mut registry_url = config
        .registry
        .address
        .clone()
        .unwrap_or_else(default_registry);
    for (flag, value) in flags {
        match flag.as_str() {
            "--config" => {}
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
    let transport = TcpTransport::from_config(&config).map_err(|e| e.to_string())?;
    let tls = rpc_core::Transport::tls(&transport);
    let server = builder
        .transport(transport)
        .codecs(codecs.clone())
        .add_service(GreeterServer::new(Greeting::new(name)))
        .add_service(EchoServer::new(Echoer))
        .bind(&listen)
        .await
        .map_err(|e| e.to_string())?;
    let codecs: Vec<_> = codecs.iter().map(|c| c.name()).collect();
    println!(
        "listening on {} (codecs: {}{})",
        server.local_addr(),
        codecs.join(","),
        if tls { ", TLS" } else { "" }
    );
    if server.token_of("demo.Greeter").is_some() {
        println!("calls need the token published in the registry");
    }
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
