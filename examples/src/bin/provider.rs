//! Serves the example `Greeter` and `Echo` services until Ctrl-C.
//!
//! `provider --listen 127.0.0.1:20880 --codec bincode,json --name p1`

use std::io::Write;

use examples::{EchoServer, Echoer, GreeterServer, Greeting, exit_code, init_logging, parse_flags};
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
    for (flag, value) in parse_flags(&["--listen", "--codec", "--name"])? {
        match flag.as_str() {
            "--listen" => listen = value,
            "--codec" => {
                codecs = value
                    .split(',')
                    .map(|c| c.parse::<Codec>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?
            }
            _ => name = value,
        }
    }
    let server = Server::builder()
        .transport(TcpTransport::default())
        .codecs(codecs.clone())
        .add_service(GreeterServer::new(Greeting::new(name)))
        .add_service(EchoServer::new(Echoer))
        .bind(&listen)
        .await
        .map_err(|e| e.to_string())?;
    let codecs: Vec<_> = codecs.iter().map(|c| c.name()).collect();
    println!(
        "listening on {} (codecs: {})",
        server.local_addr(),
        codecs.join(",")
    );
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
