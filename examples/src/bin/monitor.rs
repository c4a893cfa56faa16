//! A Dubbo-style monitor: serves the `rpc.Monitor` service that processes push their
//! statistics to (`provider --monitor ADDRESS`), and shows the aggregate of every process
//! on its dashboard (`/monitor` of its admin endpoint).
//!
//! `monitor --listen 127.0.0.1:7070 --admin 127.0.0.1:7071`

use clap::Parser;
use examples::{exit_code, init_logging};
use rpc_core::Server;
use transports::TcpTransport;

/// Receives statistics pushed by RPC processes and shows their aggregate.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address of the monitor service (what processes push to); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7070", env = "RPC_MONITOR_LISTEN")]
    listen: String,
    /// Address of the dashboard (the admin endpoint); loopback unless you give a token.
    #[arg(long, default_value = "127.0.0.1:7071", env = "RPC_MONITOR_ADMIN")]
    admin: String,
    /// Bearer token for the admin endpoint's POST routes.
    #[arg(long, env = "RPC_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Registry to announce the monitor service in (e.g. file:///tmp/rpc-registry); none by default.
    #[arg(long, env = "RPC_REGISTRY")]
    registry: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    exit_code("monitor", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), String> {
    let store = admin::monitor::MonitorStore::new();
    let mut builder = Server::builder()
        .transport(TcpTransport::default())
        .add_service(admin::monitor::MonitorServer::new(store.clone()))
        .application("monitor");
    if let Some(url) = &args.registry {
        let registry = registry::connect(url)
            .await
            .map_err(|e| format!("--registry: {e}"))?;
        builder = builder.registry(registry);
    }
    let server = builder
        .bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let mut admin = admin::Admin::builder()
        .bind(&args.admin)
        .application("monitor")
        .server(server.control())
        .monitor(store);
    if let Some(token) = args.admin_token {
        admin = admin.token(token);
    }
    let admin = admin
        .start()
        .await
        .map_err(|e| format!("--admin {}: {e}", args.admin))?;
    println!("monitor service on {}", server.local_addr());
    println!("monitor dashboard at {}monitor", admin.url());
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    admin.shutdown().await;
    Ok(())
}
