//! A small service, a provider/consumer pair around it, and an HTTP client for the tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rpc_core::Server;
use serde_json::Value;
use transports::TcpTransport;

/// Test service.
#[rpc_core::service(name = "test.Calc")]
pub trait Calc {
    /// The sum.
    async fn add(&self, a: i32, b: i32) -> i32;
    /// Sleeps `millis`, returns it.
    async fn sleep(&self, millis: u64) -> u64;
    /// Greets by name.
    #[rpc(idempotent)]
    async fn greet(&self, name: String) -> String;
    /// Panics.
    async fn explode(&self) -> u32;
}

#[derive(Clone, Default)]
pub struct CalcImpl;

impl Calc for CalcImpl {
    async fn add(&self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    async fn greet(&self, name: String) -> String {
        format!("hello {name}")
    }

    async fn explode(&self) -> u32 {
        panic!("boom")
    }
}

/// A provider of `test.Calc` on a free loopback port, registered in `registry` if given.
pub async fn provider(
    registry: Option<Arc<dyn registry::Registry>>,
    stats: &rpc_core::stats::Stats,
) -> Server {
    let mut builder = Server::builder()
        .transport(TcpTransport::default())
        .add_service(CalcServer::new(CalcImpl))
        .stats(stats.clone())
        .shutdown_timeout(Duration::from_secs(2));
    if let Some(registry) = registry {
        builder = builder.registry(registry);
    }
    builder.bind("127.0.0.1:0").await.unwrap()
}

/// A fresh in-process registry.
pub async fn memory_registry(name: &str) -> Arc<dyn registry::Registry> {
    let url = format!(
        "memory://admin-{name}-{}-{}",
        std::process::id(),
        fastrand_u64()
    );
    registry::connect(&url).await.unwrap()
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request.
pub async fn http(method: &str, url: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Answer {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("admin answered in time")
        .expect("admin answered");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub async fn get(url: &str) -> Answer {
    http("GET", url, None, None).await
}

pub async fn post(url: &str, token: Option<&str>, body: &Value) -> Answer {
    http("POST", url, token, Some(serde_json::to_vec(body).unwrap())).await
}

/// Polls `check` every 20 ms until it holds, at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}
