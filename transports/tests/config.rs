//! Builders from a configuration file plus environment overrides, over real TCP, and
//! the precedence: method attribute > code > environment > file > default.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::client::ConsumerService;
use rpc_core::{Config, Error, Request, Server, ServerBuilder};
use tower::Layer;
use transports::TcpTransport;

fn write(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "rpc-config-test-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Records the timeout of every call it sees (a consumer layer: once per call).
#[derive(Clone, Default)]
struct Timeouts(Arc<Mutex<Vec<Duration>>>);

impl Layer<ConsumerService> for Timeouts {
    type Service = Recorded;

    fn layer(&self, inner: ConsumerService) -> Recorded {
        Recorded {
            inner,
            seen: self.0.clone(),
        }
    }
}

/// The service of [`Timeouts`].
#[derive(Clone)]
struct Recorded {
    inner: ConsumerService,
    seen: Arc<Mutex<Vec<Duration>>>,
}

impl tower::Service<Request> for Recorded {
    type Response = rpc_core::Response;
    type Error = Error;
    type Future = <ConsumerService as tower::Service<Request>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.seen.lock().unwrap().push(request.timeout);
        self.inner.call(request)
    }
}

impl Timeouts {
    fn last(&self) -> Duration {
        *self.0.lock().unwrap().last().unwrap()
    }
}

