//! Configuration from a TOML or YAML file and the environment, with Dubbo's key names.
//!
//! ```toml
//! [application]
//! name = "greeter-provider"
//! [registry]
//! address = "file:///tmp/rpc-registry"
//! [protocols.tcp]
//! port = 20880
//! [provider]
//! timeout = 1000
//! token = "true"
//! [consumer]
//! timeout = 1000
//! retries = 2
//! loadbalance = "roundrobin"
//! cluster = "failover"
//! [services."demo.Greeter"]
//! version = "1.0.0"
//! [services."demo.Greeter".methods.greet]
//! timeout = 200
//! ```
//!
//! Precedence, strongest first: a method's `#[rpc(...)]` attribute, then what code sets on
//! a builder after [`crate::ServerBuilder::from_config`] / [`crate::ClientBuilder::config`],
//! then the environment (`RPC_REGISTRY_ADDRESS`, `RPC_CONSUMER_TIMEOUT`: `RPC_`, the key
//! in upper case, `.` and `-` as `_`), then the file, then the defaults. Code beats the
//! environment because code that sets a value means it; an operator who needs to change
//! it should have the code not set it.
//!
//! A file ending in `.yaml` or `.yml` is read as YAML (the same keys, nested the same
//! way, as Dubbo's `application.yml`); any other as TOML.
//!
//! Unknown keys are errors naming the nearest valid key; wrong types name the key and
//! where the value came from; a missing file names its path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml, Yaml};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "RPC_";

/// A whole configuration. Every key is optional; what is absent keeps the builders'
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `[application]`.
    pub application: ApplicationConfig,
    /// `[registry]`.
    pub registry: RegistryConfig,
    /// `[protocols.tcp]`, `[protocols.http2]`, ...
    pub protocols: BTreeMap<String, ProtocolConfig>,
    /// `[provider]`: defaults of every service served.
    pub provider: ProviderConfig,
    /// `[consumer]`: defaults of every client.
    pub consumer: ConsumerConfig,
    /// `[ssl]`: TLS certificates, with Dubbo's key names.
    pub ssl: SslConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[access-log]`.
    #[serde(rename = "access-log")]
    pub access_log: AccessLogConfig,
    /// `[services."NAME"]`: per-service settings over `[provider]` and `[consumer]`.
    pub services: BTreeMap<String, ServiceConfig>,
}

/// Dubbo's `token` setting as written: `true`, `false`, or the token (text or a number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenSetting {
    /// `true` (a random token) or `false` (none).
    Flag(bool),
    /// A numeric token, such as `123456`.
    Number(i64),
    /// A token, or `"true"` / `"false"` as text.
    Text(String),
}

impl TokenSetting {
    /// The token this setting asks for (`None`: no token).
    pub fn token(&self) -> Option<crate::server::Token> {
        match self {
            TokenSetting::Flag(true) => Some(crate::server::Token::Random),
            TokenSetting::Flag(false) => None,
            TokenSetting::Number(n) => Some(crate::server::Token::Fixed(n.to_string())),
            TokenSetting::Text(text) => crate::server::Token::parse(text),
        }
    }
}

/// `[application]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ApplicationConfig {
    /// `application.name`: announced in registry URLs.
    pub name: Option<String>,
}

/// `[registry]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// `registry.address`: `memory://NAME`, `file:///DIR`, `zookeeper://HOST:PORT`,
    /// `etcd://HOST:PORT` (see `registry::connect`).
    pub address: Option<String>,
}

/// `[protocols.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProtocolConfig {
    /// `protocols.NAME.host`: the address to bind (default 0.0.0.0).
    pub host: Option<String>,
    /// `protocols.NAME.port`: the port to bind (0: any free one).
    pub port: Option<u16>,
    /// `protocols.NAME.ssl-enabled`: serve this protocol over TLS with `[ssl]`.
    #[serde(rename = "ssl-enabled")]
    pub ssl_enabled: Option<bool>,
    /// `protocols.NAME.payload`: the largest message accepted, in bytes (Dubbo's name).
    pub payload: Option<u32>,
}

