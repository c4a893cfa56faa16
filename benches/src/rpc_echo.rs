//! The echo service on our framework: `#[rpc_core::service]` over the long-connection TCP
//! transport (or the HTTP/2 one: [`serve_h2`], [`h2_client`]), bincode codec.

use std::net::SocketAddr;
use std::time::Duration;

use transports::{GrpcTransport, TcpTransport};

/// The echo service of the benchmarks.
#[rpc_core::service(name = "bench.Echo")]
pub trait Echo {
    /// Returns `payload` unchanged.
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8>;
}

/// The server implementation: hands the payload back.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// Binds `addr` and serves [`EchoImpl`] on it; the returned future runs the server.
pub async fn serve(addr: &str) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let server = rpc_core::Server::builder()
        .transport(TcpTransport::default())
        .add_service(EchoServer::new(EchoImpl))
        .bind(addr)
        .await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// Binds `addr` and serves [`EchoImpl`] on it over HTTP/2 (gRPC); the returned future
/// runs the server.
pub async fn serve_h2(
    addr: &str,
) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let server = rpc_core::Server::builder()
        .transport(GrpcTransport::default())
        .add_service(EchoServer::new(EchoImpl))
        .bind(addr)
        .await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// A client of the echo service at `addr` over HTTP/2: one connection shared by all
/// clones, every call a stream, bincode, 5 s timeout.
pub fn h2_client(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    EchoClient::builder()
        .transport(GrpcTransport::default())
        .address(addr.to_string())
        .codec(rpc_core::Codec::Bincode)
        .timeout(Duration::from_secs(5))
        .build()
}

/// A client of the echo service at `addr`: one multiplexed connection shared by all clones,
/// bincode, 5 s timeout.
pub fn client(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    EchoClient::builder()
        .transport(TcpTransport::default())
        .address(addr.to_string())
        .codec(rpc_core::Codec::Bincode)
        .timeout(Duration::from_secs(5))
        .build()
}

/// Echo calls straight on the transport's channel, without the consumer stack: no
/// deadline layer, cluster, load balancer or provider statistics. Only for measuring what
/// that stack costs; real clients use [`client`].
#[derive(Clone)]
pub struct BareClient {
    channel: rpc_core::Channel,
}

impl BareClient {
    /// A channel to `addr` through a fresh TCP transport.
    pub fn connect(addr: SocketAddr) -> rpc_core::Result<BareClient> {
        use rpc_core::Transport;
        let channel = TcpTransport::default().connect(&addr.to_string())?;
        Ok(BareClient { channel })
    }

    /// One echo call, encoded and decoded here.
    pub async fn echo(&self, payload: Vec<u8>) -> rpc_core::Result<Vec<u8>> {
        use tower::ServiceExt;
        let codec = rpc_core::Codec::Bincode;
        let mut body = bytes::BytesMut::with_capacity(256);
        codec.encode(&(&payload,), &mut body)?;
        let request = rpc_core::Request::new(
            ECHO_DESCRIPTOR.name,
            ECHO_DESCRIPTOR.version,
            &ECHO_DESCRIPTOR.methods[0],
            codec,
            body.freeze(),
            Duration::from_secs(5),
        );
        let response = self.channel.clone().oneshot(request).await?;
        response.codec.decode(&response.body)
    }
}
