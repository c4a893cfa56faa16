//! The consumer side: [`Client`], its builder, and the consumer pipeline.
//!
//! ```text
//! stub (hash key, encode args) -> Deadline -> user layers -> Cluster (Directory, LoadBalance
//!   picker, retries) -> per attempt: Provider::call (stats) -> provider layers -> Channel
//! ```

mod breaker;
pub mod cluster;
mod deadline;
mod directory;
mod generic;
pub mod loadbalance;
mod provider;
mod providers;
mod registry_directory;
mod traffic;

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::config::MethodConfig;
use crate::descriptor::{MethodDescriptor, ServiceDescriptor};
use crate::format::{Decode, Encode, Serde};
use crate::limit::{Limits, RateLimit, Rule, Scope};
use crate::request::Name;
use crate::stats::{MethodTable, Side, Stats};
use crate::transport::{Channel, Transport};
use crate::{Attachments, Codec, Error, Request, Response, Result};

pub use breaker::{BreakerConfig, BreakerSnapshot, BreakerState};
pub use cluster::{Cluster, ClusterMode, ClusterStrategy, FailbackPolicy};
pub use deadline::{Deadline, DeadlineLayer};
pub use directory::{Directory, StaticDirectory};
pub use loadbalance::{
    ConsistentHash, LeastActive, LoadBalance, Picker, PowerOfTwoChoices, Random, RoundRobin,
    ShortestResponse, Tried,
};
pub use provider::{Connector, DEFAULT_WEIGHT, Provider, ProviderStats};
pub use providers::Providers;
pub use registry_directory::{CACHE_FALLBACK_AFTER, Discovery, RegistryDirectory};
pub(crate) use registry_directory::{epoch_ms, local_host};
pub use traffic::Traffic;

/// The consumer pipeline as one tower service.
pub type ConsumerService = BoxCloneSyncService<Request, Response, Error>;

/// A user layer, type-erased so the builder keeps one type whatever layers it holds.
type BoxLayer = Box<dyn Fn(ConsumerService) -> ConsumerService + Send + Sync>;

/// Default per-call timeout, as in Dubbo.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A typed stub built from a [`Client`]; implemented by every generated `<Trait>Client`.
pub trait FromClient {
    /// Wraps an untyped client.
    fn from_client(client: Client) -> Self;

    /// The service the stub was generated for; the builder resolves its per-method
    /// settings from it. `None` for an untyped [`Client`].
    fn descriptor() -> Option<&'static ServiceDescriptor> {
        None
    }

    /// Whether method number `method` of [`FromClient::descriptor`] returns a type with a
    /// `Default` (which failsafe needs).
    fn has_default(method: usize) -> bool {
        let _ = method;
        false
    }
}

/// An untyped handle to one remote service. Generated stubs wrap it; clone it freely.
///
/// Per-call options ([`Client::with_timeout`], [`Client::with_attachment`]) return a
/// modified copy, so the original keeps its defaults.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    timeout: Option<Duration>,
    attachments: Attachments,
}

struct Shared {
    service: Name,
    version: Name,
    codec: Codec,
    timeout: Duration,
    /// The consumer pipeline when the user added layers; `None`: calls go straight to
    /// the cluster stage under the deadline, nothing boxed.
    stack: Option<ConsumerService>,
    cluster: Cluster,
    /// The service's descriptor, when the client was built for one (typed stubs).
    descriptor: Option<&'static ServiceDescriptor>,
    /// Where calls are counted; `None`: not counted.
    stats: Option<MethodTable>,
    /// Timeouts of the configuration file's method sections, under the methods' own
    /// `timeout_ms` (usually empty).
    method_timeouts: Box<[(String, Duration)]>,
    /// Every wait below the client ends by the call's deadline on its own: the builder
    /// connected the providers with transports that enforce it
    /// ([`Transport::enforces_deadline`]), with no provider layers and no custom cluster
    /// strategy. Calls then arm no timer here while no client-side limit is set.
    deadline_enforced: bool,
}