impl ProtocolConfig {
    /// `host:port` to bind, from the defaults `0.0.0.0` and `port`.
    pub fn bind_address(&self, default_port: u16) -> String {
        let host = self.host.as_deref().unwrap_or("0.0.0.0");
        let port = self.port.unwrap_or(default_port);
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

/// `[provider]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// `provider.timeout` (ms): announced in the registry URLs, as Dubbo does.
    pub timeout: Option<u64>,
    /// `provider.token`: `true` for a random token, any other value for that token.
    pub token: Option<TokenSetting>,
    /// `provider.executes`: concurrent calls per method on this provider, for methods
    /// without an `#[rpc(executes)]` or a service section's `executes`.
    pub executes: Option<u32>,
    /// `provider.weight`: announced weight (default 100).
    pub weight: Option<u32>,
    /// `provider.accesslog`: log one line per call (`rpc::access`).
    pub accesslog: Option<bool>,
    /// `provider.shutdown-timeout` (ms): how long shutdown drains calls (default 10 000).
    #[serde(rename = "shutdown-timeout")]
    pub shutdown_timeout: Option<u64>,
    /// `provider.allow`: addresses and CIDR ranges allowed to connect (empty: any).
    pub allow: Vec<String>,
    /// `provider.deny`: addresses and CIDR ranges refused, over `allow`.
    pub deny: Vec<String>,
}

/// `[consumer]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// `consumer.timeout` (ms): a call's default timeout (default 1000).
    pub timeout: Option<u64>,
    /// `consumer.retries`: failover retries (default 2).
    pub retries: Option<u32>,
    /// `consumer.loadbalance`: `random`, `roundrobin`, `leastactive`, ...
    pub loadbalance: Option<String>,
    /// `consumer.cluster`: `failover`, `failfast`, `forking`, ...
    pub cluster: Option<String>,
    /// `consumer.actives`: calls of a method in flight to one provider; more wait for a
    /// slot within their deadline.
    pub actives: Option<u32>,
    /// `consumer.serialization`: `bincode` or `json`.
    pub serialization: Option<String>,
}

/// `[ssl]`, with Dubbo's key names (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct SslConfig {
    /// The provider's certificate chain.
    pub server_key_cert_chain_path: Option<PathBuf>,
    /// The provider's private key.
    pub server_private_key_path: Option<PathBuf>,
    /// CAs whose client certificates the provider accepts; set, it requires one.
    pub server_trust_cert_collection_path: Option<PathBuf>,
    /// The consumer's certificate chain (mutual TLS).
    pub client_key_cert_chain_path: Option<PathBuf>,
    /// The consumer's private key (mutual TLS).
    pub client_private_key_path: Option<PathBuf>,
    /// CAs the consumer trusts for provider certificates; set, consumers dial TLS.
    pub client_trust_cert_collection_path: Option<PathBuf>,
    /// The name provider certificates are checked against, instead of the address's host.
    pub server_name: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `admin.address`: where the admin endpoint listens (`AdminBuilder::config` in the
    /// `admin` crate). Unset: no admin endpoint unless code starts one.
    pub address: Option<String>,
    /// `admin.token`: the bearer token of the admin endpoint's `POST` routes.
    pub token: Option<String>,
}

/// `[access-log]`: where access log lines go besides the `rpc::access` target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessLogConfig {
    /// A directory for log files (unset: only the subscriber's own output).
    pub dir: Option<PathBuf>,
    /// `daily`, `hourly`, `never`, or `size:BYTES` (K, M, G suffixes: `size:64M`).
    pub rotation: Option<String>,
    /// How many files to keep (0: all).
    pub keep: Option<usize>,
}

/// `[services."NAME"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The version to serve or call.
    pub version: Option<String>,
    /// Consumer timeout (ms) of this service's calls.
    pub timeout: Option<u64>,
    /// Failover retries.
    pub retries: Option<u32>,
    /// Load balancer name.
    pub loadbalance: Option<String>,
    /// Cluster mode name.
    pub cluster: Option<String>,
    /// This service's token (`true`: random; `false`: none even if the provider has one).
    pub token: Option<TokenSetting>,
    /// Addresses allowed to call this service (checked per call).
    pub allow: Vec<String>,
    /// Addresses refused for this service.
    pub deny: Vec<String>,
    /// Concurrent calls per method of this service on the provider (weaker than the
    /// method's `#[rpc(executes)]`).
    pub executes: Option<u32>,
    /// Calls of a method in flight per provider on the consumer.
    pub actives: Option<u32>,
    /// `[services."NAME".methods.METHOD]`; a method the service does not have is an
    /// error when the client is built or the server binds.
    pub methods: BTreeMap<String, MethodConfig>,
}

