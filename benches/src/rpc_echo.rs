//! The echo service on our framework: `#[rpc_core::service]` over the long-connection TCP
//! transport (or the HTTP/2 one: [`serve_h2`], [`h2_client`]), bincode codec.

use std::net::SocketAddr;
use std::time::Duration;

use transports::{GrpcConfig, GrpcTransport, TcpConfig, TcpTransport};

/// The largest message the benchmarks' transports accept: the load generator's largest
/// payload (8 MiB) plus room for the request's header, over both transports' defaults
/// (8 MiB for TCP frames, 4 MiB for HTTP/2 messages).
pub const MAX_MESSAGE_LEN: u32 = 16 * 1024 * 1024;

/// The TCP transport every benchmark system of ours uses: defaults, except messages up
/// to [`MAX_MESSAGE_LEN`] and a write queue that holds 64 calls of that size, so large
/// payloads are never refused for a full queue (tarpc and tonic have no such limit).
pub fn tcp_transport() -> TcpTransport {
    TcpTransport::new(
        TcpConfig::default()
            .max_frame_len(MAX_MESSAGE_LEN)
            .max_write_buffer(64 * MAX_MESSAGE_LEN as usize),
    )
}

/// The HTTP/2 transport every benchmark system of ours uses: defaults, except messages
/// up to [`MAX_MESSAGE_LEN`].
pub fn h2_transport() -> GrpcTransport {
    GrpcTransport::new(GrpcConfig::default().max_message_len(MAX_MESSAGE_LEN))
}

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
    serve_with(addr, Limits::None, true).await
}

/// Serves [`EchoImpl`] on a free loopback port of `transport` with the server builder's
/// defaults (what a new user writes), running in the background; its address.
pub async fn serve_defaults(transport: TcpTransport) -> rpc_core::Result<SocketAddr> {
    let server = rpc_core::Server::builder()
        .transport(transport)
        .add_service(EchoServer::new(EchoImpl))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    tokio::spawn(server.run_until(std::future::pending()));
    Ok(addr)
}

/// Which limits an echo server enforces (to measure what they cost).
#[derive(Debug, Clone)]
pub enum Limits {
    /// None.
    None,
    /// A local token bucket and an `executes` cap, both far above any load generated:
    /// every call is checked, none is refused.
    Local,
    /// A rate limit shared through the Redis at this URL, far above the load.
    Redis(String),
}

/// [`serve`] with `limits` on the echo method, counting calls in the statistics (the
/// default) or not (`stats == false`), to measure what each costs.
pub async fn serve_with(
    addr: &str,
    limits: Limits,
    stats: bool,
) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    use rpc_core::limit::{RateLimit, Rule, Scope};
    let echo = Scope::Method(ECHO_DESCRIPTOR.name.into(), "echo".into());
    let mut builder = rpc_core::Server::builder()
        .transport(tcp_transport())
        .add_service(EchoServer::new(EchoImpl));
    if !stats {
        builder = builder.without_stats();
    }
    match limits {
        Limits::None => {}
        Limits::Local => {
            let rule = Rule::rate(RateLimit::per_second(100_000_000)).with_executes(1_000_000);
            builder = builder.limit(echo, rule);
        }
        Limits::Redis(url) => {
            let redis = rpc_core::limit::redis::RedisLimiter::new(
                &url,
                &format!("bench:{}:", std::process::id()),
                rpc_core::limit::redis::Fallback::Closed,
            )?;
            builder = builder.limit(
                echo,
                Rule::rate(RateLimit::per_second(100_000_000).shared(redis)),
            );
        }
    }
    let server = builder.bind(addr).await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// The token [`serve_with_token`] requires and [`client_with_token`] sends.
pub const BENCH_TOKEN: &str = "loadgen-token-0123456789abcdef";

/// [`serve`] with Dubbo's token check on every call ([`BENCH_TOKEN`]), to measure what
/// the check costs.
pub async fn serve_with_token(
    addr: &str,
) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let server = rpc_core::Server::builder()
        .transport(tcp_transport())
        .token(rpc_core::server::Token::Fixed(BENCH_TOKEN.into()))
        .add_service(EchoServer::new(EchoImpl))
        .bind(addr)
        .await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// The builder every benchmark client of ours starts from: `transport` to `addr`, `codec`,
/// 5 s timeout.
fn builder(
    transport: impl rpc_core::Transport,
    addr: SocketAddr,
    codec: rpc_core::Codec,
) -> rpc_core::ClientBuilder<EchoClient> {
    EchoClient::builder()
        .transport(transport)
        .address(addr.to_string())
        .codec(codec)
        .timeout(Duration::from_secs(5))
}

/// [`client`] sending [`BENCH_TOKEN`] with every call.
pub fn client_with_token(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    builder(tcp_transport(), addr, rpc_core::Codec::Bincode)
        .token(BENCH_TOKEN)
        .build()
}

/// Binds `addr` and serves [`EchoImpl`] on it over HTTP/2 (gRPC); the returned future
/// runs the server.
pub async fn serve_h2(
    addr: &str,
) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let server = rpc_core::Server::builder()
        .transport(h2_transport())
        .add_service(EchoServer::new(EchoImpl))
        .bind(addr)
        .await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// A client of the echo service at `addr` over HTTP/2: one connection shared by all
/// clones, every call a stream, bincode, 5 s timeout.
pub fn h2_client(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    builder(h2_transport(), addr, rpc_core::Codec::Bincode).build()
}

/// A client of the echo service at `addr`: one multiplexed connection shared by all clones,
/// bincode, 5 s timeout.
pub fn client(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    client_counted(addr, true)
}

/// [`client`] speaking JSON instead of bincode (to compare the codecs end to end).
pub fn json_client(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    builder(tcp_transport(), addr, rpc_core::Codec::Json).build()
}

/// [`client`], counting calls in the statistics (the default) or not.
pub fn client_counted(addr: SocketAddr, stats: bool) -> rpc_core::Result<EchoClient> {
    let builder = builder(tcp_transport(), addr, rpc_core::Codec::Bincode);
    match stats {
        true => builder.build(),
        false => builder.without_stats().build(),
    }
}

/// [`client`] with a circuit breaker (default settings; it stays closed).
pub fn client_with_breaker(addr: SocketAddr) -> rpc_core::Result<EchoClient> {
    builder(tcp_transport(), addr, rpc_core::Codec::Bincode)
        .circuit_breaker(rpc_core::client::BreakerConfig::default())
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
        BareClient::over(tcp_transport(), addr)
    }

    /// A channel to `addr` through a fresh HTTP/2 transport ([`h2_transport`]).
    pub fn connect_h2(addr: SocketAddr) -> rpc_core::Result<BareClient> {
        BareClient::over(h2_transport(), addr)
    }

    fn over(transport: impl rpc_core::Transport, addr: SocketAddr) -> rpc_core::Result<BareClient> {
        let channel = transport.connect(&addr.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The load generator's largest payload, 8 MiB, and what a request adds to it.
    const LARGEST_PAYLOAD: u32 = 8 * 1024 * 1024;
    const HEADROOM: u32 = 64 * 1024;

    #[test]
    fn both_transports_carry_the_largest_payload_with_its_header() {
        assert!(tcp_transport().config().max_frame_len >= LARGEST_PAYLOAD + HEADROOM);
        assert!(h2_transport().config().max_message_len >= LARGEST_PAYLOAD + HEADROOM);
        // 64 such calls queue without the client refusing any.
        assert!(
            tcp_transport().config().max_write_buffer >= 64 * (LARGEST_PAYLOAD + HEADROOM) as usize
        );
    }
}
