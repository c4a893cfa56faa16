//! The admin endpoint of an RPC process: what it serves, whom it calls, how the calls go,
//! and a few levers (brpc's built-in pages and Dubbo's QoS port in one place).
//!
//! ```no_run
//! # async fn run(server: &rpc_core::Server, client: rpc_core::Client) -> Result<(), admin::Error> {
//! let admin = admin::Admin::builder()
//!     .bind("127.0.0.1:0")        // the default; another address needs a token for mutations
//!     .server(server.control())   // provided services, readiness, offline/online
//!     .client(client)             // consumed services and their providers
//!     .start()
//!     .await?;
//! println!("admin at {}", admin.url());
//! # Ok(()) }
//! ```
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard (one page, no external assets) |
//! | `GET /health` | 200 while the process runs (liveness) |
//! | `GET /ready` | 200 once serving (servers are registered before they count), 503 while starting, draining, or once every server stopped |
//! | `GET /api/services` | provided and consumed services, methods, argument names, per-method settings |
//! | `GET /api/providers` | per consumed service, its providers as the directory sees them |
//! | `GET /api/stats` | per service, method and side: counts, failures by kind, in flight, rates, latency, bytes |
//! | `GET /metrics` | the same in Prometheus text exposition |
//! | `POST /api/services/{service}/offline`, `/online` | unregister / register again without stopping |
//! | `POST /api/invoke` | generic invoke: `{"service", "method", "args"}` -> `{"result"}` |
//! | `GET /monitor`, `GET /api/monitor` | with [`AdminBuilder::monitor`]: what other processes pushed ([`monitor`]) |
//!
//! The `POST` routes change things, so they need `Authorization: Bearer TOKEN` when a token
//! is configured; without one they are refused unless the endpoint is bound to loopback.

mod api;
mod dashboard;
mod metrics;
pub mod monitor;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rpc_core::Client;
use rpc_core::server::ServerControl;
use rpc_core::stats::Stats;
use tokio::sync::watch;

/// What can go wrong starting the admin endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error("admin endpoint cannot bind {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("admin endpoint: {0}")]
    Config(String),
    /// A call failed (the monitor's push, a generic invoke).
    #[error(transparent)]
    Rpc(#[from] rpc_core::Error),
}

/// Largest request body accepted (a generic invoke's arguments): 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Entry point: [`Admin::builder`].
#[derive(Debug)]
pub enum Admin {}

impl Admin {
    /// Starts configuring an admin endpoint.
    pub fn builder() -> AdminBuilder {
        AdminBuilder {
            address: "127.0.0.1:0".into(),
            token: None,
            servers: Vec::new(),
            clients: Vec::new(),
            stats: Stats::global().clone(),
            application: String::new(),
            max_body: DEFAULT_MAX_BODY,
            invoke_timeout: Duration::from_secs(5),
            monitor: None,
        }
    }
}

/// Configures and starts an [`AdminHandle`].
pub struct AdminBuilder {
    address: String,
    token: Option<String>,
    servers: Vec<ServerControl>,
    clients: Vec<Client>,
    stats: Stats,
    application: String,
    max_body: usize,
    invoke_timeout: Duration,
    monitor: Option<monitor::MonitorStore>,
}

impl AdminBuilder {
    /// Where to listen (default `127.0.0.1:0`: loopback, a free port). Binding anything
    /// but loopback exposes the endpoint; its `POST` routes then need a [`token`](Self::token).
    pub fn bind(mut self, address: impl Into<String>) -> AdminBuilder {
        self.address = address.into();
        self
    }

    /// What `config` says about the admin endpoint: `admin.address` (where to listen),
    /// `admin.token` and `application.name`. Calls made on the builder afterwards
    /// override it.
    pub fn config(mut self, config: &rpc_core::Config) -> AdminBuilder {
        if let Some(address) = &config.admin.address {
            self = self.bind(address.clone());
        }
        if let Some(token) = &config.admin.token {
            self = self.token(token.clone());
        }
        if let Some(name) = &config.application.name {
            self = self.application(name.clone());
        }
        self
    }

