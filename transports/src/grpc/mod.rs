//! The HTTP/2 transport: the gRPC wire protocol (Dubbo 3 calls it "triple", protocol name
//! `tri`), so stock gRPC clients and servers talk to ours, plus plain HTTP/1.1 `POST` with
//! a JSON body on the same port for `curl`.
//!
//! - A call is `POST /{service}/{method}`; the service version, when there is one, travels
//!   in `tri-service-version`.
//! - The codec is the content type: `application/grpc` or `application/grpc+proto`
//!   (protobuf, gRPC's default), `application/grpc+json`, `application/grpc+bincode`.
//! - One message each way, behind gRPC's 5-byte prefix; the declared length is checked
//!   against [`GrpcConfig::max_message_len`] before anything is allocated.
//! - The outcome is `grpc-status` / `grpc-message` (percent-encoded) in the trailers, plus
//!   `tri-code` with core's own [`rpc_core::Code`] (see [`status`]).
//! - `grpc-timeout` carries the deadline; other headers are attachments, both ways.
//! - One HTTP/2 connection per provider carries every call as its own stream; HTTP/2 PING
//!   frames keep it alive and find dead peers when [`GrpcConfig::keepalive`] turns them on
//!   (off by default, as in tonic). A caller that drops a call resets its
//!   stream, and the provider aborts the handler.

mod body;
mod client;
mod io;
mod json;
pub mod message;
mod metadata;
mod preface;
mod server;
pub mod status;

pub use status::GrpcStatus;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rpc_core::server::Dispatcher;
use rpc_core::transport::{Channel, Listener, Transport};
use rpc_core::{Codec, Result};
use tower::util::BoxCloneSyncService;

/// The setting that raises the message limit, as errors name it.
pub(crate) const MAX_MESSAGE_LEN_SETTING: &str = "GrpcConfig::max_message_len";

/// The header with the service version.
pub(crate) const VERSION_HEADER: &str = "tri-service-version";

/// Settings of the HTTP/2 transport; the defaults follow gRPC where it has one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// Largest message this side accepts (default 4 MiB, as gRPC): a provider's limit on
    /// requests, a consumer's on responses. A longer declared length fails the call with
    /// `RESOURCE_EXHAUSTED` ([`rpc_core::Error::MessageTooLarge`]) before anything is
    /// allocated for it.
    pub max_message_len: u32,
    /// Send an HTTP/2 PING after this long without anything read from the peer; `None`
    /// (the default, as tonic's and grpc-go's) sends none. Both ends only count their
    /// reads while pings are on, so they cost nothing per call.
    pub keepalive_interval: Option<Duration>,
    /// Close a connection whose PING is not answered within this long (default 20 s).
    pub keepalive_timeout: Duration,
    /// Give up a connection attempt after this long (default 3 s).
    pub connect_timeout: Duration,
    /// Wait before the second reconnection attempt; doubles per failure (default 100 ms).
    pub reconnect_backoff: Duration,
    /// Cap of the reconnection backoff (default 5 s).
    pub reconnect_backoff_max: Duration,
    /// Streams (calls) one connection may have open at once on a server (default 1024):
    /// a flood of streams beyond it is refused by HTTP/2 itself.
    pub max_concurrent_streams: u32,
    /// How long a server waits for the rest of a request after its headers, when the call
    /// has no earlier deadline (default 30 s), so a silent stream cannot hold its slot.
    pub request_read_timeout: Duration,
    /// Deadline of plain HTTP/1.1 JSON calls that send no `grpc-timeout` (default 10 s).
    pub json_timeout: Duration,
    /// HTTP/2 flow-control window per stream (default 1 MiB) and per connection (twice
    /// that): HTTP/2's own 64 KiB makes large messages wait for window updates.
    pub stream_window: u32,
    /// How long a TLS server waits for a new connection's TLS handshake (default 5 s), so
    /// a silent or plain peer cannot hold the connection open.
    pub handshake_timeout: Duration,
    /// TLS of accepted connections ([`GrpcTransport::with_server_tls`]).
    pub(crate) server_tls: Option<crate::tcp::ServerTlsState>,
    /// TLS of opened connections ([`GrpcTransport::with_client_tls`]).
    pub(crate) client_tls: Option<crate::tcp::ClientTlsState>,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig {
            max_message_len: 4 * 1024 * 1024,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            max_concurrent_streams: 1024,
            request_read_timeout: Duration::from_secs(30),
            json_timeout: Duration::from_secs(10),
            stream_window: 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            server_tls: None,
            client_tls: None,
        }
    }
}