/// `[services."NAME".methods.METHOD]`: per-method settings, weaker than the method's
/// `#[rpc(...)]` attribute and stronger than the service's and `[provider]`/`[consumer]`
/// settings, whatever set those.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MethodConfig {
    /// Timeout (ms).
    pub timeout: Option<u64>,
    /// Failover retries.
    pub retries: Option<u32>,
    /// Load balancer name.
    pub loadbalance: Option<String>,
    /// Cluster mode name.
    pub cluster: Option<String>,
    /// Concurrent calls on the provider (Dubbo's `executes`).
    pub executes: Option<u32>,
    /// Calls in flight per provider on the consumer (Dubbo's `actives`).
    pub actives: Option<u32>,
    /// Permits per second on the provider (Dubbo's `tps`), a token bucket.
    pub tps: Option<u32>,
}

/// Every leaf key of the fixed sections, dotted (`registry.address`), for environment
/// names and for suggestions.
const KEYS: &[&str] = &[
    "application.name",
    "registry.address",
    "protocols.tcp.host",
    "protocols.tcp.port",
    "protocols.tcp.ssl-enabled",
    "protocols.tcp.payload",
    "protocols.http2.host",
    "protocols.http2.port",
    "protocols.http2.ssl-enabled",
    "protocols.http2.payload",
    "provider.timeout",
    "provider.token",
    "provider.executes",
    "provider.weight",
    "provider.accesslog",
    "provider.shutdown-timeout",
    "provider.allow",
    "provider.deny",
    "consumer.timeout",
    "consumer.retries",
    "consumer.loadbalance",
    "consumer.cluster",
    "consumer.actives",
    "consumer.serialization",
    "ssl.server-key-cert-chain-path",
    "ssl.server-private-key-path",
    "ssl.server-trust-cert-collection-path",
    "ssl.client-key-cert-chain-path",
    "ssl.client-private-key-path",
    "ssl.client-trust-cert-collection-path",
    "ssl.server-name",
    "admin.address",
    "admin.token",
    "access-log.dir",
    "access-log.rotation",
    "access-log.keep",
];

/// `registry.address` as an environment variable: `RPC_REGISTRY_ADDRESS`.
pub fn env_name(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    name.extend(key.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

impl Config {
    /// The file at `path` (YAML when it ends in `.yaml` or `.yml`, else TOML),
    /// overridden by the environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        Config::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with these environment variables instead of the process's.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::Config(format!(
                "configuration file {} not found",
                path.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()));
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let figment = if yaml {
            figment.merge(Yaml::file_exact(path))
        } else {
            figment.merge(Toml::file_exact(path))
        };
        extract(with_env(figment, env)?)
    }

    /// Only the environment over the defaults (no file).
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let figment = Figment::from(Serialized::defaults(Config::default()));
        extract(with_env(figment, env)?)
    }

    /// TOML text, overridden by nothing (for tests and embedded defaults).
    pub fn from_toml(text: &str) -> Result<Config> {
        extract(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)))
    }

    /// YAML text, overridden by nothing.
    pub fn from_yaml(text: &str) -> Result<Config> {
        extract(Figment::from(Serialized::defaults(Config::default())).merge(Yaml::string(text)))
    }

    /// The section of `service`, if the file has one.
    pub fn service(&self, service: &str) -> Option<&ServiceConfig> {
        self.services.get(service)
    }

    /// The `[protocols.NAME]` section, or an empty one.
    pub fn protocol(&self, name: &str) -> ProtocolConfig {
        self.protocols.get(name).cloned().unwrap_or_default()
    }
}

/// Adds the `RPC_*` variables that name a known key. A variable in a known section with
/// an unknown key is an error naming the nearest valid variable; variables of other
/// sections are left alone (other tools use the prefix too, such as test settings).
fn with_env(figment: Figment, env: impl IntoIterator<Item = (String, String)>) -> Result<Figment> {
    let known: Vec<(String, &str)> = KEYS.iter().map(|key| (env_name(key), *key)).collect();
    let sections: Vec<String> = KEYS
        .iter()
        .filter_map(|key| key.split('.').next())
        .map(|section| env_name(section) + "_")
        .collect();
    let mut figment = figment;
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (name, value) in env {
        match known.iter().find(|(env, _)| *env == name) {
            Some((_, key)) => figment = figment.merge(EnvVar { name, key, value }),
            None if sections
                .iter()
                .any(|section| name.starts_with(section.as_str())) =>
            {
                let names: Vec<&str> = known.iter().map(|(env, _)| env.as_str()).collect();
                return Err(Error::Config(format!(
                    "unknown environment variable {name}{}",
                    suggest(&name, &names)
                )));
            }
            None => {}
        }
    }
    Ok(figment)
}