impl Shared {
    fn configured_timeout(&self, method: &MethodDescriptor) -> Option<Duration> {
        self.method_timeouts
            .iter()
            .find(|(name, _)| name == method.name)
            .map(|(_, timeout)| *timeout)
    }
}

impl FromClient for Client {
    fn from_client(client: Client) -> Client {
        client
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &self.shared.service)
            .field("version", &self.shared.version)
            .field("codec", &self.shared.codec)
            .field("timeout", &self.timeout.unwrap_or(self.shared.timeout))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a client for `service`.
    pub fn builder(service: impl Into<Name>) -> ClientBuilder<Client> {
        ClientBuilder::new(service)
    }

    /// The service this client calls.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The codec every call of this client uses.
    pub fn codec(&self) -> Codec {
        self.shared.codec
    }

    /// A copy whose calls use `timeout`, overriding the method's and the client's default.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        let mut client = self.clone();
        client.timeout = Some(timeout);
        client
    }

    /// A copy whose calls carry the attachment `key = value`.
    pub fn with_attachment(&self, key: impl Into<String>, value: impl Into<String>) -> Client {
        let mut client = self.clone();
        client.attachments.insert(key, value);
        client
    }

    /// Calls `method` with `args` (a tuple of all arguments, any serde types) and decodes
    /// its result.
    pub async fn call<A, R>(&self, method: &'static MethodDescriptor, args: &A) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_in::<Serde, A, R>(method, args, None).await
    }

    /// Sends a one-way call: returns once the request is handed to the transport, without
    /// waiting for (or receiving) a result.
    pub async fn call_oneway<A>(&self, method: &'static MethodDescriptor, args: &A) -> Result<()>
    where
        A: Serialize + ?Sized,
    {
        self.call_oneway_in::<Serde, A>(method, args, None).await
    }

    /// This client's traffic control: its rate limits and `actives` caps, and its circuit
    /// breakers (settings and states), changeable while it runs.
    pub fn traffic(&self) -> Traffic {
        self.shared.cluster.traffic_handle()
    }

    /// The providers this client calls, as its directory lists them now (with their
    /// weights, metadata and live statistics).
    pub fn providers(&self) -> Providers {
        self.shared.cluster.providers()
    }

    /// Sends an already-built request through the consumer pipeline.
    pub async fn invoke(&self, request: Request) -> Result<Response> {
        self.send(request).await
    }

    /// The version this client calls (may be empty).
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// The service's descriptor: the stub's for a generated client, or the one given to
    /// [`ClientBuilder::descriptor`]; `None` for an untyped client without one.
    pub fn descriptor(&self) -> Option<&'static ServiceDescriptor> {
        self.shared.descriptor
    }

    /// Sends `request` through the consumer pipeline, counted in the client's statistics.
    async fn send(&self, request: Request) -> Result<Response> {
        let Some(table) = &self.shared.stats else {
            return self.send_uncounted(request).await;
        };
        let stats = table.get(&request.service, request.method);
        // A request starts when it was made (its deadline minus its budget): one clock
        // read saved per call.
        let started = request
            .deadline
            .checked_sub(request.timeout)
            .unwrap_or_else(std::time::Instant::now);
        let call = stats.start_at(started, request.body.len());
        let result = self.send_uncounted(request).await;
        call.finish_with(&result);
        result
    }

    /// Sends `request` through the consumer pipeline: the user's layers when there are
    /// some, else straight to the cluster stage; either way under the call's deadline.
    async fn send_uncounted(&self, request: Request) -> Result<Response> {
        match &self.shared.stack {
            Some(stack) => stack.clone().oneshot(request).await,
            // The transport's own timer ends the call, and says at which stage.
            None if self.shared.deadline_enforced && self.shared.cluster.traffic_is_idle() => {
                self.shared.cluster.dispatch(request).await
            }
            None => {
                let (deadline, budget) = (request.deadline, request.timeout);
                let call = self.shared.cluster.dispatch(request);
                match tokio::time::timeout_at(deadline.into(), call).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::Timeout(budget)),
                }
            }
        }
    }

    /// True when calls of `method` should carry a [`Request::hash_key`] (its load balancer
    /// hashes, or it names a `hash_arg`).
    pub fn needs_hash_key(&self, method: &'static MethodDescriptor) -> bool {
        self.shared.cluster.needs_hash_key(method)
    }

    /// [`Client::call`] in the format `F`, with a precomputed hash key.
    pub(crate) async fn call_in<F, A, R>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        hash_key: Option<u64>,
    ) -> Result<R>
    where
        F: Encode<A> + Decode<R>,
        A: ?Sized,
    {
        let request = self.request::<F, A>(method, args, hash_key)?;
        let response = self.send(request).await?;
        F::decode(response.codec, &response.body)
    }

    /// [`Client::call_oneway`] in the format `F`, with a precomputed hash key.
    pub(crate) async fn call_oneway_in<F, A>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        hash_key: Option<u64>,
    ) -> Result<()>
    where
        F: Encode<A>,
        A: ?Sized,
    {
        let mut request = self.request::<F, A>(method, args, hash_key)?;
        request.oneway = true;
        self.send(request).await.map(|_| ())
    }

    fn request<F: Encode<A>, A: ?Sized>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        hash_key: Option<u64>,
    ) -> Result<Request> {
        let timeout = self
            .timeout
            .or(method.timeout_ms.map(Duration::from_millis))
            .or_else(|| self.shared.configured_timeout(method))
            .unwrap_or(self.shared.timeout);
        let codec = self.shared.codec;
        let body = crate::codec::encode_to_bytes(|out| F::encode(codec, args, out))?;
        let mut request = Request::new(
            self.shared.service.clone(),
            self.shared.version.clone(),
            method,
            codec,
            body,
            timeout,
        );
        request.hash_key = hash_key;
        request.attachments = self.attachments.clone();
        Ok(request)
    }
}

