//! The long-connection TCP transport: Dubbo's 16-byte header, one multiplexed connection
//! per provider, batched writes, heartbeats and reconnection.

mod client;
mod conn;
pub mod frame;
pub mod head;
pub(crate) mod server;
pub mod status;

pub use status::Status;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rpc_core::Result;
use rpc_core::server::Dispatcher;
use rpc_core::transport::{Channel, Listener, Transport};
use tower::util::BoxCloneSyncService;

/// The setting that raises the frame limit, as errors name it.
pub(crate) const MAX_FRAME_LEN_SETTING: &str = "TcpConfig::max_frame_len";

/// Settings of the TCP transport; the defaults follow Dubbo where it has one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpConfig {
    /// Largest frame body this side accepts (default 8 MiB): a provider's limit on the
    /// requests it reads, a consumer's on the responses it reads. Nothing is refused on
    /// sending; a frame over the receiver's limit fails its call with
    /// [`rpc_core::Error::MessageTooLarge`] naming that limit. To carry larger messages,
    /// raise it on the provider for requests and on the consumer for responses.
    pub max_frame_len: u32,
    /// Send a heartbeat after this long without traffic (default 60 s).
    pub heartbeat_interval: Duration,
    /// Close a connection that read nothing for this long (default 180 s).
    pub idle_timeout: Duration,
    /// Give up a connection attempt after this long (default 3 s).
    pub connect_timeout: Duration,
    /// Wait before the second reconnection attempt; doubles per failure (default 100 ms).
    pub reconnect_backoff: Duration,
    /// Cap of the reconnection backoff (default 5 s).
    pub reconnect_backoff_max: Duration,
    /// Connections a server keeps open at once (default 10 000). At the cap, a new
    /// connection takes the place of the oldest one that never sent a request; when every
    /// open connection has, the new one is closed.
    pub max_connections: usize,
    /// Bytes queued for one connection before a client refuses new calls on it and a
    /// server stops reading new requests from it (default 64 MiB).
    pub max_write_buffer: usize,
    /// How long a write may make no progress before the connection is closed: the peer
    /// stopped reading (default 30 s).
    pub write_stall_timeout: Duration,
    /// How long a server waits for a new connection's first frame before closing it
    /// (default 5 s), so silent connections cannot hold slots.
    pub handshake_timeout: Duration,
    /// The listen backlog of a server socket (default 4096; the kernel caps it at
    /// `net.core.somaxconn`).
    pub backlog: u32,
    /// The local address a client's connections leave from (default: the system picks),
    /// for hosts with several addresses where a provider's IP rules tell them apart.
    pub local_ip: Option<std::net::IpAddr>,
    /// TLS of accepted connections ([`TcpTransport::with_server_tls`]).
    pub(crate) server_tls: Option<ServerTlsState>,
    /// TLS of opened connections ([`TcpTransport::with_client_tls`]).
    pub(crate) client_tls: Option<ClientTlsState>,
}

/// A server's TLS acceptor.
#[derive(Clone)]
pub(crate) struct ServerTlsState {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

/// A client's TLS connector and the name it checks certificates against.
#[derive(Clone)]
pub(crate) struct ClientTlsState {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: Option<String>,
}

impl std::fmt::Debug for ServerTlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl std::fmt::Debug for ClientTlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            max_frame_len: frame::DEFAULT_MAX_FRAME_LEN,
            heartbeat_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            max_connections: 10_000,
            max_write_buffer: 64 * 1024 * 1024,
            write_stall_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            backlog: 4096,
            local_ip: None,
            server_tls: None,
            client_tls: None,
        }
    }
}

impl TcpConfig {
    /// Sets the largest frame body this side accepts ([`TcpConfig::max_frame_len`]).
    pub fn max_frame_len(mut self, len: u32) -> TcpConfig {
        self.max_frame_len = len;
        self
    }

