//! `etcd://`: providers and consumers as keys bound to a lease, in Dubbo's layout.
//!
//! Keys: `<prefix>/<service>/providers/<url>` (`consumers/` for a consumer's URL), both
//! parts percent-encoded as Dubbo's ZooKeeper registry names its nodes. The value is the
//! URL text, for people reading the store: subscribers read the key, which names the URL.
//!
//! One background task, the session, owns the connection and the handle's one lease: it
//! connects, grants a lease (or resumes the last one after a reconnection), puts every
//! registered URL, then renews the lease every third of its TTL. The keep-alive doubles as
//! the liveness probe: no answer in time and the handle counts as unreachable (every
//! subscription is told), reconnects with backoff and puts its keys again. A lease reported
//! gone (revoked from outside, expired during an outage) is replaced at once and the keys
//! are put again. Registrations are remembered, so neither `open` nor `register` fails
//! because etcd is down.
//!
//! Each followed service has one task: a prefix get, then a watch from the next revision,
//! which keeps the key set and pushes the full provider set on each change. It starts over
//! (get, then watch) after a reconnection, a broken watch or a compaction.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions,
};
use futures_util::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use crate::subscription::Topics;
use crate::url::path_segment;
use crate::{Error, ProviderUrl, Registry, RegistryAddress, Subscription};

/// First wait before reconnecting or watching again; doubled on each failure in a row.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// HTTP/2 pings find a dead connection that streams alone would wait on forever. etcd
/// answers pings sent more often than every 5 s with GOAWAY, so stay well above that.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// A registry in etcd (v3 API, etcd 3.4 and later).
///
/// Opened with `etcd://HOST:PORT[,HOST:PORT...][?prefix=/dubbo&lease_ttl_ms=10000]`. Every
/// key it writes is bound to one lease it keeps alive, so the keys of a process that dies
/// go when the lease runs out. Closing or dropping it withdraws them at once.
pub struct EtcdRegistry {
    address: RegistryAddress,
    runtime: Handle,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the registry handle and its tasks share.
struct Shared {
    endpoints: Vec<String>,
    prefix: String,
    ttl_secs: i64,
    /// Bound of every single request to etcd, so that nothing waits forever on a server
    /// that stopped answering.
    op_timeout: Duration,
    owned: Mutex<Owned>,
    /// Taken around every write of keys, so that a deletion of a withdrawn key and a put
    /// of the same key registered again land in the order they were asked for.
    writes: tokio::sync::Mutex<()>,
    state: watch::Sender<State>,
    /// Asks the session to check its lease now rather than at the next renewal.
    poke: Notify,
    topics: Topics,
}

/// The keys this handle owns.
#[derive(Default)]
struct Owned {
    /// Registered URLs by key: the URL text, and the lease it was last put with (0: not
    /// put since the last (re)connection).
    keys: BTreeMap<String, (String, i64)>,
    /// Keys withdrawn whose deletion has not reached etcd yet.
    stale: BTreeSet<String>,
}

#[derive(Clone)]
enum State {
    /// Connecting, or replacing a lost lease: worth a short wait.
    Connecting,
    /// Connected, with a live lease and every key put (or being retried).
    Up(Arc<Session>),
    /// The last attempt failed: etcd cannot be reached.
    Down(String),
    Closed,
}

/// A connection and the lease it holds; boxed in [`State`], as a client is large.
struct Session {
    client: Client,
    /// Which connection of the handle (1, 2, ...): a watch outlives a lease, not a
    /// connection.
    connection: u64,
    lease: i64,
}

/// Why a request failed.
enum Failure {
    /// etcd no longer knows the lease: grant another and put the keys again.
    LeaseLost,
    Other(String),
}

impl Failure {
    fn from_etcd(error: &etcd_client::Error) -> Failure {
        // etcd says "requested lease not found" (a put, a keep-alive stream's first
        // answer); the error's kind alone (a gRPC NotFound) cannot be read without tonic.
        let reason = error.to_string();
        if reason.contains("lease not found") {
            Failure::LeaseLost
        } else {
            Failure::Other(reason)
        }
    }