async fn provider(config: &Config) -> Server {
    ServerBuilder::from_config(config)
        .unwrap()
        .transport(TcpTransport::from_config(config).unwrap())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn timeouts_follow_attribute_then_code_then_environment_then_file_then_default() {
    let file = write("precedence", "[consumer]\ntimeout = 1500\n");
    let config = Config::load_with_env(&file, env(&[])).unwrap();
    let server = provider(&config).await;
    let address = server.local_addr().to_string();
    let build = |config: &Config, code: Option<Duration>| {
        let timeouts = Timeouts::default();
        let mut builder = ProbeClient::builder()
            .config(config)
            .unwrap()
            .transport(TcpTransport::default())
            .address(address.clone())
            .layer(timeouts.clone());
        if let Some(timeout) = code {
            builder = builder.timeout(timeout);
        }
        (builder.build().unwrap(), timeouts)
    };

    // Default: nothing set anywhere.
    let (probe, seen) = build(&Config::default(), None);
    probe.echo("a".into()).await.unwrap();
    assert_eq!(seen.last(), Duration::from_millis(1000));
    // File over the default.
    let (probe, seen) = build(&config, None);
    probe.echo("b".into()).await.unwrap();
    assert_eq!(seen.last(), Duration::from_millis(1500));
    // Environment over the file.
    let with_env = Config::load_with_env(&file, env(&[("RPC_CONSUMER_TIMEOUT", "2500")])).unwrap();
    let (probe, seen) = build(&with_env, None);
    probe.echo("c".into()).await.unwrap();
    assert_eq!(seen.last(), Duration::from_millis(2500));
    // Code over the environment.
    let (probe, seen) = build(&with_env, Some(Duration::from_millis(3500)));
    probe.echo("d".into()).await.unwrap();
    assert_eq!(seen.last(), Duration::from_millis(3500));
    // The method's attribute (`#[rpc(timeout_ms = 100)]`) over code.
    probe.sleep_briefly(1).await.unwrap();
    assert_eq!(seen.last(), Duration::from_millis(100));
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn a_sample_file_and_the_environment_configure_provider_and_consumer() {
    let file = write(
        "sample",
        r#"
        [application]
        name = "probe-app"
        [provider]
        token = "from-file"
        timeout = 700
        accesslog = true
        [consumer]
        retries = 0
        cluster = "failfast"
        loadbalance = "roundrobin"
        [services."test.Probe"]
        timeout = 4000
        "#,
    );
    let config = Config::load_with_env(&file, env(&[("RPC_PROVIDER_TOKEN", "from-env")])).unwrap();
    let registry = registry::connect("memory://config-sample").await.unwrap();
    let server = ServerBuilder::from_config(&config)
        .unwrap()
        .transport(TcpTransport::from_config(&config).unwrap())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .registry(registry.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = &server.registered()[0];
    assert_eq!(url.param("token"), Some("from-env"));
    assert_eq!(url.param("application"), Some("probe-app"));
    assert_eq!(url.param("timeout"), Some("700"));

    let timeouts = Timeouts::default();
    let consumer = ProbeClient::builder()
        .config(&config)
        .unwrap()
        .transport(TcpTransport::from_config(&config).unwrap())
        .registry(registry)
        .registry_cache(
            std::env::temp_dir().join(format!("rpc-config-test-{}.cache", std::process::id())),
        )
        .layer(timeouts.clone())
        .build()
        .unwrap();
    let (token, _) = consumer.attachment("token".into()).await.unwrap();
    assert_eq!(token.as_deref(), Some("from-env"));
    assert_eq!(
        timeouts.last(),
        Duration::from_millis(4000),
        "the service section over [consumer]"
    );

    let stranger = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .token("from-file")
        .build()
        .unwrap();
    let refused = stranger.echo("x".into()).await;
    assert!(
        matches!(refused, Err(Error::Unauthorized(_))),
        "{refused:?}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn bad_settings_fail_with_the_key_named() {
    let config = Config::from_toml("[consumer]\ncluster = \"failslow\"\n").unwrap();
    let error = ProbeClient::builder()
        .config(&config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("consumer.cluster") && error.contains("failslow"),
        "{error}"
    );

    let config = Config::from_toml("[provider]\nallow = [\"10.0.0.0/33\"]\n").unwrap();
    let error = ServerBuilder::from_config(&config)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("10.0.0.0/33"), "{error}");

    let config = Config::from_toml(
        "[protocols.tcp]\nssl-enabled = true\n[ssl]\nserver-key-cert-chain-path = \"/x.crt\"\n",
    )
    .unwrap();
    let error = TcpTransport::from_config(&config).unwrap_err().to_string();
    assert!(error.contains("ssl.server-private-key-path"), "{error}");

    let config = Config::from_toml(
        "[protocols.tcp]\nssl-enabled = true\n[ssl]\nserver-key-cert-chain-path = \"/nonexistent/p.crt\"\nserver-private-key-path = \"/nonexistent/p.key\"\n",
    )
    .unwrap();
    let error = TcpTransport::from_config(&config).unwrap_err().to_string();
    assert!(error.contains("/nonexistent/p.crt"), "{error}");
}

/// `[services."NAME".methods.METHOD]` from a YAML file: under the method's attribute, over
/// the service's settings and over what code sets for the whole service.
#[tokio::test]
async fn yaml_method_sections_sit_under_the_attribute_and_over_the_service() {
    let path = std::env::temp_dir().join(format!(
        "rpc-config-test-{}-methods.yaml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        r#"
consumer:
  timeout: 1500
services:
  test.Probe:
    timeout: 2000
    methods:
      echo:
        timeout: 250
      sleep_briefly:
        timeout: 900      # the attribute's 100 ms wins
      sleep:
        executes: 1       # provider side
        actives: 1        # consumer side
"#,
    )
    .unwrap();
    let config = Config::load_with_env(&path, env(&[])).unwrap();
    let probe = ProbeImpl::default();
    let server = ServerBuilder::from_config(&config)
        .unwrap()
        .transport(TcpTransport::from_config(&config).unwrap())
        .add_service(ProbeServer::new(probe.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let timeouts = Timeouts::default();
    let client = ProbeClient::builder()
        .config(&config)
        .unwrap()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .timeout(Duration::from_millis(3000))
        .layer(timeouts.clone())
        .build()
        .unwrap();
    client.echo("a".into()).await.unwrap();
    assert_eq!(
        timeouts.last(),
        Duration::from_millis(250),
        "method section"
    );
    client.sleep_briefly(1).await.unwrap();
    assert_eq!(timeouts.last(), Duration::from_millis(100), "attribute");
    client.sleep(1).await.unwrap();
    assert_eq!(
        timeouts.last(),
        Duration::from_millis(3000),
        "code, service-wide"
    );

    // On `sleep`, executes = 1 (provider) and actives = 1 (consumer). While one call
    // runs, the configured client holds the second back until the first is done (it
    // succeeds); a client without the section sends it and the provider refuses it.
    let plain = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .build()
        .unwrap();
    async fn running(
        client: &ProbeClient,
        probe: &ProbeImpl,
    ) -> tokio::task::JoinHandle<Result<u64, Error>> {
        let before = common::Stats::get(&probe.stats.started);
        let long = tokio::spawn({
            let client = client.clone();
            async move { client.sleep(800).await }
        });
        let started = std::time::Instant::now();
        while common::Stats::get(&probe.stats.started) == before {
            assert!(started.elapsed() < Duration::from_secs(10), "never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        long
    }
    let long = running(&client, &probe).await;
    let refused = plain.sleep(1).await;
    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
    long.await.unwrap().unwrap();
    let long = running(&client, &probe).await;
    assert_eq!(client.sleep(1).await.unwrap(), 1, "waited for the slot");
    long.await.unwrap().unwrap();
    // `echo` has no executes: it runs beside a long call.
    let long = running(&client, &probe).await;
    plain.echo("b".into()).await.unwrap();
    long.await.unwrap().unwrap();
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_method_section_for_a_method_the_service_lacks_is_an_error() {
    let config = Config::from_yaml(
        "services:\n  test.Probe:\n    methods:\n      ecko:\n        timeout: 5\n",
    )
    .unwrap();
    let error = ProbeClient::builder()
        .config(&config)
        .unwrap()
        .transport(TcpTransport::default())
        .address("127.0.0.1:1")
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("ecko") && error.contains("did you mean `echo`?"),
        "{error}"
    );
    let error = ServerBuilder::from_config(&config)
        .unwrap()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("did you mean `echo`?"), "{error}");
}
