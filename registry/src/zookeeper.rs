//! `zookeeper://HOST:PORT[,HOST:PORT...]`: providers as ephemeral nodes, in Dubbo's layout.
//!
//! Layout, as Dubbo writes it so that Dubbo's tools and ours read one tree:
//! `ROOT/<encoded service>/providers/<encoded url>` (and `consumers/` for consumer URLs).
//! The folders are persistent; the URL nodes are ephemeral, so they go with the session that
//! made them, which is how a dead provider disappears.
//!
//! One background task owns the session. It connects (retrying with a backoff while the
//! servers are down) and, each time a session is established or reconnected, writes every
//! node this handle registered. After an expiry it starts a new session by itself: the
//! server deleted the old session's nodes, and only their owner can put them back, which is
//! where Dubbo deployments famously lose providers.
//!
//! Each followed service has one persistent watch on its providers folder per session; every
//! event relists the folder and pushes the full set. Subscribers are told the registry is
//! unreachable while the connection is lost, and get a fresh list on reconnection (events
//! that happen while disconnected are not replayed: ZOOKEEPER-4698).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};
use zookeeper_client as zk;

use crate::subscription::Topics;
use crate::url::path_segment;
use crate::{Error, ProviderUrl, Registry, RegistryAddress, Subscription};

static PERSISTENT: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
static EPHEMERAL: zk::CreateOptions<'static> =
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());

/// Wait between two attempts to reach the servers: doubles from the first to the largest,
/// which bounds how long a registry stays away once the servers are back.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Wait before writing registrations again when a reconnection could not write them all.
const RETRY: Duration = Duration::from_secs(1);
/// How long `close` waits for the server to acknowledge the end of the session.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A registry kept in ZooKeeper, in Dubbo's node layout.
///
/// URL: `zookeeper://127.0.0.1:2181[,HOST:PORT...][?session_timeout_ms=10000][&root=/dubbo]`.
/// Opening never fails because the servers are down, and neither does registering: the
/// handle remembers what it registered and writes it whenever a session is (re)established.
#[derive(Debug)]
pub struct ZooKeeperRegistry {
    address: RegistryAddress,
    shared: Arc<Shared>,
    session_task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// The connect string: `host:port,host:port`.
    hosts: String,
    /// The root folder, without a trailing `/` (empty for ZooKeeper's own root).
    root: String,
    session_timeout: Duration,
    topics: Topics,
    state: Mutex<State>,
    /// Held while writing nodes, so that rewriting the registrations after a reconnection
    /// cannot bring back a node that an `unregister` running meanwhile just deleted.
    writes: tokio::sync::Mutex<()>,
    phase: watch::Sender<Phase>,
}

/// Where the session task is, so that an operation made while it is getting a session
/// waits for it, and one made while the servers are down does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// First attempt at a session (after opening, or after one ended) under way.
    Connecting,
    /// A session exists (the connection to it may be down for a moment).
    Up,
    /// The servers could not be reached; retrying.
    Down,
}

#[derive(Debug, Default)]
struct State {
    /// The current session; `None` between sessions.
    client: Option<zk::Client>,
    /// What this handle registered: written again into every new session.
    mine: BTreeSet<ProviderUrl>,
    /// Unregistered while the server could not be told: deleted on reconnection.
    withdrawn: BTreeSet<ProviderUrl>,
    /// The services followed, watched again in every new session.
    services: BTreeSet<String>,
    /// The tasks following services in the current session.
    watches: Vec<AbortHandle>,
    closed: bool,
}

impl ZooKeeperRegistry {
    /// Session timeout asked of the server unless the URL gives `session_timeout_ms`.
    pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
    /// Root folder unless the URL gives `root`, as in Dubbo.
    pub const DEFAULT_ROOT: &'static str = "/dubbo";

