//! The routes: JSON for programs, the dashboard for people, `/metrics` for Prometheus.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rpc_core::client::loadbalance::effective_weight;
use rpc_core::server::ServerState;
use rpc_core::{Client, Code, MethodDescriptor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Shared;

type AppState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.max_body;
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/services", get(services))
        .route("/api/providers", get(providers))
        .route("/api/stats", get(stats))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/api/services/{service}/offline", post(offline))
        .route("/api/services/{service}/online", post(online))
        .route("/api/invoke", post(invoke))
        .route("/monitor", get(crate::dashboard::monitor_page))
        .route("/api/monitor", get(monitor))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

/// An error answer: a status and `{"error": message}`.
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

async fn not_found() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "no such route")
}

async fn health(State(shared): AppState) -> axum::Json<Value> {
    axum::Json(json!({
        "status": "up",
        "uptime_s": shared.started.elapsed().as_secs(),
    }))
}

/// 200 once serving (a server exists only once its registration succeeded); 503 while
/// nothing is attached yet, while a server drains, or once every server stopped.
async fn ready(State(shared): AppState) -> Response {
    let servers = shared.servers();
    let states: Vec<Value> = servers
        .iter()
        .map(|s| json!({ "address": s.local_addr().to_string(), "state": state_name(s.state()) }))
        .collect();
    // A server that stopped on purpose while others serve (one of several in a process)
    // leaves the process ready; one that drains means the process is going away.
    let draining = servers.iter().any(|s| s.state() == ServerState::Draining);
    let serving = servers.iter().any(|s| s.is_ready());
    let attached = !servers.is_empty() || !shared.clients().is_empty();
    let ready = attached && !draining && (serving || servers.is_empty());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let reason = match (attached, ready) {
        (false, _) => "starting: no server or client attached yet",
        (true, false) if draining => "a server is draining",
        (true, false) => "every server stopped",
        (true, true) => "serving",
    };
    (
        status,
        axum::Json(json!({ "ready": ready, "reason": reason, "servers": states })),
    )
        .into_response()
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Serving => "serving",
        ServerState::Draining => "draining",
        _ => "stopped",
    }
}

#[derive(Serialize)]
struct MethodView {
    name: &'static str,
    args: &'static [&'static str],
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    forks: Option<u32>,
    oneway: bool,
    idempotent: bool,
    cluster: Option<&'static str>,
    loadbalance: Option<&'static str>,
    hash_arg: Option<&'static str>,
}

impl From<&'static MethodDescriptor> for MethodView {
    fn from(m: &'static MethodDescriptor) -> MethodView {
        MethodView {
            name: m.name,
            args: m.args,
            timeout_ms: m.timeout_ms,
            retries: m.retries,
            forks: m.forks,
            oneway: m.oneway,
            idempotent: m.idempotent,
            cluster: m.cluster,
            loadbalance: m.loadbalance,
            hash_arg: m.hash_arg,
        }
    }
}

fn methods_of(descriptor: Option<&'static rpc_core::ServiceDescriptor>) -> Option<Vec<MethodView>> {
    descriptor.map(|d| d.methods.iter().map(MethodView::from).collect())
}

async fn services(State(shared): AppState) -> axum::Json<Value> {
    let mut provided = Vec::new();
    for server in shared.servers() {
        let registered = server.registered();
        for service in server.services() {
            let urls: Vec<String> = registered
                .iter()
                .filter(|url| url.service() == service.name)
                .map(|url| url.to_string())
                .collect();
            provided.push(json!({
                "service": service.name,
                "version": service.version,
                "address": server.local_addr().to_string(),
                "state": state_name(server.state()),
                "registry": server.has_registry(),
                "online": !server.is_offline(service.name),
                "registered": urls,
                "methods": methods_of(Some(service)),
            }));
        }
    }
    let consumed: Vec<Value> = shared
        .clients()
        .iter()
        .map(|client| {
            json!({
                "service": client.service(),
                "version": client.version(),
                "codec": client.codec().name(),
                "methods": methods_of(client.descriptor()),
            })
        })
        .collect();
    axum::Json(json!({
        "application": shared.application,
        "provided": provided,
        "consumed": consumed,
    }))
}

async fn providers(State(shared): AppState) -> axum::Json<Value> {
    let now = SystemTime::now();
    let consumed: Vec<Value> = shared
        .clients()
        .iter()
        .map(|client| {
            let providers: Vec<Value> = client
                .providers()
                .iter()
                .map(|p| {
                    let reachable = p.stats.is_reachable(Duration::from_secs(1));
                    json!({
                        "address": &*p.address,
                        "weight": p.weight,
                        "effective_weight": effective_weight(p, now),
                        "state": if reachable { "reachable" } else { "unreachable" },
                        "in_flight": p.stats.in_flight(),
                        "succeeded": p.stats.succeeded(),
                        "failed": p.stats.failed(),
                        "latency_us": p.stats.latency_us(),
                        "peak_latency_us": p.stats.peak_latency_us(),
                        "last_error": p.stats.last_error().map(|e| e.to_string()),
                        "metadata": &*p.metadata,
                    })
                })
                .collect();
            json!({
                "service": client.service(),
                "version": client.version(),
                "providers": providers,
            })
        })
        .collect();
    axum::Json(json!({ "consumed": consumed }))
}

/// `?buckets=1` adds each method's latency histogram as `[[from_us, to_us, count], ..]`
/// (buckets holding samples only), from which two polls give the latency in between.
#[derive(Deserialize)]
struct StatsQuery {
    #[serde(default)]
    buckets: Option<String>,
}