    fn reason(self) -> String {
        match self {
            Failure::LeaseLost => "the lease is gone".to_owned(),
            Failure::Other(reason) => reason,
        }
    }
}

impl EtcdRegistry {
    /// Lease TTL when the URL gives no `lease_ttl_ms`: how long the keys of a process that
    /// died stay listed.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
    /// Key prefix when the URL gives no `prefix`, as Dubbo's.
    pub const DEFAULT_PREFIX: &str = "/dubbo";

    /// Opens the registry at `address` and starts connecting in the background; must be
    /// called inside a tokio runtime. Fails only on a malformed URL (or without a
    /// runtime): etcd being down is no error, registrations wait for it.
    ///
    /// The lease TTL is `lease_ttl_ms` rounded up to whole seconds (etcd may raise it to
    /// its minimum, 2 s by default).
    pub fn open(address: RegistryAddress) -> Result<EtcdRegistry, Error> {
        let ttl = address.millis("lease_ttl_ms", Self::DEFAULT_LEASE_TTL)?;
        let runtime = Handle::try_current().map_err(|_| {
            Error::Unavailable("the etcd registry must be opened inside a tokio runtime".into())
        })?;
        let ttl_secs = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        let prefix = address.param("prefix").unwrap_or(Self::DEFAULT_PREFIX);
        let shared = Arc::new(Shared {
            endpoints: address.hosts().into_iter().map(str::to_owned).collect(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            ttl_secs: ttl_secs.max(1),
            op_timeout: (ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(5)),
            owned: Mutex::default(),
            writes: tokio::sync::Mutex::new(()),
            state: watch::Sender::new(State::Connecting),
            poke: Notify::new(),
            topics: Topics::default(),
        });
        let session = runtime.spawn(run_session(shared.clone()));
        Ok(EtcdRegistry {
            address,
            runtime,
            shared,
            tasks: Mutex::new(vec![session]),
        })
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(self.runtime.spawn(task));
    }

    fn closed(&self) -> bool {
        matches!(*self.shared.state.borrow(), State::Closed)
    }

    /// Bounds how long `register`, `unregister` and `subscribe` wait for etcd.
    fn deadline(&self) -> Instant {
        Instant::now() + self.shared.op_timeout
    }

    /// Stops everything; returns the session whose lease is left to revoke, if any.
    fn shutdown(&self) -> Option<Arc<Session>> {
        let previous = self.shared.state.send_replace(State::Closed);
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            task.abort();
        }
        *self.shared.owned() = Owned::default();
        self.shared.topics.close();
        match previous {
            State::Up(session) => Some(session),
            _ => None,
        }
    }
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("address", &self.address.to_string())
            .finish_non_exhaustive()
    }
}

impl Registry for EtcdRegistry {
    fn address(&self) -> &RegistryAddress {
        &self.address
    }

    fn register(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        let url = url.clone();
        Box::pin(async move {
            if self.closed() {
                return Err(Error::Closed);
            }
            let key = self.shared.key_of(&url);
            {
                let mut owned = self.shared.owned();
                owned.stale.remove(&key);
                owned
                    .keys
                    .entry(key.clone())
                    .or_insert_with(|| (url.to_string(), 0));
            }
            if let Err(reason) = self.shared.put(&key, self.deadline()).await {
                tracing::warn!(%url, %reason, "etcd registry: cannot register now; will once etcd answers");
            }
            Ok(())
        })
    }

    fn unregister(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        let url = url.clone();
        Box::pin(async move {
            if self.closed() {
                return Ok(());
            }
            let key = self.shared.key_of(&url);
            {
                let mut owned = self.shared.owned();
                owned.keys.remove(&key);
                owned.stale.insert(key.clone());
            }
            if let Err(reason) = self.shared.delete(&key, self.deadline()).await {
                tracing::warn!(%url, %reason, "etcd registry: cannot unregister now; will once etcd answers (or the lease runs out)");
            }
            Ok(())
        })
    }