impl GrpcConfig {
    /// Sets the largest message this side accepts ([`GrpcConfig::max_message_len`]).
    pub fn max_message_len(mut self, len: u32) -> GrpcConfig {
        self.max_message_len = len;
        self
    }

    /// Sets the PING interval (`None`: no pings) and how long an answer may take.
    pub fn keepalive(mut self, interval: Option<Duration>, timeout: Duration) -> GrpcConfig {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets the first reconnection backoff and its cap.
    pub fn reconnect_backoff(mut self, first: Duration, max: Duration) -> GrpcConfig {
        self.reconnect_backoff = first;
        self.reconnect_backoff_max = max;
        self
    }

    /// Sets how many streams one connection may have open at once on a server.
    pub fn max_concurrent_streams(mut self, max: u32) -> GrpcConfig {
        self.max_concurrent_streams = max;
        self
    }

    /// Sets how long a TLS server waits for a connection's TLS handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> GrpcConfig {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the deadline of HTTP/1.1 JSON calls that send none.
    pub fn json_timeout(mut self, timeout: Duration) -> GrpcConfig {
        self.json_timeout = timeout;
        self
    }
}

/// The HTTP/2 (gRPC) transport, protocol name `tri`. Cheap to clone; clones share settings
/// and connections: every channel to one address uses one HTTP/2 connection.
#[derive(Clone, Default)]
pub struct GrpcTransport {
    config: Arc<GrpcConfig>,
    endpoints: Arc<client::Endpoints>,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GrpcTransport {
    /// A transport with `config`.
    pub fn new(config: GrpcConfig) -> GrpcTransport {
        GrpcTransport {
            config: Arc::new(config),
            endpoints: Arc::default(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &GrpcConfig {
        &self.config
    }

    /// A transport with what `config` says about HTTP/2: `protocols.http2.payload` (the
    /// message limit), TLS for serving when `protocols.http2.ssl-enabled` (the
    /// `ssl.server-*` paths) and for dialing when `ssl.client-trust-cert-collection-path`
    /// is set, read as [`crate::TcpTransport::from_config`] reads them. Errors name the
    /// missing key or the file that could not be read.
    pub fn from_config(config: &rpc_core::Config) -> Result<GrpcTransport> {
        let http2 = config.protocol("http2");
        let mut settings = GrpcConfig::default();
        if let Some(payload) = http2.payload {
            settings = settings.max_message_len(payload);
        }
        let mut transport = GrpcTransport::new(settings);
        let (server, client) = crate::tls::from_config(config, "http2")?;
        if let Some(tls) = server {
            transport = transport.with_server_tls(tls)?;
        }
        if let Some(tls) = client {
            transport = transport.with_client_tls(tls)?;
        }
        Ok(transport)
    }

    /// Serves TLS only (rustls), offering ALPN `h2` and `http/1.1` so stock gRPC clients
    /// and HTTP/1.1 JSON callers both work: connections are accepted through a TLS
    /// handshake within [`GrpcConfig::handshake_timeout`], and a peer that fails it (a
    /// plain client, a client without the required certificate) is closed. A server on
    /// this transport announces `tls=true` in its registry URLs; for plain and TLS side by
    /// side, serve on two transports (two ports). Fails with
    /// [`rpc_core::Error::Config`] when the certificate and key do not fit together.
    pub fn with_server_tls(mut self, tls: crate::tls::ServerTls) -> Result<GrpcTransport> {
        let mut rustls = (*tls.rustls_config()?).clone();
        rustls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(rustls));
        Arc::make_mut(&mut self.config).server_tls = Some(crate::tcp::ServerTlsState { acceptor });
        Ok(self)
    }

    /// Opens every connection through a TLS handshake (rustls, ALPN `h2`) within
    /// [`GrpcConfig::connect_timeout`], checking the provider's certificate against the CA
    /// bundle and its name (the host of the provider's address, or
    /// [`crate::tls::ClientTls::server_name`]). A consumer on this transport uses only
    /// providers announcing `tls=true`.
    pub fn with_client_tls(mut self, tls: crate::tls::ClientTls) -> Result<GrpcTransport> {
        let mut rustls = (*tls.rustls_config()?).clone();
        rustls.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls));
        let server_name = tls.server_name_override().map(str::to_owned);
        Arc::make_mut(&mut self.config).client_tls = Some(crate::tcp::ClientTlsState {
            connector,
            server_name,
        });
        // Connections opened without TLS must not be shared with this transport.
        self.endpoints = Arc::default();
        Ok(self)
    }
}

impl Transport for GrpcTransport {
    fn protocol(&self) -> &'static str {
        "tri"
    }