async fn stats(State(shared): AppState, Query(query): Query<StatsQuery>) -> axum::Json<Value> {
    let methods: Vec<Value> = shared
        .stats
        .snapshot()
        .into_iter()
        .map(|m| {
            let buckets: Option<Vec<[u64; 3]>> = query
                .buckets
                .is_some()
                .then(|| m.histogram.buckets().map(|(a, b, n)| [a, b, n]).collect());
            let mut value = json!(m);
            if let (Some(buckets), Some(object)) = (buckets, value.as_object_mut()) {
                object.insert("buckets".into(), json!(buckets));
            }
            value
        })
        .collect();
    axum::Json(json!({
        "application": shared.application,
        "uptime_s": shared.started.elapsed().as_secs_f64(),
        "methods": methods,
    }))
}

async fn monitor(State(shared): AppState) -> Result<axum::Json<Value>, Failure> {
    let store = shared
        .monitor
        .as_ref()
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "this process is not a monitor"))?;
    Ok(axum::Json(json!({
        "processes": store.processes(),
        "aggregate": store.aggregate(),
    })))
}

/// Lets a mutating request through: the bearer token when one is configured; without
/// one, only on a loopback-bound endpoint.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Failure> {
    let Some(token) = &shared.token else {
        return if shared.loopback {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                "this admin endpoint is bound beyond loopback without a token: configure a \
                 token to use its POST routes",
            ))
        };
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        None => Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer TOKEN)",
        )),
        Some(given) if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Failure::new(StatusCode::UNAUTHORIZED, "wrong bearer token")),
    }
}

/// Compares without stopping at the first difference, so timing does not tell how much
/// of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn offline(
    State(shared): AppState,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, Failure> {
    switch(&shared, &service, &headers, false).await
}

async fn online(
    State(shared): AppState,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, Failure> {
    switch(&shared, &service, &headers, true).await
}

async fn switch(
    shared: &Shared,
    service: &str,
    headers: &HeaderMap,
    online: bool,
) -> Result<axum::Json<Value>, Failure> {
    authorize(shared, headers)?;
    let servers: Vec<_> = shared
        .servers()
        .into_iter()
        .filter(|s| s.services().iter().any(|d| d.name == service))
        .collect();
    if servers.is_empty() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no server here provides {service:?}"),
        ));
    }
    let mut changed = 0;
    for server in &servers {
        let result = if online {
            server.online(service).await
        } else {
            server.offline(service).await
        };
        changed += result.map_err(|error| match error {
            rpc_core::Error::Config(message) => Failure::new(StatusCode::CONFLICT, message),
            rpc_core::Error::Rejected(message) => Failure::new(StatusCode::CONFLICT, message),
            other => Failure::new(StatusCode::BAD_GATEWAY, other.to_string()),
        })?;
    }
    tracing::info!(
        service,
        online,
        urls = changed,
        "service switched by the admin endpoint"
    );
    Ok(axum::Json(json!({
        "service": service,
        "online": online,
        "changed": changed,
    })))
}

/// The body of `POST /api/invoke`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeRequest {
    service: String,
    method: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

async fn invoke(
    State(shared): AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, Failure> {
    authorize(&shared, &headers)?;
    let body = body.map_err(|rejection| Failure::new(rejection.status(), rejection.body_text()))?;
    let request: InvokeRequest = serde_json::from_slice(&body).map_err(|error| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"service\", \"method\", \"args\"}} in JSON: {error}"),
        )
    })?;
    let (client, via) = invoke_client(&shared, &request)?;
    let timeout = request
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.invoke_timeout)
        .min(Duration::from_secs(60));
    let started = Instant::now();
    let result = client
        .with_timeout(timeout)
        .call_json(&request.method, request.args)
        .await
        .map_err(call_failure)?;
    Ok(axum::Json(json!({
        "result": result,
        "elapsed_us": started.elapsed().as_micros() as u64,
        "via": via,
    })))
}

/// The client a generic invoke goes through: an attached client of the service (its
/// providers, balancing, cluster mode), else a JSON client to an attached server that
/// provides it.
fn invoke_client(
    shared: &Shared,
    request: &InvokeRequest,
) -> Result<(Client, &'static str), Failure> {
    let version_fits = |version: &str| request.version.as_deref().is_none_or(|v| v == version);
    if let Some(client) = shared.clients().into_iter().find(|c| {
        c.service() == request.service && version_fits(c.version()) && c.descriptor().is_some()
    }) {
        return Ok((client, "consumer"));
    }
    let key = format!(
        "{}:{}",
        request.service,
        request.version.as_deref().unwrap_or("")
    );
    if let Some(client) = shared
        .invoke_clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&key)
    {
        return Ok((client.clone(), "provider"));
    }
    let server = shared.servers().into_iter().find(|s| {
        s.services()
            .iter()
            .any(|d| d.name == request.service && version_fits(d.version))
    });
    let Some(server) = server else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown service {:?}: not provided or consumed by this process",
                request.service
            ),
        ));
    };
    let client = server
        .client(&request.service)
        .map_err(|error| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    shared
        .invoke_clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(key, client.clone());
    Ok((client, "provider"))
}

/// The HTTP status of a failed call: the caller's fault 4xx, the providers' 5xx.
fn call_failure(error: rpc_core::Error) -> Failure {
    use rpc_core::Error as E;
    let status = match error.root() {
        E::MethodNotFound { .. } | E::ServiceNotFound { .. } => StatusCode::NOT_FOUND,
        E::Codec { .. } | E::Protocol(_) | E::MessageTooLarge { .. } => StatusCode::BAD_REQUEST,
        E::Remote { code, .. } => match code {
            Code::Codec | Code::BadRequest => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Code::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
        root if root.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
        E::NoProvider(_) | E::Unavailable { .. } | E::Rejected(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    Failure::new(status, error.to_string())
}
