//! The server's listening socket: its backlog is `TcpConfig::backlog` (capped by the
//! kernel at `net.core.somaxconn`), not tokio's fixed 1024.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::{Codec, Server};
use transports::{TcpConfig, TcpTransport};

async fn serve(config: TcpConfig) -> Server {
    Server::builder()
        .transport(TcpTransport::new(config))
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .shutdown_timeout(Duration::ZERO)
        .bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port")
}

/// `net.core.somaxconn`, the kernel's cap on any backlog.
fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(4096)
}

/// The backlog of the socket listening on `addr`, as `ss -ltn` shows it (for a listening
/// socket, Send-Q is the backlog); `None` when `ss` cannot be run.
fn listen_backlog(addr: SocketAddr) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .ok()?;
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = table
        .lines()
        .find(|line| line.contains(&addr.to_string()))
        .unwrap_or_else(|| panic!("ss does not list {addr}:\n{table}"));
    // State, Recv-Q, Send-Q, local address, peer address.
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"LISTEN"), "{line}");
    Some(fields[2].parse().unwrap_or_else(|_| panic!("{line}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_backlog_comes_from_config() {
    let cap = somaxconn();
    for (config, backlog) in [
        (TcpConfig::default().backlog(77), 77),
        (TcpConfig::default().backlog(1500), 1500),
        (TcpConfig::default(), 4096),
    ] {
        let server = serve(config).await;
        let addr = server.local_addr();
        let Some(shown) = listen_backlog(addr) else {
            eprintln!(
                "`ss` (iproute2) is not installed: the backlog is not read back here; \
                 a_server_that_is_not_accepting_queues_backlog_plus_one_connections checks it"
            );
            return;
        };
        eprintln!("backlog({backlog}): ss shows {shown} (somaxconn {cap})");
        assert_eq!(
            shown,
            backlog.min(cap),
            "listen backlog of {addr} configured as {backlog}, somaxconn {cap}"
        );
        server.shutdown().await;
    }
}

/// The backlog at work: while nothing accepts, the kernel queues `backlog + 1` finished
/// handshakes and drops further SYNs, so later connects time out.
#[test]
fn a_server_that_is_not_accepting_queues_backlog_plus_one_connections() {
    const BACKLOG: u32 = 5;
    // The server's tasks run only while this runtime is driven; between `block_on` calls
    // its accept loop is stopped and connections wait in the kernel's accept queue.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(serve(TcpConfig::default().backlog(BACKLOG)));
    let addr = server.local_addr();

    let mut queued = Vec::new();
    let mut refused = None;
    for _ in 0..BACKLOG + 5 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => queued.push(stream),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    eprintln!(
        "backlog({BACKLOG}): {} connects completed while nothing accepted, then {refused:?}",
        queued.len()
    );
    assert_eq!(queued.len(), BACKLOG as usize + 1);

    // Accepting again, the server serves a fresh client.
    drop(queued);
    runtime.block_on(async {
        let probe: ProbeClient = common::client(addr, Codec::Bincode);
        assert_eq!(probe.echo("after".into()).await.unwrap(), "after");
        server.shutdown().await;
    });
}