    /// Sets the heartbeat interval and the idle timeout.
    pub fn heartbeat(mut self, interval: Duration, idle_timeout: Duration) -> TcpConfig {
        self.heartbeat_interval = interval;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the first reconnection backoff and its cap.
    pub fn reconnect_backoff(mut self, first: Duration, max: Duration) -> TcpConfig {
        self.reconnect_backoff = first;
        self.reconnect_backoff_max = max;
        self
    }

    /// Sets how many connections a server keeps open at once.
    pub fn max_connections(mut self, max: usize) -> TcpConfig {
        self.max_connections = max;
        self
    }

    /// Sets the bytes queued per connection before backpressure.
    pub fn max_write_buffer(mut self, bytes: usize) -> TcpConfig {
        self.max_write_buffer = bytes;
        self
    }

    /// Sets how long a write may make no progress before the connection is closed.
    pub fn write_stall_timeout(mut self, timeout: Duration) -> TcpConfig {
        self.write_stall_timeout = timeout;
        self
    }

    /// Sets how long a new connection may stay silent before its first frame.
    pub fn handshake_timeout(mut self, timeout: Duration) -> TcpConfig {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the local address client connections leave from.
    pub fn local_ip(mut self, ip: std::net::IpAddr) -> TcpConfig {
        self.local_ip = Some(ip);
        self
    }

    /// Sets the listen backlog of server sockets.
    pub fn backlog(mut self, backlog: u32) -> TcpConfig {
        self.backlog = backlog;
        self
    }
}

/// The TCP transport. Cheap to clone; clones share settings and connections: every
/// channel to one address, from any client built with this transport, uses one connection.
#[derive(Clone, Default)]
pub struct TcpTransport {
    config: Arc<TcpConfig>,
    endpoints: Arc<client::Endpoints>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// A transport with `config`.
    pub fn new(config: TcpConfig) -> TcpTransport {
        TcpTransport {
            config: Arc::new(config),
            endpoints: Arc::default(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// A transport with what `config` says about TCP: `protocols.tcp.payload` (the frame
    /// limit), TLS for serving when `protocols.tcp.ssl-enabled` (the `ssl.server-*`
    /// paths) and for dialing when `ssl.client-trust-cert-collection-path` is set (with
    /// the `ssl.client-*` identity and `ssl.server-name`). Errors name the missing key or
    /// the file that could not be read.
    pub fn from_config(config: &rpc_core::Config) -> Result<TcpTransport> {
        let tcp = config.protocol("tcp");
        let mut settings = TcpConfig::default();
        if let Some(payload) = tcp.payload {
            settings = settings.max_frame_len(payload);
        }
        let mut transport = TcpTransport::new(settings);
        let (server, client) = crate::tls::from_config(config, "tcp")?;
        if let Some(tls) = server {
            transport = transport.with_server_tls(tls)?;
        }
        if let Some(tls) = client {
            transport = transport.with_client_tls(tls)?;
        }
        Ok(transport)
    }

    /// Serves TLS only (rustls): connections are accepted through a TLS handshake within
    /// [`TcpConfig::handshake_timeout`]; a peer that fails it (a plain client, a client
    /// without the required certificate) is closed. A server on this transport announces
    /// `tls=true` in its registry URLs. For plain and TLS side by side, serve on two
    /// transports (two ports). Fails with [`rpc_core::Error::Config`] when the
    /// certificate and key do not fit together.
    pub fn with_server_tls(mut self, tls: crate::tls::ServerTls) -> Result<TcpTransport> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls_config()?);
        Arc::make_mut(&mut self.config).server_tls = Some(ServerTlsState { acceptor });
        Ok(self)
    }

    /// Opens every connection through a TLS handshake (rustls), checking the provider's
    /// certificate against the CA bundle and its name (the host of the provider's address,
    /// or [`crate::tls::ClientTls::server_name`]). A consumer on this transport uses only
    /// providers announcing `tls=true`.
    pub fn with_client_tls(mut self, tls: crate::tls::ClientTls) -> Result<TcpTransport> {
        let connector = tokio_rustls::TlsConnector::from(tls.rustls_config()?);
        let server_name = tls.server_name_override().map(str::to_owned);
        Arc::make_mut(&mut self.config).client_tls = Some(ClientTlsState {
            connector,
            server_name,
        });
        self.endpoints = Arc::default();
        Ok(self)
    }
}

impl Transport for TcpTransport {
    fn protocol(&self) -> &'static str {
        "tcp"
    }

    fn tls(&self) -> bool {
        self.config.server_tls.is_some() || self.config.client_tls.is_some()
    }

    /// Connection waits and answer waits both end at the request's deadline.
    fn enforces_deadline(&self) -> bool {
        true
    }

    /// A channel to `address`, which must be `host:port` (`[v6]:port` for IPv6 literals);
    /// anything else is an [`rpc_core::Error::Config`] naming it, so a client builder
    /// refuses it before the first call.
    fn connect(&self, address: &str) -> Result<Channel> {
        check_address(address)?;
        if self.config.server_tls.is_some() && self.config.client_tls.is_none() {
            return Err(rpc_core::Error::Config(
                "this transport serves TLS but has no client TLS settings to dial providers \
                 with; call TcpTransport::with_client_tls"
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

/// Checks that `address` has the `host:port` form a TCP connection needs; says which part
/// is wrong and what is expected otherwise.
pub(crate) fn check_address(address: &str) -> Result<()> {
    let invalid = |why: &str| {
        rpc_core::Error::Config(format!(
            "invalid TCP address {address:?}: {why}; expected host:port, e.g. \
             \"127.0.0.1:20880\", \"localhost:20880\" or \"[::1]:20880\""
        ))
    };
    if address.contains("://") {
        return Err(invalid("give the address without a scheme"));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(invalid("no port"));
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(invalid("an IPv6 address needs brackets"));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(invalid("the host is not a host name or IP address"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(invalid("port 0 cannot be connected to")),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(&format!(
            "port {port:?} is not a number from 1 to 65535"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_need_a_host_and_a_port() {
        for good in [
            "127.0.0.1:20880",
            "localhost:1",
            "[::1]:20880",
            "provider.example:65535",
        ] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("localhost", "no port"),
            (":20880", "no host"),
            ("::1:20880", "brackets"),
            ("localhost:http", "not a number"),
            ("localhost:70000", "not a number"),
            ("localhost:0", "port 0"),
            ("tcp://localhost:1", "without a scheme"),
            ("my host:1", "not a host name"),
        ] {
            let error = check_address(bad).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains(why)
                    && e.contains("expected host:port")
                    && e.contains(&format!("{bad:?}"))),
                "{bad}: {error:?}"
            );
        }
    }
}
