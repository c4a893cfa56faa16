//! The long-connection TCP transport: Dubbo's 16-byte header, one multiplexed connection
//! per provider, batched writes, heartbeats and reconnection.

mod client;
mod conn;
pub mod frame;
pub mod head;
mod server;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rpc_core::Result;
use rpc_core::server::Dispatcher;
use rpc_core::transport::{Channel, Listener, Transport};
use tower::util::BoxCloneSyncService;

/// Settings of the TCP transport; the defaults follow Dubbo where it has one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpConfig {
    /// Largest frame body accepted or sent (default 8 MiB).
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
    /// Connections a server accepts at once; more are closed on accept (default 10 000).
    pub max_connections: usize,
    /// Bytes queued for one connection before new calls are rejected (default 64 MiB).
    pub max_write_buffer: usize,
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
        }
    }
}

impl TcpConfig {
    /// Sets the largest frame body.
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

    /// Sets how many connections a server accepts at once.
    pub fn max_connections(mut self, max: usize) -> TcpConfig {
        self.max_connections = max;
        self
    }
}

/// The TCP transport. Cheap to clone; one value serves both clients and servers.
#[derive(Debug, Clone, Default)]
pub struct TcpTransport {
    config: Arc<TcpConfig>,
}

impl TcpTransport {
    /// A transport with `config`.
    pub fn new(config: TcpConfig) -> TcpTransport {
        TcpTransport {
            config: Arc::new(config),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }
}

impl Transport for TcpTransport {
    fn scheme(&self) -> &'static str {
        "tcp"
    }

    fn connect(&self, address: &str) -> Result<Channel> {
        Ok(BoxCloneSyncService::new(client::TcpChannel::new(
            address,
            self.config.clone(),
        )))
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