    /// Opens the registry of `address` and starts connecting in the background, so this
    /// succeeds while the servers are down. Must be called inside a tokio runtime.
    pub fn open(address: RegistryAddress) -> Result<ZooKeeperRegistry, Error> {
        let session_timeout =
            address.millis("session_timeout_ms", Self::DEFAULT_SESSION_TIMEOUT)?;
        let root = address.param("root").unwrap_or(Self::DEFAULT_ROOT);
        if !root.starts_with('/') || root.contains("//") {
            return Err(Error::InvalidUrl {
                url: address.to_string(),
                reason: "root must be an absolute ZooKeeper path, such as /dubbo".to_owned(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Unavailable(
                "the ZooKeeper registry must be opened inside a tokio runtime".into(),
            )
        })?;
        let shared = Arc::new(Shared {
            hosts: address.hosts().join(","),
            root: root.trim_end_matches('/').to_owned(),
            session_timeout,
            topics: Topics::default(),
            state: Mutex::default(),
            writes: tokio::sync::Mutex::new(()),
            phase: watch::Sender::new(Phase::Connecting),
        });
        let session_task = runtime.spawn(run_sessions(shared.clone()));
        Ok(ZooKeeperRegistry {
            address,
            shared,
            session_task,
        })
    }

    fn stop_tasks(&self) -> Option<zk::Client> {
        self.session_task.abort();
        let mut state = self.shared.lock();
        state.closed = true;
        for task in state.watches.drain(..) {
            task.abort();
        }
        state.client.take()
    }
}

impl Registry for ZooKeeperRegistry {
    fn address(&self) -> &RegistryAddress {
        &self.address
    }

    fn register(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        let url = url.clone();
        Box::pin(async move {
            let shared = &self.shared;
            shared.settled().await;
            let _writes = shared.writes.lock().await;
            let client = {
                let mut state = shared.lock();
                if state.closed {
                    return Err(Error::Closed);
                }
                state.withdrawn.remove(&url);
                state.mine.insert(url.clone());
                connected(&state.client)
            };
            let Some(client) = client else {
                tracing::info!(%url, "zookeeper registry: not connected; registering once connected");
                return Ok(());
            };
            match shared.bounded(shared.create_node(&client, &url)).await {
                Ok(()) => Ok(()),
                Err(error) if is_connection_problem(&error) => {
                    tracing::info!(%url, %error, "zookeeper registry: registering once reconnected");
                    Ok(())
                }
                Err(error) => {
                    shared.lock().mine.remove(&url);
                    Err(Error::Unavailable(format!(
                        "ZooKeeper refused to register {url}: {error}"
                    )))
                }
            }
        })
    }

    fn unregister(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        let url = url.clone();
        Box::pin(async move {
            let shared = &self.shared;
            shared.settled().await;
            let _writes = shared.writes.lock().await;
            let client = {
                let mut state = shared.lock();
                if state.closed {
                    // Closing withdrew everything already.
                    return Ok(());
                }
                state.mine.remove(&url);
                state.withdrawn.insert(url.clone());
                connected(&state.client)
            };
            let Some(client) = client else {
                // Deleted on reconnection, or gone with the session if it expires.
                return Ok(());
            };
            match shared.bounded(shared.delete_node(&client, &url)).await {
                Ok(()) => {
                    shared.lock().withdrawn.remove(&url);
                    Ok(())
                }
                Err(error) if is_connection_problem(&error) => {
                    tracing::info!(%url, %error, "zookeeper registry: unregistering once reconnected");
                    Ok(())
                }
                Err(error) => Err(Error::Unavailable(format!(
                    "ZooKeeper refused to unregister {url}: {error}"
                ))),
            }
        })
    }

    fn subscribe(&self, service: &str) -> BoxFuture<'_, Result<Subscription, Error>> {
        let service = service.to_owned();
        Box::pin(async move {
            let shared = &self.shared;
            shared.settled().await;
            let (ready, first_set) = oneshot::channel();
            let (subscription, wait) = {
                let mut state = shared.lock();
                if state.closed {
                    return Err(Error::Closed);
                }
                let (subscription, first) = shared.topics.subscribe(&service);
                if !first {
                    return Ok(subscription);
                }
                state.services.insert(service.clone());
                // Under the state lock, so a session starting meanwhile cannot follow the
                // service a second time, nor miss it.
                let wait = match state.client.clone() {
                    Some(client) => {
                        let wait = is_connected(&client);
                        let task = shared.spawn_follow(client, service, Some(ready));
                        state.watches.push(task);
                        wait
                    }
                    None => false,
                };
                (subscription, wait)
            };
            if wait {
                // The first set is there before subscribe returns: a caller never sees a
                // service with providers as empty for a moment.
                let _ = tokio::time::timeout(shared.session_timeout, first_set).await;
            } else {
                shared.topics.unreachable("not connected to ZooKeeper yet");
            }
            Ok(subscription)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let shared = &self.shared;
            let client = self.stop_tasks();
            shared.topics.close();
            let _writes = shared.writes.lock().await;
            let mine = {
                let mut state = shared.lock();
                state.withdrawn.clear();
                std::mem::take(&mut state.mine)
            };
            let Some(client) = client else { return };
            if is_connected(&client) {
                for url in &mine {
                    if let Err(error) = shared.bounded(shared.delete_node(&client, url)).await {
                        // Closing the session below removes the rest.
                        tracing::debug!(%url, %error, "zookeeper registry: cannot delete on close");
                        break;
                    }
                }
            }
            if !client.state().is_terminated() {
                // Dropping the last handle of the session closes it (its ephemeral nodes go
                // with it); wait for the server to acknowledge, within reason.
                let mut states = client.state_watcher();
                drop(client);
                let closed = async { while !states.changed().await.is_terminated() {} };
                let _ = tokio::time::timeout(CLOSE_WAIT, closed).await;
            }
        })
    }
}

impl Drop for ZooKeeperRegistry {
    fn drop(&mut self) {
        // The session closes once the aborted tasks let go of their handles on it.
        drop(self.stop_tasks());
        self.shared.topics.close();
    }
}

/// Keeps a session up for as long as the registry lives: connects, writes the registrations
/// and follows the services, and starts over when the session ends.
async fn run_sessions(shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0_u32;
    loop {
        let client = match shared.connect().await {
            Ok(client) => client,
            Err(error) => {
                let reason = format!("cannot reach ZooKeeper at {}: {error}", shared.hosts);
                // Once per outage at warn level: a long outage would flood the log.
                if failures == 0 {
                    tracing::warn!("zookeeper registry: {reason}; retrying");
                } else {
                    tracing::debug!("zookeeper registry: {reason}; retrying");
                }
                failures += 1;
                shared.phase.send_replace(Phase::Down);
                shared.topics.unreachable(&reason);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(session = %client.session_id(), hosts = %shared.hosts, after_failures = failures, "zookeeper registry: session established");
        backoff = MIN_BACKOFF;
        failures = 0;
        let mut states = client.state_watcher();
        shared.start_session(&client);
        shared.phase.send_replace(Phase::Up);
        let mut complete = shared.apply(&client).await;
        let end = loop {
            let state = if complete {
                states.changed().await
            } else {
                match tokio::time::timeout(RETRY, states.changed()).await {
                    Ok(state) => state,
                    Err(_) => {
                        complete = shared.apply(&client).await;
                        continue;
                    }
                }
            };
            match state {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!(session = %client.session_id(), "zookeeper registry: reconnected");
                    // A write made while disconnected may not have reached the server.
                    complete = shared.apply(&client).await;
                }
                state if state.is_terminated() => break state,
                _ => shared
                    .topics
                    .unreachable("connection to ZooKeeper lost; reconnecting"),
            }
        };
        shared.end_session();
        shared.phase.send_replace(Phase::Connecting);
        let reason = format!(
            "ZooKeeper session {} ended ({end}); starting a new one",
            client.session_id()
        );
        tracing::warn!("zookeeper registry: {reason}");
        shared.topics.unreachable(&reason);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits (within a session timeout) while the session task is getting a session, so
    /// that a registry just opened, or whose session just expired, does not look down.
    async fn settled(&self) {
        let mut phase = self.phase.subscribe();
        let settled = phase.wait_for(|phase| *phase != Phase::Connecting);
        let _ = tokio::time::timeout(self.session_timeout, settled).await;
    }

    async fn connect(&self) -> Result<zk::Client, zk::Error> {
        let connect = zk::Client::connector()
            .with_session_timeout(self.session_timeout)
            // Try each host once and report, rather than cycle for a whole session timeout:
            // the retry loop above is where waiting happens.
            .with_fail_eagerly()
            .connect(&self.hosts);
        self.bounded(connect).await
    }

    /// `operation`, failing with a timeout after a session timeout: a request made while
    /// the connection is lost waits for reconnection, and nothing should wait forever.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, zk::Error>>,
    ) -> Result<T, zk::Error> {
        tokio::time::timeout(self.session_timeout, operation)
            .await
            .unwrap_or(Err(zk::Error::Timeout))
    }

    fn start_session(self: &Arc<Self>, client: &zk::Client) {
        let mut state = self.lock();
        state.client = Some(client.clone());
        let services: Vec<String> = state.services.iter().cloned().collect();
        for service in services {
            let task = self.spawn_follow(client.clone(), service, None);
            state.watches.push(task);
        }
    }

    fn end_session(&self) {
        let mut state = self.lock();
        state.client = None;
        for task in state.watches.drain(..) {
            task.abort();
        }
    }

    fn spawn_follow(
        self: &Arc<Self>,
        client: zk::Client,
        service: String,
        ready: Option<oneshot::Sender<()>>,
    ) -> AbortHandle {
        let follower = Follower {
            folder: self.folder(&service, "providers"),
            shared: self.clone(),
            client,
            service,
            warned: HashSet::new(),
        };
        tokio::spawn(follower.run(ready)).abort_handle()
    }

    /// Writes every registration into the session of `client`, and deletes what was
    /// unregistered while disconnected. False when the connection failed meanwhile, so it
    /// must be done again.
    async fn apply(&self, client: &zk::Client) -> bool {
        let _writes = self.writes.lock().await;
        let (mine, withdrawn) = {
            let state = self.lock();
            (state.mine.clone(), state.withdrawn.clone())
        };
        for url in &withdrawn {
            match self.bounded(self.delete_node(client, url)).await {
                Ok(()) => {
                    self.lock().withdrawn.remove(url);
                }
                Err(error) if is_connection_problem(&error) => return false,
                Err(error) => {
                    // Refused: trying again on every reconnection would only repeat this.
                    tracing::warn!(%url, %error, "zookeeper registry: cannot unregister");
                    self.lock().withdrawn.remove(url);
                }
            }
        }
        for url in &mine {
            match self.bounded(self.create_node(client, url)).await {
                Ok(()) => {}
                Err(error) if is_connection_problem(&error) => return false,
                Err(error) => tracing::warn!(%url, %error, "zookeeper registry: cannot register"),
            }
        }
        if !mine.is_empty() {
            tracing::info!(count = mine.len(), session = %client.session_id(), "zookeeper registry: registrations written");
        }
        true
    }

    /// The folder of `category` (`providers`, `consumers`) of `service`.
    fn folder(&self, service: &str, category: &str) -> String {
        format!("{}/{}/{category}", self.root, path_segment(service))
    }

    /// The folder and the path of the node of `url`.
    fn node_path(&self, url: &ProviderUrl) -> (String, String) {
        let category = if url.is_consumer() {
            "consumers"
        } else {
            "providers"
        };
        let folder = self.folder(url.service(), category);
        let path = format!("{folder}/{}", url.to_path_segment());
        (folder, path)
    }

    /// Creates the ephemeral node of `url` in the session of `client`, and its folders if
    /// missing. Returns once the node exists, owned by this session.
    async fn create_node(&self, client: &zk::Client, url: &ProviderUrl) -> Result<(), zk::Error> {
        let (folder, path) = self.node_path(url);
        let data = url.to_string();
        for _ in 0..5 {
            match client.create(&path, data.as_bytes(), &EPHEMERAL).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NoNode) => client.mkdir(&folder, &PERSISTENT).await?,
                Err(zk::Error::NodeExists) => match client.check_stat(&path).await? {
                    Some(stat) if stat.ephemeral_owner == client.session_id().0 => return Ok(()),
                    // Most likely left by our previous session, which the server has not
                    // expired yet: it would take the node with it when it does. Replace it,
                    // as Dubbo does.
                    Some(stat) => match client.delete(&path, Some(stat.version)).await {
                        Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                        Err(error) => return Err(error),
                    },
                    None => {}
                },
                Err(error) => return Err(error),
            }
        }
        Err(zk::Error::UnexpectedError(format!(
            "{path} keeps being created and deleted by others"
        )))
    }