/// Builds a [`Client`] or a generated stub (`GreeterClient::builder()`).
pub struct ClientBuilder<S = Client> {
    service: Name,
    version: Name,
    /// Provider addresses with their weights.
    addresses: Vec<(String, u32)>,
    /// The transports, at most one per protocol; the first is the default.
    pub(crate) transports: Vec<Arc<dyn Transport>>,
    directory: Option<Arc<dyn Directory>>,
    registry: Option<Arc<dyn registry::Registry>>,
    application: String,
    registry_cache: Option<PathBuf>,
    load_balance: Option<Arc<dyn LoadBalance>>,
    load_balance_name: Option<String>,
    cluster: ClusterMode,
    /// A strategy given by value; runs instead of `cluster` when set.
    cluster_strategy: Option<Arc<dyn ClusterStrategy>>,
    retries: u32,
    forks: usize,
    failback: cluster::FailbackPolicy,
    codec: Codec,
    timeout: Duration,
    layers: Vec<BoxLayer>,
    provider_layers: Vec<provider::ChannelLayer>,
    limits: Limits,
    rules: Vec<(Scope, Rule)>,
    breaker: Option<BreakerConfig>,
    descriptor: Option<&'static ServiceDescriptor>,
    stats: Option<Stats>,
    token: Option<String>,
    /// `[services."NAME".methods.METHOD]` of the configuration, by method name.
    methods: BTreeMap<String, MethodConfig>,
    stub: PhantomData<fn() -> S>,
}