    fn subscribe(&self, service: &str) -> BoxFuture<'_, Result<Subscription, Error>> {
        let service = service.to_owned();
        Box::pin(async move {
            let (subscription, first) = self.shared.topics.subscribe(&service);
            if self.closed() {
                // Closed meanwhile: end the subscription just made, as close() did the others.
                self.shared.topics.close();
                return Err(Error::Closed);
            }
            if first {
                let (ready, readied) = oneshot::channel();
                self.spawn(follow(self.shared.clone(), service, ready));
                // The first set is there before subscribe returns when etcd answers: no
                // caller sees a service with providers as empty for a moment.
                let _ = timeout_at(self.deadline(), readied).await;
            }
            Ok(subscription)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(session) = self.shutdown() {
                revoke(session, self.shared.op_timeout).await;
            }
        })
    }
}

impl Drop for EtcdRegistry {
    fn drop(&mut self) {
        if let Some(session) = self.shutdown() {
            // Best effort, so consumers need not wait for the lease to run out.
            self.runtime.spawn(revoke(session, self.shared.op_timeout));
        }
    }
}

/// Revokes the session's lease, which deletes every key bound to it in one revision. A
/// key withdrawn but not yet deleted is bound to it too, or to an older lease etcd has
/// dropped already: a lease is only replaced once it is gone.
async fn revoke(session: Arc<Session>, bound: Duration) {
    let mut leases = session.client.lease_client();
    match timeout(bound, leases.revoke(session.lease)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "etcd registry: cannot revoke the lease on close; it will run out")
        }
        Err(_) => {
            tracing::warn!("etcd registry: no answer revoking the lease on close; it will run out")
        }
    }
}

impl Shared {
    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes `state`, unless the registry was closed: a task being aborted must not
    /// bring it back.
    fn set(&self, state: State) {
        self.state.send_if_modified(|current| {
            if matches!(current, State::Closed) {
                return false;
            }
            *current = state;
            true
        });
    }

    fn key_of(&self, url: &ProviderUrl) -> String {
        let side = if url.is_consumer() {
            "consumers"
        } else {
            "providers"
        };
        format!(
            "{}/{}/{side}/{}",
            self.prefix,
            path_segment(url.service()),
            url.to_path_segment()
        )
    }

    /// The prefix of the provider keys of `service`, `/` included so that `a.A` does not
    /// take in `a.AB`.
    fn providers_of(&self, service: &str) -> String {
        format!("{}/{}/providers/", self.prefix, path_segment(service))
    }

