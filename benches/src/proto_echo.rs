//! The echo service of [`crate::rpc_echo`] with a protobuf message for its argument and
//! result (as `rpc-build` generates from a `.proto`), over the TCP transport, to compare
//! the three codecs end to end: protobuf here, bincode and JSON on the serde service.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::format::ProtoMessage;
use serde::{Deserialize, Serialize};

use crate::rpc_echo::tcp_transport;

/// The request and the response of `bench.ProtoEcho/Echo`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct EchoMessage {
    /// The bytes to echo.
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

impl ProtoMessage for EchoMessage {}

/// The echo service in the protobuf format.
#[rpc_core::service(name = "bench.ProtoEcho", format = rpc_core::format::Prost)]
pub trait ProtoEcho {
    /// Returns `message` unchanged.
    #[rpc(name = "Echo")]
    async fn echo(&self, message: EchoMessage) -> EchoMessage;
}

/// The server implementation: hands the message back.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtoEchoImpl;

impl ProtoEcho for ProtoEchoImpl {
    async fn echo(&self, message: EchoMessage) -> EchoMessage {
        message
    }
}

/// Binds `addr` and serves [`ProtoEchoImpl`] on it over TCP; the returned future runs
/// the server.
pub async fn serve(addr: &str) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let server = rpc_core::Server::builder()
        .transport(tcp_transport())
        .add_service(ProtoEchoServer::new(ProtoEchoImpl))
        .bind(addr)
        .await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// A client of the service at `addr` in protobuf over one TCP connection, 5 s timeout.
pub fn client(addr: SocketAddr) -> rpc_core::Result<ProtoEchoClient> {
    ProtoEchoClient::builder()
        .transport(tcp_transport())
        .address(addr.to_string())
        .codec(rpc_core::Codec::Protobuf)
        .timeout(Duration::from_secs(5))
        .build()
}