    /// The bearer token the `POST` routes require (`Authorization: Bearer TOKEN`).
    pub fn token(mut self, token: impl Into<String>) -> AdminBuilder {
        self.token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Shows a server: its services, its readiness, offline/online of its services, and
    /// generic invoke of them (through its own transport).
    pub fn server(mut self, server: ServerControl) -> AdminBuilder {
        self.servers.push(server);
        self
    }

    /// Shows a client: its service, its providers, and generic invoke through it (its
    /// directory, balancing and cluster mode, in the JSON codec).
    pub fn client(mut self, client: Client) -> AdminBuilder {
        self.clients.push(client);
        self
    }

    /// Reads statistics from `stats` instead of [`Stats::global`].
    pub fn stats(mut self, stats: Stats) -> AdminBuilder {
        self.stats = stats;
        self
    }

    /// The application name shown on the dashboard and in the monitor.
    pub fn application(mut self, name: impl Into<String>) -> AdminBuilder {
        self.application = name.into();
        self
    }

    /// Largest request body accepted (default [`DEFAULT_MAX_BODY`]); larger ones get 413.
    pub fn max_body(mut self, bytes: usize) -> AdminBuilder {
        self.max_body = bytes;
        self
    }

    /// Timeout of a generic invoke that names none (default 5 s).
    pub fn invoke_timeout(mut self, timeout: Duration) -> AdminBuilder {
        self.invoke_timeout = timeout;
        self
    }

    /// Shows what processes pushed to `store` (a monitor process): `GET /monitor` (a page)
    /// and `GET /api/monitor` (the latest report of each process and the aggregate).
    pub fn monitor(mut self, store: monitor::MonitorStore) -> AdminBuilder {
        self.monitor = Some(store);
        self
    }

    /// Binds and starts serving on a task of the current runtime.
    pub async fn start(self) -> Result<AdminHandle, Error> {
        let listener = tokio::net::TcpListener::bind(&self.address)
            .await
            .map_err(|source| Error::Bind {
                address: self.address.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| Error::Bind {
            address: self.address.clone(),
            source,
        })?;
        if !address.ip().is_loopback() && self.token.is_none() {
            tracing::warn!(
                %address,
                "admin endpoint bound beyond loopback without a token: its POST routes are refused"
            );
        }
        let shared = Arc::new(Shared {
            servers: RwLock::new(self.servers),
            clients: RwLock::new(self.clients),
            stats: self.stats,
            token: self.token,
            loopback: address.ip().is_loopback(),
            started: Instant::now(),
            application: self.application,
            invoke_clients: Mutex::new(HashMap::new()),
            max_body: self.max_body,
            invoke_timeout: self.invoke_timeout,
            monitor: self.monitor,
        });
        let router = api::router(shared.clone());
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%error, "admin endpoint stopped");
            }
        });
        tracing::info!(url = %format!("http://{address}/"), "admin endpoint listening");
        Ok(AdminHandle {
            address,
            shared,
            stop,
            task: Mutex::new(Some(task)),
        })
    }
}

/// A running admin endpoint. Dropping it stops the endpoint.
pub struct AdminHandle {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for AdminHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminHandle")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl AdminHandle {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS/`, the dashboard.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Shows one more server (one bound after the endpoint started).
    pub fn add_server(&self, server: ServerControl) {
        write(&self.shared.servers).push(server);
    }

    /// Shows one more client.
    pub fn add_client(&self, client: Client) {
        write(&self.shared.clients).push(client);
    }

    /// Stops serving and waits for the endpoint's task to end.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// What every route reads.
pub(crate) struct Shared {
    pub(crate) servers: RwLock<Vec<ServerControl>>,
    pub(crate) clients: RwLock<Vec<Client>>,
    pub(crate) stats: Stats,
    pub(crate) token: Option<String>,
    pub(crate) loopback: bool,
    pub(crate) started: Instant,
    pub(crate) application: String,
    /// JSON clients of provided services, made on first invoke.
    pub(crate) invoke_clients: Mutex<HashMap<String, Client>>,
    pub(crate) max_body: usize,
    pub(crate) invoke_timeout: Duration,
    pub(crate) monitor: Option<monitor::MonitorStore>,
}

impl Shared {
    pub(crate) fn servers(&self) -> Vec<ServerControl> {
        read(&self.servers).clone()
    }

    pub(crate) fn clients(&self) -> Vec<Client> {
        read(&self.clients).clone()
    }
}

// Only list pushes and clones happen under these locks; a poisoned list is still valid.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