    /// Deletes the node of `url` if this session owns it: another owner is another process
    /// registering the same URL, or an expired session of ours whose nodes go by themselves.
    async fn delete_node(&self, client: &zk::Client, url: &ProviderUrl) -> Result<(), zk::Error> {
        let (_, path) = self.node_path(url);
        match client.check_stat(&path).await? {
            Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
                match client.delete(&path, Some(stat.version)).await {
                    Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The providers folder of one service, followed during one session.
struct Follower {
    shared: Arc<Shared>,
    client: zk::Client,
    service: String,
    folder: String,
    /// Child names already warned about, so a garbage node is reported once, not on every
    /// change of the folder.
    warned: HashSet<String>,
}

impl Follower {
    async fn run(mut self, mut ready: Option<oneshot::Sender<()>>) {
        let Some(mut watcher) = self.watch().await else {
            return;
        };
        loop {
            self.refresh().await;
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            loop {
                let event = watcher.changed().await;
                if event.event_type != zk::EventType::Session {
                    break;
                }
                match event.session_state {
                    // Never wait on the watcher again after this: the client panics then.
                    state if state.is_terminated() => return,
                    // What changed while disconnected is not replayed: list again. And watch
                    // again: zookeeper-client 0.11.2 re-sends only one-shot watches when it
                    // reconnects (`resend_watches` never selects SetWatches2), so the server
                    // forgot the persistent one and no change would ever be pushed. The new
                    // watch is set before the old one is dropped, so dropping it removes
                    // nothing on the server.
                    zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                        match self.watch().await {
                            Some(fresh) => watcher = fresh,
                            None => return,
                        }
                        break;
                    }
                    // The session task tells the subscribers.
                    _ => {}
                }
            }
        }
    }

    /// Sets a persistent watch on the providers folder; `None` once the session ended (the
    /// next session follows the service again).
    async fn watch(&self) -> Option<zk::PersistentWatcher> {
        loop {
            // A persistent watch may be set on a folder that does not exist yet.
            match self
                .client
                .watch(&self.folder, zk::AddWatchMode::Persistent)
                .await
            {
                Ok(watcher) => return Some(watcher),
                Err(error) if is_connection_problem(&error) => {
                    if !wait_connected(&self.client).await {
                        return None;
                    }
                    // Connected, yet failing (a throttled server): not in a tight loop.
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
                Err(error) => {
                    tracing::warn!(folder = %self.folder, %error, "zookeeper registry: cannot watch; retrying");
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        }
    }

    /// Lists the folder and pushes the providers found in it.
    async fn refresh(&mut self) {
        let children = match self.client.list_children(&self.folder).await {
            Ok(children) => children,
            // Nobody registered the service yet.
            Err(zk::Error::NoNode) => Vec::new(),
            Err(error) if is_connection_problem(&error) => {
                // A lost connection ends in a reconnection event, which lists again.
                tracing::debug!(folder = %self.folder, %error, "zookeeper registry: cannot list providers");
                return;
            }
            Err(error) => {
                tracing::warn!(folder = %self.folder, %error, "zookeeper registry: cannot list providers");
                return;
            }
        };
        let mut urls = Vec::with_capacity(children.len());
        for child in &children {
            match ProviderUrl::from_path_segment(child) {
                Ok(url) if !url.is_consumer() => urls.push(url),
                Ok(_) => self.warn_once(child, "a consumer's URL"),
                Err(error) => self.warn_once(child, &error.to_string()),
            }
        }
        let present: HashSet<&String> = children.iter().collect();
        self.warned.retain(|child| present.contains(child));
        self.shared.topics.publish(&self.service, urls);
    }

    fn warn_once(&mut self, child: &str, reason: &str) {
        if self.warned.insert(child.to_owned()) {
            let child: String = child.chars().take(256).collect();
            tracing::warn!(folder = %self.folder, %child, %reason, "zookeeper registry: skipping a node that is not a provider URL");
        }
    }
}

/// Waits until the session of `client` is connected; false if it ended instead.
async fn wait_connected(client: &zk::Client) -> bool {
    let mut states = client.state_watcher();
    let mut state = client.state();
    loop {
        match state {
            zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => return true,
            state if state.is_terminated() => return false,
            _ => state = states.changed().await,
        }
    }
}

/// `client`, if it is connected now.
fn connected(client: &Option<zk::Client>) -> Option<zk::Client> {
    client
        .as_ref()
        .filter(|client| is_connected(client))
        .cloned()
}

fn is_connected(client: &zk::Client) -> bool {
    matches!(
        client.state(),
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
    )
}

/// Whether `error` goes away with the connection or the next session, as opposed to the
/// server refusing the operation. Decided by listing the refusals: the client reports a
/// lost connection in several ways, some only as a message.
fn is_connection_problem(error: &zk::Error) -> bool {
    !matches!(
        error,
        zk::Error::NoAuth
            | zk::Error::AuthFailed
            | zk::Error::InvalidAcl
            | zk::Error::BadArguments(_)
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::QuotaExceeded
            | zk::Error::Unimplemented
            | zk::Error::NotReadOnly
            | zk::Error::MarshallingError
            | zk::Error::UnexpectedError(_)
    )
}