    /// `request`, bounded by the request timeout.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        match timeout(self.op_timeout, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(Failure::from_etcd(&error)),
            Err(_) => Err(Failure::Other(format!(
                "etcd did not answer within {:?}",
                self.op_timeout
            ))),
        }
    }

    /// The current session, once there is one with a lease other than `not_lease`; waits
    /// while connecting, not when etcd is known to be down.
    async fn session(&self, deadline: Instant, not_lease: i64) -> Result<Arc<Session>, String> {
        let mut state = self.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Up(session) if session.lease != not_lease => return Ok(session.clone()),
                State::Down(reason) => return Err(reason.clone()),
                State::Closed => return Err("the registry is closed".to_owned()),
                State::Up(_) | State::Connecting => {}
            }
            match timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("the registry is closed".to_owned()),
                Err(_) => return Err("not connected to etcd yet".to_owned()),
            }
        }
    }

    /// Puts the registered `key` with the current lease, unless that is done already.
    async fn put(&self, key: &str, deadline: Instant) -> Result<(), String> {
        let mut not_lease = 0;
        loop {
            let session = self.session(deadline, not_lease).await?;
            let _writing = timeout_at(deadline, self.writes.lock())
                .await
                .map_err(|_| "other writes are still waiting for etcd".to_owned())?;
            let value = match self.owned().keys.get(key) {
                None => return Ok(()),
                Some((_, lease)) if *lease == session.lease => return Ok(()),
                Some((value, _)) => value.clone(),
            };
            let options = PutOptions::new().with_lease(session.lease);
            let mut kv = session.client.kv_client();
            let put = kv.put(key, value, Some(options));
            let failure = match timeout_at(deadline, put).await {
                Ok(Ok(_)) => {
                    if let Some(entry) = self.owned().keys.get_mut(key) {
                        entry.1 = session.lease;
                    }
                    return Ok(());
                }
                Ok(Err(error)) => Failure::from_etcd(&error),
                Err(_) => Failure::Other("etcd did not answer in time".to_owned()),
            };
            // Let the session check its lease and connection now, not at the next renewal.
            self.poke.notify_one();
            match failure {
                Failure::LeaseLost => not_lease = session.lease,
                Failure::Other(reason) => return Err(reason),
            }
        }
    }

    /// Deletes the withdrawn `key`, unless it was registered again or deleted already.
    async fn delete(&self, key: &str, deadline: Instant) -> Result<(), String> {
        let session = self.session(deadline, 0).await?;
        let _writing = timeout_at(deadline, self.writes.lock())
            .await
            .map_err(|_| "other writes are still waiting for etcd".to_owned())?;
        if !self.owned().stale.contains(key) {
            return Ok(());
        }
        match timeout_at(deadline, session.client.kv_client().delete(key, None)).await {
            Ok(Ok(_)) => {
                self.owned().stale.remove(key);
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("etcd did not answer in time".to_owned()),
        }
    }

    /// Brings etcd in line with what this handle owns: deletes withdrawn keys, puts the
    /// registered ones not yet put with the session's lease.
    async fn sync(&self, session: &Session) -> Result<(), Failure> {
        let _writing = self.writes.lock().await;
        let (stale, pending): (Vec<String>, Vec<(String, String)>) = {
            let owned = self.owned();
            let pending = owned
                .keys
                .iter()
                .filter(|(_, (_, lease))| *lease != session.lease);
            (
                owned.stale.iter().cloned().collect(),
                pending
                    .map(|(key, (value, _))| (key.clone(), value.clone()))
                    .collect(),
            )
        };
        let mut kv = session.client.kv_client();
        for key in stale {
            self.bounded(kv.delete(key.as_str(), None)).await?;
            self.owned().stale.remove(&key);
        }
        for (key, value) in pending {
            let options = PutOptions::new().with_lease(session.lease);
            self.bounded(kv.put(key.as_str(), value, Some(options)))
                .await?;
            if let Some(entry) = self.owned().keys.get_mut(&key) {
                entry.1 = session.lease;
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Client, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.op_timeout)
            .with_keep_alive(PING_INTERVAL, self.op_timeout)
            // etcd answers pings on a connection without streams with GOAWAY.
            .with_keep_alive_while_idle(false);
        self.bounded(Client::connect(&self.endpoints, Some(options)))
            .await
            .map_err(Failure::reason)
    }

    /// Holds a lease on `client` until etcd stops answering; returns why, and whether the
    /// session was up meanwhile. `last` is the lease to resume, kept across connections.
    async fn hold(
        &self,
        client: Client,
        connection: u64,
        last: &mut Option<(i64, i64)>,
    ) -> (String, bool) {
        let mut was_up = false;
        loop {
            let (lease, ttl_secs, mut keeper, mut answers) = match self.lease(&client, last).await {
                Ok(lease) => lease,
                Err(reason) => return (reason, was_up),
            };
            let session = Arc::new(Session {
                client: client.clone(),
                connection,
                lease,
            });
            // After a reconnection everything is put again: cheap, and it repairs whatever
            // happened to the keys meanwhile.
            for entry in self.owned().keys.values_mut() {
                entry.1 = 0;
            }
            match self.sync(&session).await {
                Ok(()) => {}
                Err(Failure::LeaseLost) => {
                    *last = None;
                    continue;
                }
                Err(Failure::Other(reason)) => {
                    tracing::warn!(%reason, "etcd registry: cannot put the keys; retrying at the next renewal");
                }
            }
            tracing::info!(
                lease,
                ttl_secs,
                endpoints = ?self.endpoints,
                "etcd registry: connected"
            );
            self.set(State::Up(session.clone()));
            was_up = true;
            match self
                .renew(&session, ttl_secs, &mut keeper, &mut answers)
                .await
            {
                Failure::LeaseLost => {
                    tracing::warn!(
                        lease,
                        "etcd registry: the lease is gone; granting a new one and putting the keys again"
                    );
                    *last = None;
                    self.set(State::Connecting);
                }
                Failure::Other(reason) => return (reason, true),
            }
        }
    }

    /// Resumes the lease `last` if etcd still has it, else grants a new one.
    async fn lease(
        &self,
        client: &Client,
        last: &mut Option<(i64, i64)>,
    ) -> Result<(i64, i64, LeaseKeeper, LeaseKeepAliveStream), String> {
        let mut leases = client.lease_client();
        if let Some((lease, ttl_secs)) = *last {
            match self.bounded(leases.keep_alive(lease)).await {
                Ok((keeper, answers)) => return Ok((lease, ttl_secs, keeper, answers)),
                Err(Failure::LeaseLost) => {
                    tracing::info!(
                        lease,
                        "etcd registry: the lease ran out while unreachable; granting a new one"
                    );
                    *last = None;
                }
                Err(failure) => return Err(failure.reason()),
            }
        }
        let granted = self
            .bounded(leases.grant(self.ttl_secs, None))
            .await
            .map_err(Failure::reason)?;
        let (keeper, answers) = self
            .bounded(leases.keep_alive(granted.id()))
            .await
            .map_err(Failure::reason)?;
        *last = Some((granted.id(), granted.ttl()));
        Ok((granted.id(), granted.ttl(), keeper, answers))
    }

    /// Renews the lease every third of its TTL (sooner when poked), retrying unfinished
    /// writes after each renewal, until the lease is lost or etcd stops answering.
    async fn renew(
        &self,
        session: &Session,
        ttl_secs: i64,
        keeper: &mut LeaseKeeper,
        answers: &mut LeaseKeepAliveStream,
    ) -> Failure {
        let every = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(1).max(1)) / 3;
        loop {
            tokio::select! {
                () = sleep(every) => {}
                () = self.poke.notified() => {}
            }
            if let Err(failure) = self.bounded(keeper.keep_alive()).await {
                return failure;
            }
            match self.bounded(answers.message()).await {
                Ok(Some(answer)) if answer.ttl() > 0 => {}
                Ok(Some(_)) => return Failure::LeaseLost,
                Ok(None) => return Failure::Other("etcd closed the keep-alive stream".to_owned()),
                Err(failure) => return failure,
            }
            match self.sync(session).await {
                Ok(()) => {}
                Err(Failure::LeaseLost) => return Failure::LeaseLost,
                Err(Failure::Other(reason)) => {
                    tracing::warn!(%reason, "etcd registry: cannot put or delete keys; retrying at the next renewal");
                }
            }
        }
    }
}

