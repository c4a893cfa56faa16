//! One server on TCP and HTTP/2 at once; consumers pick the transport by the registry
//! URL's protocol.

mod common;

use std::time::Duration;

use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::Server;
use transports::{GrpcTransport, TcpTransport};

async fn both(registry: &str) -> Server {
    let registry = registry::connect(registry).await.unwrap();
    Server::builder()
        .transport(TcpTransport::default())
        .listen(GrpcTransport::default(), "127.0.0.1:0")
        .registry(registry)
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn one_server_listens_and_registers_once_per_transport() {
    let server = both("memory://multi-register").await;
    let addresses = server.local_addrs();
    assert_eq!(addresses.len(), 2);
    assert_eq!(addresses[0].0, "tcp");
    assert_eq!(addresses[1].0, "tri");
    assert_ne!(addresses[0].1, addresses[1].1);
    assert_eq!(server.local_addr_of("tri"), Some(addresses[1].1));
    let registered = server.registered();
    let schemes: Vec<&str> = registered.iter().map(|u| u.scheme()).collect();
    assert_eq!(schemes, ["tcp", "tri"]);
    // Each port speaks its own protocol.
    let over_tcp = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(addresses[0].1.to_string())
        .build()
        .unwrap();
    let over_h2 = ProbeClient::builder()
        .transport(GrpcTransport::default())
        .address(addresses[1].1.to_string())
        .build()
        .unwrap();
    assert_eq!(over_tcp.echo("tcp".into()).await.unwrap(), "tcp");
    assert_eq!(over_h2.echo("h2".into()).await.unwrap(), "h2");
    server.shutdown().await;
}

#[tokio::test]
async fn a_consumer_uses_the_providers_of_its_transports() {
    let tcp_only = Server::builder()
        .transport(TcpTransport::default())
        .registry(registry::connect("memory://multi-consume").await.unwrap())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let h2_only = Server::builder()
        .transport(GrpcTransport::default())
        .registry(registry::connect("memory://multi-consume").await.unwrap())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let registry = registry::connect("memory://multi-consume").await.unwrap();
    let cache = std::env::temp_dir().join(format!("multi-consume-{}", std::process::id()));
    let client = |transports: &[&str]| {
        let mut builder = ProbeClient::builder()
            .registry(registry.clone())
            .registry_cache(cache.join(transports.join("-")))
            .timeout(Duration::from_secs(5));
        for transport in transports {
            builder = match *transport {
                "tcp" => builder.transport(TcpTransport::default()),
                _ => builder.transport(GrpcTransport::default()),
            };
        }
        builder.build().unwrap()
    };
    let both = client(&["tcp", "tri"]);
    let only_h2 = client(&["tri"]);
    assert_eq!(both.echo("x".into()).await.unwrap(), "x");
    assert_eq!(only_h2.echo("y".into()).await.unwrap(), "y");
    let listed = common::eventually(Duration::from_secs(5), || {
        both.client().providers().len() == 2
    })
    .await;
    assert!(listed.is_some(), "{:?}", both.client().providers());
    let h2_address = h2_only.local_addr().to_string();
    let providers = only_h2.client().providers();
    assert_eq!(providers.len(), 1);
    assert_eq!(&*providers.iter().next().unwrap().address, h2_address);
    // Calls spread over both kinds of provider.
    for i in 0..20 {
        assert_eq!(both.echo(i.to_string()).await.unwrap(), i.to_string());
    }
    let used: Vec<u64> = both
        .client()
        .providers()
        .iter()
        .map(|p| p.stats.succeeded())
        .collect();
    assert!(used.iter().all(|n| *n > 0), "{used:?}");
    let _ = std::fs::remove_dir_all(cache);
    drop((tcp_only, h2_only));
}

#[tokio::test]
async fn an_address_names_its_protocol() {
    let server = both("memory://multi-address").await;
    let tri = format!("tri://{}", server.local_addr_of("tri").unwrap());
    let tcp = format!("tcp://{}", server.local_addr_of("tcp").unwrap());
    let probe = ProbeClient::builder()
        .transport(TcpTransport::default())
        .transport(GrpcTransport::default())
        .addresses([tri, tcp])
        .build()
        .unwrap();
    for i in 0..10 {
        assert_eq!(probe.echo(i.to_string()).await.unwrap(), i.to_string());
    }
    let error = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address("tri://127.0.0.1:1")
        .build()
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("no transport for protocol \"tri\""),
        "{error}"
    );
}
