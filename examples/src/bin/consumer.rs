//! Calls the example services on one or more providers.
//!
//! `consumer --connect 127.0.0.1:20880[,127.0.0.1:20881] --codec json --calls 5`

use std::time::Duration;

use examples::{EchoClient, GreeterClient, exit_code, init_logging, parse_flags};
use rpc_core::Codec;
use transports::TcpTransport;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    exit_code("consumer", run().await)
}

async fn run() -> Result<(), String> {
    let mut addresses = vec!["127.0.0.1:20880".to_owned()];
    let mut codec = Codec::Bincode;
    let mut calls = 3u32;
    for (flag, value) in parse_flags(&["--connect", "--codec", "--calls"])? {
        match flag.as_str() {
            "--connect" => addresses = value.split(',').map(str::to_owned).collect(),
            "--codec" => codec = value.parse().map_err(|e: rpc_core::Error| e.to_string())?,
            _ => calls = value.parse().map_err(|e| format!("--calls: {e}"))?,
        }
    }
    let transport = TcpTransport::default();
    let greeter = GreeterClient::builder()
        .transport(transport.clone())
        .addresses(addresses.clone())
        .codec(codec)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let echo = EchoClient::builder()
        .transport(transport)
        .addresses(addresses)
        .codec(codec)
        .build()
        .map_err(|e| e.to_string())?;
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
    if failures > 0 {
        return Err(format!("{failures} calls failed"));
    }
    Ok(())
}