/// One environment variable as a figment provider, so errors name it as the source.
struct EnvVar {
    name: String,
    key: &'static str,
    value: String,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(
        &self,
    ) -> std::result::Result<
        figment::value::Map<figment::Profile, figment::value::Dict>,
        figment::Error,
    > {
        // Read as figment reads the environment: numbers, booleans and `[a, b]` arrays
        // are typed, anything else is a string.
        let value: figment::value::Value = match self.value.parse() {
            Ok(value) => value,
            Err(never) => match never {},
        };
        let dict = match figment::util::nest(self.key, value) {
            figment::value::Value::Dict(_, dict) => dict,
            _ => figment::value::Dict::new(),
        };
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// The configuration in `figment`, with errors worded for people: the key, the nearest
/// valid key for an unknown one, and where the value came from.
fn extract(figment: Figment) -> Result<Config> {
    figment.extract::<Config>().map_err(|errors| {
        let messages: Vec<String> = errors.into_iter().map(|error| describe(&error)).collect();
        Error::Config(messages.join("; "))
    })
}

fn describe(error: &figment::Error) -> String {
    let source = error
        .metadata
        .as_ref()
        .map(|metadata| match &metadata.source {
            Some(source) => format!(" in {source}"),
            None => format!(" in {}", metadata.name),
        })
        .unwrap_or_default();
    let at = error.path.join(".");
    match &error.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // The path may already end with the unknown key itself.
            let parent = match error.path.split_last() {
                Some((last, parent)) if last == field => parent,
                _ => &error.path[..],
            };
            let at = parent.join(".");
            let key = if at.is_empty() {
                field.clone()
            } else {
                format!("{at}.{field}")
            };
            let valid: Vec<String> = expected
                .iter()
                .map(|name| {
                    if at.is_empty() {
                        (*name).to_owned()
                    } else {
                        format!("{at}.{name}")
                    }
                })
                .collect();
            let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
            format!("unknown key `{key}`{source}{}", suggest(&key, &valid))
        }
        kind => format!("key `{at}`{source}: {kind}"),
    }
}

/// Fails with [`Error::Config`] when `methods` (a service section's method sections)
/// names a method `service` does not have, naming the nearest one.
pub(crate) fn check_methods(
    service: &str,
    methods: &BTreeMap<String, MethodConfig>,
    descriptor: &crate::ServiceDescriptor,
) -> Result<()> {
    let valid: Vec<&str> = descriptor.methods.iter().map(|m| m.name).collect();
    match methods.keys().find(|name| !valid.contains(&name.as_str())) {
        None => Ok(()),
        Some(name) => Err(Error::Config(format!(
            "unknown method `services.\"{service}\".methods.{name}`: {service} has no method \
             {name}{}",
            suggest(name, &valid)
        ))),
    }
}