impl<S: FromClient> ClientBuilder<S> {
    /// A builder for calls to `service`.
    pub fn new(service: impl Into<Name>) -> ClientBuilder<S> {
        ClientBuilder {
            service: service.into(),
            version: "".into(),
            addresses: Vec::new(),
            transports: Vec::new(),
            directory: None,
            registry: None,
            application: String::new(),
            registry_cache: None,
            load_balance: None,
            load_balance_name: None,
            cluster: ClusterMode::default(),
            cluster_strategy: None,
            retries: cluster::DEFAULT_RETRIES,
            forks: cluster::DEFAULT_FORKS,
            failback: cluster::FailbackPolicy::default(),
            // A service generated from a .proto file speaks protobuf first.
            codec: S::descriptor()
                .and_then(|descriptor| descriptor.codecs.first().copied())
                .unwrap_or_default(),
            timeout: DEFAULT_TIMEOUT,
            layers: Vec::new(),
            provider_layers: Vec::new(),
            limits: Limits::consumer(),
            rules: Vec::new(),
            breaker: None,
            descriptor: None,
            stats: Some(Stats::global().clone()),
            token: None,
            methods: BTreeMap::new(),
            stub: PhantomData,
        }
    }

    /// The service version to call (default: none).
    pub fn version(mut self, version: impl Into<Name>) -> ClientBuilder<S> {
        self.version = version.into();
        self
    }

    /// Adds one provider address: `host:port` (reached with the first transport), or
    /// `protocol://host:port` (reached with the transport of that protocol, say
    /// `tri://127.0.0.1:50051`).
    pub fn address(mut self, address: impl Into<String>) -> ClientBuilder<S> {
        self.addresses.push((address.into(), DEFAULT_WEIGHT));
        self
    }

    /// Adds one provider address with a `weight` for the weighted balancers (Dubbo's
    /// `weight`; default 100).
    pub fn weighted_address(mut self, address: impl Into<String>, weight: u32) -> ClientBuilder<S> {
        self.addresses.push((address.into(), weight));
        self
    }