    fn tls(&self) -> bool {
        self.config.server_tls.is_some() || self.config.client_tls.is_some()
    }

    /// Connection waits and answer waits both end at the request's deadline.
    fn enforces_deadline(&self) -> bool {
        true
    }

    /// A channel to `address` (`host:port`); anything else is an
    /// [`rpc_core::Error::Config`] naming it.
    fn connect(&self, address: &str) -> Result<Channel> {
        crate::tcp::check_address(address)?;
        if self.config.server_tls.is_some() && self.config.client_tls.is_none() {
            return Err(rpc_core::Error::Config(
                "this transport serves TLS but has no client TLS settings to dial providers \
                 with; call GrpcTransport::with_client_tls"
                    .into(),
            ));
        }
        Ok(BoxCloneSyncService::new(
            self.endpoints.channel(address, &self.config),
        ))
    }

    fn bind(
        &self,
        address: &str,
        dispatcher: Dispatcher,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        Box::pin(server::bind(
            address.to_owned(),
            dispatcher,
            self.config.clone(),
        ))
    }
}

/// The content type of `codec`'s calls. Protobuf is gRPC's default, which stock clients
/// send and expect as bare `application/grpc`.
pub fn content_type(codec: Codec) -> &'static str {
    match codec {
        Codec::Json => "application/grpc+json",
        Codec::Protobuf => "application/grpc",
        _ => "application/grpc+bincode",
    }
}

/// The codec a gRPC content type names; `None` when it names none this build knows (or
/// is not gRPC at all).
pub fn codec_for_content_type(content_type: &[u8]) -> Option<Codec> {
    // Parameters (`; charset=...`) do not change the codec.
    let essence = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    match essence {
        b"application/grpc" | b"application/grpc+proto" => Some(Codec::Protobuf),
        b"application/grpc+json" => Some(Codec::Json),
        b"application/grpc+bincode" => Some(Codec::Bincode),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_their_codec() {
        for codec in Codec::ALL {
            assert_eq!(
                codec_for_content_type(content_type(codec).as_bytes()),
                Some(codec)
            );
        }
        assert_eq!(
            codec_for_content_type(b"application/grpc+json; charset=utf-8"),
            Some(Codec::Json)
        );
        assert_eq!(
            codec_for_content_type(b"application/grpc+proto"),
            Some(Codec::Protobuf)
        );
        assert_eq!(codec_for_content_type(b"text/plain"), None);
        assert_eq!(codec_for_content_type(b"application/grpc+xml"), None);
    }
}