/// `; did you mean `NEAREST`?` when a valid name is close to `given`.
fn suggest(given: &str, valid: &[&str]) -> String {
    let nearest = valid
        .iter()
        .map(|name| (strsim::jaro_winkler(given, name), *name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((score, name)) if score > 0.8 => format!("; did you mean `{name}`?"),
        _ if valid.is_empty() => String::new(),
        _ => format!("; valid keys here: {}", valid.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("rpc-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dubbo_keys_are_read_from_the_file() {
        let path = write(
            "keys",
            r#"
            [application]
            name = "shop"
            [registry]
            address = "zookeeper://127.0.0.1:2181"
            [protocols.tcp]
            port = 20880
            [provider]
            timeout = 3000
            token = true
            executes = 10
            [consumer]
            retries = 1
            loadbalance = "roundrobin"
            cluster = "failfast"
            actives = 5
            [ssl]
            server-key-cert-chain-path = "/etc/rpc/server.crt"
            [admin]
            address = "127.0.0.1:9999"
            [services."demo.Greeter"]
            version = "1.0.0"
            [services."demo.Greeter".methods.greet]
            timeout = 200
            "#,
        );
        let config = Config::load_with_env(&path, no_env()).unwrap();
        assert_eq!(config.application.name.as_deref(), Some("shop"));
        assert_eq!(
            config.registry.address.as_deref(),
            Some("zookeeper://127.0.0.1:2181")
        );
        assert_eq!(config.protocol("tcp").port, Some(20880));
        assert_eq!(config.provider.timeout, Some(3000));
        assert_eq!(config.provider.token, Some(TokenSetting::Flag(true)));
        assert_eq!(config.provider.executes, Some(10));
        assert_eq!(config.consumer.retries, Some(1));
        assert_eq!(config.consumer.actives, Some(5));
        assert_eq!(
            config.ssl.server_key_cert_chain_path.as_deref(),
            Some(Path::new("/etc/rpc/server.crt"))
        );
        assert_eq!(config.admin.address.as_deref(), Some("127.0.0.1:9999"));
        let greeter = config.service("demo.Greeter").unwrap();
        assert_eq!(greeter.version.as_deref(), Some("1.0.0"));
        assert_eq!(greeter.methods["greet"].timeout, Some(200));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let path = write(
            "env",
            "[registry]\naddress = \"file:///tmp/a\"\n[consumer]\ntimeout = 1500\n",
        );
        let config = Config::load_with_env(
            &path,
            env(&[
                ("RPC_REGISTRY_ADDRESS", "memory://from-env"),
                ("RPC_PROTOCOLS_TCP_PORT", "20881"),
                ("RPC_PROVIDER_TOKEN", "s3cret"),
                ("RPC_PROVIDER_ALLOW", "[127.0.0.1, 10.0.0.0/8]"),
                ("RPC_SSL_SERVER_NAME", "provider.example"),
                // Not ours: other sections of the prefix are left alone.
                ("RPC_TEST_ZOOKEEPER", "127.0.0.1:1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.registry.address.as_deref(),
            Some("memory://from-env")
        );
        assert_eq!(config.consumer.timeout, Some(1500), "file value kept");
        assert_eq!(config.protocol("tcp").port, Some(20881));
        assert_eq!(
            config.provider.token,
            Some(TokenSetting::Text("s3cret".into()))
        );
        assert_eq!(config.provider.allow, ["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(config.ssl.server_name.as_deref(), Some("provider.example"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn unknown_keys_name_the_nearest_valid_one() {
        let error = Config::from_toml("[registry]\nadress = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown key `registry.adress`"), "{error}");
        assert!(
            error.contains("did you mean `registry.address`?"),
            "{error}"
        );
        let error = Config::from_toml("[consumer]\nloadbalancer = \"random\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("did you mean `consumer.loadbalance`?"),
            "{error}"
        );
        let error = Config::from_toml("[registy]\naddress = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("did you mean `registry`?"), "{error}");
        let error = Config::from_env(env(&[("RPC_REGISTRY_ADRESS", "x")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("RPC_REGISTRY_ADRESS"), "{error}");
        assert!(
            error.contains("did you mean `RPC_REGISTRY_ADDRESS`?"),
            "{error}"
        );
    }

    #[test]
    fn wrong_types_name_the_key_and_the_source() {
        let path = write("types", "[protocols.tcp]\nport = \"http\"\n");
        let error = Config::load_with_env(&path, no_env())
            .unwrap_err()
            .to_string();
        assert!(error.contains("protocols.tcp.port"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        let error = Config::from_env(env(&[("RPC_CONSUMER_RETRIES", "many")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("consumer.retries"), "{error}");
        assert!(
            error.contains("environment variable RPC_CONSUMER_RETRIES"),
            "{error}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Config::load_with_env("/nonexistent/rpc.toml", no_env())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/nonexistent/rpc.toml") && error.contains("not found"),
            "{error}"
        );
    }

    #[test]
    fn yaml_reads_the_same_keys_as_toml() {
        let yaml = Config::from_yaml(
            r#"
application:
  name: shop
registry:
  address: zookeeper://127.0.0.1:2181
protocols:
  tcp:
    port: 20880
provider:
  token: true
  executes: 10
consumer:
  actives: 5
services:
  demo.Greeter:
    version: 1.0.0
    methods:
      greet:
        timeout: 200
        tps: 50
"#,
        )
        .unwrap();
        let toml = Config::from_toml(
            r#"
            application.name = "shop"
            registry.address = "zookeeper://127.0.0.1:2181"
            protocols.tcp.port = 20880
            provider.token = true
            provider.executes = 10
            consumer.actives = 5
            [services."demo.Greeter"]
            version = "1.0.0"
            methods.greet.timeout = 200
            methods.greet.tps = 50
            "#,
        )
        .unwrap();
        assert_eq!(yaml, toml);
        let error = Config::from_yaml("consumer:\n  actives: 1\n  retires: 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("did you mean `consumer.retries`?"),
            "{error}"
        );
        let path = std::env::temp_dir().join(format!("rpc-config-{}.yml", std::process::id()));
        std::fs::write(&path, "consumer:\n  retries: many\n").unwrap();
        let error = Config::load_with_env(&path, no_env())
            .unwrap_err()
            .to_string();
        assert!(error.contains("consumer.retries"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn environment_names_follow_the_keys() {
        assert_eq!(env_name("registry.address"), "RPC_REGISTRY_ADDRESS");
        assert_eq!(
            env_name("ssl.server-key-cert-chain-path"),
            "RPC_SSL_SERVER_KEY_CERT_CHAIN_PATH"
        );
    }
}