    /// Adds provider addresses.
    pub fn addresses<I, A>(mut self, addresses: I) -> ClientBuilder<S>
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        self.addresses.extend(
            addresses
                .into_iter()
                .map(|address| (address.into(), DEFAULT_WEIGHT)),
        );
        self
    }

    /// A transport to reach providers with (required). Call it once per transport the
    /// client should speak: a registry-fed client then uses every provider announced on
    /// any of their protocols (`tcp://...` over TCP, `tri://...` over HTTP/2), and an
    /// address with a `protocol://` prefix goes to that protocol's transport. The first
    /// one is the default for bare addresses; a second transport of the same protocol
    /// replaces the first.
    pub fn transport(mut self, transport: impl Transport) -> ClientBuilder<S> {
        let transport: Arc<dyn Transport> = Arc::new(transport);
        match self
            .transports
            .iter_mut()
            .find(|t| t.protocol() == transport.protocol())
        {
            Some(same) => *same = transport,
            None => self.transports.push(transport),
        }
        self
    }

    /// Takes providers from `directory` instead of a static address list. The directory
    /// makes its own providers (with a [`Connector`]), so it cannot be combined with
    /// [`ClientBuilder::provider_layer`].
    pub fn directory(mut self, directory: impl Directory) -> ClientBuilder<S> {
        self.directory = Some(Arc::new(directory));
        self
    }

    /// Finds providers in `registry` (see [`registry::connect`]) instead of a static
    /// address list, and follows them as they come and go. Only providers announced on
    /// this client's transport, version and codec are used. The first call waits (within
    /// its deadline) for the first providers; while the registry is away the client keeps
    /// calling the last providers it knew, also across restarts (a cache file, see
    /// [`ClientBuilder::registry_cache`]).
    ///
    /// [`ClientBuilder::build`] must then run within a tokio runtime: the subscription
    /// is followed by a task.
    pub fn registry(mut self, registry: Arc<dyn registry::Registry>) -> ClientBuilder<S> {
        self.registry = Some(registry);
        self
    }

    /// Where a registry-fed client keeps its last good provider list (default: a file
    /// under the system's temporary directory, named after the registry and service).
    pub fn registry_cache(mut self, path: impl Into<PathBuf>) -> ClientBuilder<S> {
        self.registry_cache = Some(path.into());
        self
    }

    /// The application this client belongs to, announced in the registry (Dubbo's
    /// `application.name`).
    pub fn application(mut self, name: impl Into<String>) -> ClientBuilder<S> {
        self.application = name.into();
        self
    }

    /// How a provider is picked for methods that do not name a `loadbalance` (default:
    /// weighted [`Random`], as in Dubbo).
    pub fn load_balance(mut self, load_balance: impl LoadBalance) -> ClientBuilder<S> {
        self.load_balance = Some(Arc::new(load_balance));
        self.load_balance_name = None;
        self
    }

    /// The load balancer called `name` (`random`, `roundrobin`, `leastactive`,
    /// `consistenthash`, `p2c`, `shortestresponse`) for methods that do not name one; an
    /// unknown name fails [`ClientBuilder::build`].
    pub fn load_balance_by_name(mut self, name: impl Into<String>) -> ClientBuilder<S> {
        self.load_balance_name = Some(name.into());
        self.load_balance = None;
        self
    }

    /// The cluster mode of methods that do not name one (default: failover).
    pub fn cluster(mut self, mode: ClusterMode) -> ClientBuilder<S> {
        self.cluster = mode;
        self.cluster_strategy = None;
        self
    }

    /// Runs the methods that do not name a cluster mode with `strategy`, a
    /// [`ClusterStrategy`] of your own, instead of a built-in mode. A method's
    /// `#[rpc(cluster = "...")]` (or its configuration section) still picks its own mode.
    pub fn cluster_strategy(mut self, strategy: impl ClusterStrategy) -> ClientBuilder<S> {
        self.cluster_strategy = Some(Arc::new(strategy));
        self
    }

    /// Failover retries of methods that do not set `retries` (default 2).
    pub fn retries(mut self, retries: u32) -> ClientBuilder<S> {
        self.retries = retries;
        self
    }

    /// How many providers a forking call goes to at once (default 2).
    pub fn forks(mut self, forks: usize) -> ClientBuilder<S> {
        self.forks = forks;
        self
    }

    /// How failback retries failed calls (default: every 5 s, 3 times, 1024 waiting).
    pub fn failback(mut self, settings: cluster::FailbackPolicy) -> ClientBuilder<S> {
        self.failback = settings;
        self
    }

    /// The codec of every call (default: the service's first codec: bincode for a
    /// `#[service]` trait, protobuf for a service generated from a `.proto` file).
    pub fn codec(mut self, codec: Codec) -> ClientBuilder<S> {
        self.codec = codec;
        self
    }

    /// Default timeout of a call (default: 1000 ms); a method's `timeout_ms` overrides it.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder<S> {
        self.timeout = timeout;
        self
    }

    /// Holds this client's calls to `limit` (for every method without a narrower rule),
    /// before a provider is picked; a call over it fails with [`Error::Rejected`]. Rate
    /// limits protecting a provider belong on the provider; this one keeps a client from
    /// overrunning its own budget.
    pub fn rate_limit(self, limit: RateLimit) -> ClientBuilder<S> {
        self.limit(Scope::All, Rule::rate(limit))
    }

    /// Caps the calls of each method in flight to one provider (Dubbo's `actives`), for
    /// methods without `#[rpc(actives = ...)]`; a call over it waits for a slot until its
    /// deadline.
    pub fn actives(mut self, actives: u32) -> ClientBuilder<S> {
        let mut rule = self
            .rules
            .iter()
            .rev()
            .find(|(scope, _)| *scope == Scope::All)
            .map(|(_, rule)| rule.clone())
            .unwrap_or_default();
        rule.actives = Some(actives);
        self.rules.push((Scope::All, rule));
        self
    }

    /// Sets the client-side limits of `scope` (rate, `actives`). A rule that cannot
    /// work (a limit of 0) fails [`ClientBuilder::build`].
    pub fn limit(mut self, scope: Scope, rule: Rule) -> ClientBuilder<S> {
        self.rules.push((scope, rule));
        self
    }

    /// A circuit breaker per provider and method ([`BreakerConfig::default`] follows
    /// resilience4j's thresholds over Sentinel-sized windows): an open breaker fails its
    /// calls fast and the cluster passes that provider over while another is healthy. A
    /// threshold that cannot work (NaN, negative) fails [`ClientBuilder::build`].
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> ClientBuilder<S> {
        self.breaker = Some(config);
        self
    }

    /// Adds a tower layer (a consumer filter) to every call of this client.
    ///
    /// Layers run inside the deadline and before the cluster stage, so they see each call
    /// once, whatever provider (or providers, on retries) it goes to; the first layer added
    /// is the outermost. To see each attempt and its provider, use
    /// [`ClientBuilder::provider_layer`].
    pub fn layer<L>(mut self, layer: L) -> ClientBuilder<S>
    where
        L: Layer<ConsumerService> + Send + Sync + 'static,
        L::Service:
            Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |inner| {
            BoxCloneSyncService::new(layer.layer(inner))
        }));
        self
    }

    /// Adds a tower layer around each provider's channel: it sees every attempt of every
    /// call, after the provider was picked ([`Request::provider`], [`Request::attempt`]).
    /// The first layer added is the outermost.
    pub fn provider_layer<L>(mut self, layer: L) -> ClientBuilder<S>
    where
        L: Layer<Channel> + Send + Sync + 'static,
        L::Service:
            Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.provider_layers.push(provider::channel_layer(layer));
        self
    }

    /// Counts calls into `stats` instead of [`Stats::global`] (where they go by default).
    pub fn stats(mut self, stats: Stats) -> ClientBuilder<S> {
        self.stats = Some(stats);
        self
    }

    /// Counts nothing.
    pub fn without_stats(mut self) -> ClientBuilder<S> {
        self.stats = None;
        self
    }

    /// Describes the service for an untyped [`Client`] (a generated stub brings its own):
    /// per-method settings apply, statistics resolve its methods once, and
    /// [`Client::call_json`] finds methods by name.
    pub fn descriptor(mut self, descriptor: &'static ServiceDescriptor) -> ClientBuilder<S> {
        self.descriptor = Some(descriptor);
        self
    }

    /// Takes what `config` says about consumers, for this builder's service: the
    /// `[consumer]` defaults (`timeout`, `retries`, `loadbalance`, `cluster`,
    /// `serialization`), `application.name`, then the service's own section
    /// (`[services."NAME"]`: `version`, `timeout`, `retries`, `loadbalance`, `cluster`).
    /// Calls made on the builder afterwards override it; a method's `#[rpc(...)]`
    /// attribute overrides both. The transport and registry are built from the same
    /// config by their crates. Fails with [`Error::Config`] on an unknown cluster mode
    /// or serialization (an unknown balancer fails [`ClientBuilder::build`]).
    pub fn config(mut self, config: &crate::Config) -> Result<ClientBuilder<S>> {
        if let Some(name) = &config.application.name {
            self = self.application(name.clone());
        }
        let consumer = &config.consumer;
        if let Some(name) = &consumer.serialization {
            let codec = name.parse().map_err(|error: Error| {
                Error::Config(format!("consumer.serialization: {}", error_text(&error)))
            })?;
            self = self.codec(codec);
        }
        let service = config.service(&self.service).cloned().unwrap_or_default();
        if let Some(version) = service.version {
            self = self.version(version);
        }
        let timeout = service.timeout.or(consumer.timeout);
        if let Some(ms) = timeout {
            self = self.timeout(Duration::from_millis(ms));
        }
        if let Some(retries) = service.retries.or(consumer.retries) {
            self = self.retries(retries);
        }
        if let Some(name) = service.loadbalance.or(consumer.loadbalance.clone()) {
            self = self.load_balance_by_name(name);
        }
        if let Some(name) = service.cluster.or(consumer.cluster.clone()) {
            let mode = name.parse().map_err(|error: Error| {
                Error::Config(format!("consumer.cluster: {}", error_text(&error)))
            })?;
            self = self.cluster(mode);
        }
        if let Some(actives) = service.actives.or(consumer.actives) {
            self = self.actives(actives);
        }
        for (method, settings) in &service.methods {
            if let Some(actives) = settings.actives {
                let scope = Scope::MethodDefault(self.service.to_string(), method.clone());
                self.rules
                    .push((scope, Rule::default().with_actives(actives)));
            }
        }
        self.methods = service.methods;
        Ok(self)
    }

    /// The token to send to providers that require one (Dubbo's `token` attachment), for
    /// clients given addresses instead of a registry. A registry-fed client needs none: it
    /// sends each provider the token that provider announced, over this one.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder<S> {
        self.token = Some(token.into());
        self
    }

    /// Builds the client. Connections open lazily, on the first call.
    ///
    /// Fails with [`Error::Config`] when the providers are missing, when a method names
    /// an unknown cluster mode or load balancer, or when the codec cannot carry the
    /// service's types (protobuf for a serde `#[service]` trait).
    pub fn build(self) -> Result<S> {
        let service = &self.service;
        if let Some(descriptor) = S::descriptor()
            && !descriptor.codecs.contains(&self.codec)
        {
            let supported: Vec<&str> = descriptor.codecs.iter().map(|c| c.name()).collect();
            return Err(Error::Config(format!(
                "client for {service}: codec {} cannot carry this service's types; it \
                 supports {}",
                self.codec,
                supported.join(", ")
            )));
        }
        let deadline_enforced = self.directory.is_none()
            && self.provider_layers.is_empty()
            && self.cluster_strategy.is_none()
            && !self.transports.is_empty()
            && self.transports.iter().all(|t| t.enforces_deadline());
        let transports = (!self.transports.is_empty()).then_some(self.transports);
        let directory: Arc<dyn Directory> = match (self.directory, self.registry, transports) {
            (Some(_), Some(_), _) => {
                return Err(Error::Config(format!(
                    "client for {service}: give it a directory or a registry, not both"
                )));
            }
            (Some(_), None, _) if !self.provider_layers.is_empty() => {
                return Err(Error::Config(format!(
                    "client for {service}: provider layers apply to providers the builder \
                     connects; a directory makes its own (give it a Connector)"
                )));
            }
            (Some(directory), None, _) => directory,
            (None, Some(_), Some(_)) if !self.addresses.is_empty() => {
                return Err(Error::Config(format!(
                    "client for {service}: give it addresses or a registry, not both"
                )));
            }
            (None, Some(_), Some(_)) if tokio::runtime::Handle::try_current().is_err() => {
                return Err(Error::Config(format!(
                    "client for {service}: a registry-fed client must be built within a \
                     tokio runtime (it follows the registry in a task)"
                )));
            }
            (None, Some(registry), Some(transports)) => {
                let discovery = Discovery {
                    service: service.clone(),
                    version: self.version.clone(),
                    protocols: transports.iter().map(|t| t.protocol().to_owned()).collect(),
                    codec: self.codec,
                    application: self.application.clone(),
                    cache_file: self.registry_cache.clone(),
                    // One flag for every protocol: a client whose transports differ in
                    // TLS uses only providers announcing TLS.
                    tls: transports.iter().any(|t| t.tls()),
                };
                let connector =
                    Connector::with_transports(transports)?.with_layers(self.provider_layers);
                Arc::new(RegistryDirectory::start(registry, discovery, connector))
            }
            (None, None, Some(_)) if self.addresses.is_empty() => {
                return Err(Error::Config(format!(
                    "client for {service} has no providers; call .address(...) or .registry(...)"
                )));
            }
            (None, None, Some(transports)) => {
                let connector =
                    Connector::with_transports(transports)?.with_layers(self.provider_layers);
                let providers = self
                    .addresses
                    .iter()
                    .map(|(address, weight)| Ok(connector.provider(address)?.with_weight(*weight)))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(StaticDirectory::new(providers))
            }
            (None, _, None) => {
                return Err(Error::Config(format!(
                    "client for {service} has no transport; call .transport(...)"
                )));
            }
        };
        let load_balance = match (self.load_balance, self.load_balance_name) {
            (Some(load_balance), _) => load_balance,
            (None, Some(name)) => loadbalance::by_name(&name)?,
            (None, None) => Arc::new(Random::default()),
        };
        for (scope, rule) in self.rules {
            self.limits
                .set(scope, rule)
                .map_err(|error| Error::Config(format!("client for {service}: {error}")))?;
        }
        if let Some(breaker) = &self.breaker {
            breaker
                .validate()
                .map_err(|error| Error::Config(format!("client for {service}: {error}")))?;
        }
        let traffic = Traffic::new(self.limits, self.breaker);
        if let Some(descriptor) = S::descriptor() {
            traffic.watch(descriptor.methods);
        }
        if let Some(descriptor) = S::descriptor().or(self.descriptor) {
            crate::config::check_methods(service, &self.methods, descriptor)?;
        }
        let method_timeouts = self
            .methods
            .iter()
            .filter_map(|(name, m)| Some((name.clone(), Duration::from_millis(m.timeout?))))
            .collect();
        let mut cluster = Cluster::new(self.service.clone(), directory, load_balance)
            .configured_methods(self.methods)
            .traffic(traffic)
            .mode(self.cluster)
            .retries(self.retries)
            .forks(self.forks)
            .failback(self.failback);
        if let Some(strategy) = self.cluster_strategy {
            cluster = cluster.strategy(strategy);
        }
        let descriptor = S::descriptor().or(self.descriptor);
        if let Some(descriptor) = descriptor {
            cluster = cluster.with_methods(descriptor)?;
            for (index, method) in descriptor.methods.iter().enumerate() {
                let swallows = cluster.needs_default(method);
                if swallows && S::descriptor().is_some() && !S::has_default(index) {
                    let mode = match cluster.mode_of(method) {
                        Some(mode) => format!("{mode:?}"),
                        None => "its cluster strategy".to_owned(),
                    };
                    return Err(Error::Config(format!(
                        "method {}: {mode} needs a return type with a Default, to give the \
                         caller when the call fails; use another cluster mode for it",
                        method.name
                    )));
                }
            }
        }
        // Without user layers there is no stack: `Client::send` awaits the cluster stage
        // in place under the deadline, which saves a clone of a boxed service and three
        // boxed futures per call.
        let stack = (!self.layers.is_empty()).then(|| {
            let mut inner: ConsumerService = BoxCloneSyncService::new(cluster.clone());
            for layer in self.layers.iter().rev() {
                inner = layer(inner);
            }
            BoxCloneSyncService::new(DeadlineLayer.layer(inner))
        });
        // Providers key per-application limits on it (Dubbo's `remote.application`).
        let mut attachments = Attachments::new();
        if let Some(token) = self.token {
            attachments.insert(crate::server::security::TOKEN_KEY, token);
        }
        if !self.application.is_empty() {
            attachments.insert(
                crate::limit::APPLICATION_ATTACHMENT,
                self.application.clone(),
            );
        }
        let client = Client {
            shared: Arc::new(Shared {
                service: self.service,
                version: self.version,
                codec: self.codec,
                timeout: self.timeout,
                stack,
                cluster,
                descriptor,
                method_timeouts,
                deadline_enforced,
                stats: self
                    .stats
                    .map(|stats| stats.table(Side::Consumer, descriptor.as_slice())),
            }),
            timeout: None,
            attachments,
        };
        Ok(S::from_client(client))
    }
}

/// The message of a configuration error without its `invalid configuration: ` prefix.
fn error_text(error: &Error) -> String {
    match error {
        Error::Config(message) => message.clone(),
        other => other.to_string(),
    }
}