/// The session task: connects, holds a lease, and starts over with backoff when etcd
/// stops answering. Runs until the registry is closed or dropped.
async fn run_session(shared: Arc<Shared>) {
    let mut last_lease = None;
    let mut backoff = MIN_BACKOFF;
    let mut connection = 0;
    loop {
        connection += 1;
        let (reason, was_up) = match shared.connect().await {
            Ok(client) => shared.hold(client, connection, &mut last_lease).await,
            Err(reason) => (reason, false),
        };
        if was_up {
            backoff = MIN_BACKOFF;
        }
        if matches!(*shared.state.borrow(), State::Down(_)) {
            tracing::debug!(%reason, "etcd registry: still unreachable; retrying in {backoff:?}");
        } else {
            tracing::warn!(%reason, "etcd registry: unreachable; retrying in {backoff:?}");
        }
        shared.set(State::Down(reason.clone()));
        shared.topics.unreachable(&reason);
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The watch of one service's providers.
struct Follower {
    shared: Arc<Shared>,
    service: String,
    /// `<prefix>/<service>/providers/`.
    dir: String,
    /// The providers, by key.
    providers: BTreeMap<Vec<u8>, ProviderUrl>,
    /// Keys that name no URL, logged once each.
    warned: HashSet<Vec<u8>>,
    /// Told once the first set is published (or etcd is found unreachable).
    ready: Option<oneshot::Sender<()>>,
    backoff: Duration,
}

/// The task following `service`: reads and watches its providers while connected, starting
/// over after a reconnection, a broken watch or a compaction.
async fn follow(shared: Arc<Shared>, service: String, ready: oneshot::Sender<()>) {
    let mut state = shared.state.subscribe();
    let mut follower = Follower {
        dir: shared.providers_of(&service),
        shared,
        service,
        providers: BTreeMap::new(),
        warned: HashSet::new(),
        ready: Some(ready),
        backoff: MIN_BACKOFF,
    };
    loop {
        let session = loop {
            let current = state.borrow_and_update().clone();
            match current {
                State::Up(session) => break session,
                State::Closed => return,
                State::Down(reason) => {
                    // The session told the subscriptions of the time; this one may be newer.
                    follower.shared.topics.unreachable(&reason);
                    follower.ready.take();
                }
                State::Connecting => {}
            }
            if state.changed().await.is_err() {
                return;
            }
        };
        match follower.follow(&session, &mut state).await {
            Ok(()) => {}
            Err(reason) => {
                tracing::debug!(service = %follower.service, %reason, "etcd registry: watch broken; reading again");
                // The session finds out whether etcd itself is unreachable, and tells
                // every subscription if so.
                follower.shared.poke.notify_one();
                sleep(follower.backoff).await;
                follower.backoff = (follower.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Follower {
    /// Reads the providers, publishes them, then watches from the next revision. `Ok` when
    /// it should start over at once (the revision was compacted), `Err` when it broke.
    async fn follow(
        &mut self,
        session: &Session,
        state: &mut watch::Receiver<State>,
    ) -> Result<(), String> {
        let client = &session.client;
        let options = GetOptions::new().with_prefix().with_keys_only();
        let got = self
            .shared
            .bounded(client.kv_client().get(self.dir.as_str(), Some(options)))
            .await
            .map_err(Failure::reason)?;
        let revision = got
            .header()
            .map(|header| header.revision())
            .ok_or("etcd answered a get without its revision")?;
        self.providers.clear();
        for kv in got.kvs() {
            self.put(kv.key());
        }
        self.publish();
        self.backoff = MIN_BACKOFF;
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut watch = self
            .shared
            .bounded(
                client
                    .watch_client()
                    .watch(self.dir.as_str(), Some(options)),
            )
            .await
            .map_err(Failure::reason)?;
        loop {
            tokio::select! {
                message = watch.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => return Err("etcd ended the watch".to_owned()),
                        Err(error) => return Err(error.to_string()),
                    };
                    if response.canceled() {
                        if response.compact_revision() > 0 {
                            tracing::debug!(service = %self.service, "etcd registry: watched revision compacted; reading again");
                            return Ok(());
                        }
                        return Err(format!("etcd canceled the watch: {}", response.cancel_reason()));
                    }
                    for event in response.events() {
                        // Event::event_type panics on a type it does not know; a deletion
                        // is told by its tombstone, whose version is 0.
                        match event.kv() {
                            Some(kv) if kv.version() == 0 => self.remove(kv.key()),
                            Some(kv) => self.put(kv.key()),
                            None => {}
                        }
                    }
                    if !response.events().is_empty() {
                        self.publish();
                    }
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        return Err("the registry is closed".to_owned());
                    }
                    // A new lease keeps the watch; a new connection (even if this task
                    // missed the outage in between) reads again.
                    match &*state.borrow() {
                        State::Up(now) if now.connection == session.connection => {}
                        State::Connecting => {}
                        State::Up(_) => return Err("etcd reconnected".to_owned()),
                        State::Down(reason) => return Err(reason.clone()),
                        State::Closed => return Err("the registry is closed".to_owned()),
                    }
                }
            }
        }
    }

    /// Adds the provider `key` names, or skips (and logs once) a key that names none.
    fn put(&mut self, key: &[u8]) {
        let parsed = key
            .strip_prefix(self.dir.as_bytes())
            .and_then(|segment| std::str::from_utf8(segment).ok())
            .ok_or_else(|| "not a UTF-8 key under the service's providers".to_owned())
            .and_then(|segment| {
                ProviderUrl::from_path_segment(segment).map_err(|error| error.to_string())
            });
        match parsed {
            Ok(url) => {
                self.providers.insert(key.to_vec(), url);
            }
            Err(reason) => {
                self.providers.remove(key);
                if self.warned.insert(key.to_vec()) {
                    tracing::warn!(key = %String::from_utf8_lossy(key), %reason, "etcd registry: skipping a key that names no provider");
                }
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        self.providers.remove(key);
        self.warned.remove(key);
    }

    fn publish(&self) {
        let urls = self.providers.values().cloned().collect();
        self.shared.topics.publish(&self.service, urls);
    }
}
