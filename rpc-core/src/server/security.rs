//! Who may call a provider: Dubbo's token, and IP allow/deny lists.
//!
//! Both are checked before a call's arguments are decoded: the IP lists of the whole
//! server when a connection is accepted ([`Dispatcher::admits_connection`]), a service's
//! own lists and its token per call, in core's admission path, whatever the transport.
//!
//! [`Dispatcher::admits_connection`]: super::Dispatcher::admits_connection

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::log::RateLimited;

use ipnet::IpNet;
use subtle::ConstantTimeEq;

use crate::{Context, Error, Result};

/// The attachment a consumer sends its token in (Dubbo's key).
pub const TOKEN_KEY: &str = "token";

/// The registry URL parameter a provider publishes its token in (Dubbo's key).
pub const TOKEN_PARAM: &str = "token";

/// A provider's token, as Dubbo's `token` setting: `true` draws a random one at start-up,
/// any other value is the token itself.
///
/// The provider publishes it in its registry URL; consumers that found the provider there
/// attach it to every call. It keeps out callers that did not go through the registry (a
/// port scanner, a consumer given a stale address list): whoever can read the registry can
/// read the token, so protect the registry too, and add TLS against eavesdroppers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Token {
    /// A random token drawn when the server is built (128 bits from the OS, as hex).
    Random,
    /// This token.
    Fixed(String),
}

impl Token {
    /// Reads Dubbo's setting: `true` is [`Token::Random`], `false` or empty no token, any
    /// other value a [`Token::Fixed`].
    pub fn parse(setting: &str) -> Option<Token> {
        match setting.trim() {
            "" | "false" => None,
            "true" => Some(Token::Random),
            token => Some(Token::Fixed(token.to_owned())),
        }
    }

    /// The token's value: the fixed one, or a fresh random one.
    pub(crate) fn resolve(&self) -> Result<Arc<str>> {
        match self {
            Token::Fixed(token) => Ok(token.as_str().into()),
            Token::Random => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(|error| {
                    Error::Config(format!("cannot draw a random token: {error}"))
                })?;
                Ok(bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into())
            }
        }
    }
}

/// IP allow and deny rules: single addresses (`10.0.0.5`, `::1`) and CIDR ranges
/// (`10.0.0.0/8`, `fd00::/8`).
///
/// A deny rule wins over an allow rule; with allow rules, an address must match one of
/// them; with none, every address not denied passes. IPv4 peers seen through an IPv6
/// socket (`::ffff:10.0.0.5`) match IPv4 rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpRules {
    /// No rules: every address passes.
    pub fn new() -> IpRules {
        IpRules::default()
    }

    /// Adds an allow rule; fails with [`Error::Config`] naming a rule that is neither an
    /// address nor a CIDR range.
    pub fn allow(mut self, rule: &str) -> Result<IpRules> {
        self.allow.push(parse_rule(rule)?);
        Ok(self)
    }

    /// Adds a deny rule; fails like [`IpRules::allow`].
    pub fn deny(mut self, rule: &str) -> Result<IpRules> {
        self.deny.push(parse_rule(rule)?);
        Ok(self)
    }

    /// True when `ip` may connect or call.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

fn parse_rule(rule: &str) -> Result<IpNet> {
    let rule = rule.trim();
    if let Ok(net) = IpNet::from_str(rule) {
        return Ok(net.trunc());
    }
    IpAddr::from_str(rule).map(IpNet::from).map_err(|_| {
        Error::Config(format!(
            "invalid IP rule {rule:?}: expected an address (10.0.0.5, ::1) or a CIDR range \
             (10.0.0.0/8, fd00::/8)"
        ))
    })
}

/// What a server counted of the callers it refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusals {
    /// Calls refused for a missing or wrong token.
    pub bad_token: u64,
    /// Calls refused by a service's IP rules.
    pub denied_calls: u64,
    /// Connections refused by the server's IP rules.
    pub denied_connections: u64,
}

/// A service's own settings, over the server's.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceRules {
    /// `Some(None)`: this service takes no token even if the server has one.
    pub(crate) token: Option<Option<Token>>,
    pub(crate) ips: Option<IpRules>,
}

/// The security settings a [`super::ServerBuilder`] collects.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecuritySettings {
    pub(crate) token: Option<Token>,
    pub(crate) ips: IpRules,
    pub(crate) services: HashMap<String, ServiceRules>,
}

impl SecuritySettings {
    /// The checks of a server, with tokens drawn; `None` when nothing is configured, so a
    /// server without security pays nothing per call.
    pub(crate) fn build(&self) -> Result<Option<Arc<Security>>> {
        if self.token.is_none() && self.ips.is_empty() && self.services.is_empty() {
            return Ok(None);
        }
        let token = self.token.as_ref().map(Token::resolve).transpose()?;
        let mut services = HashMap::new();
        for (name, rules) in &self.services {
            let token = match &rules.token {
                None => token.clone(),
                Some(None) => None,
                Some(Some(own)) => Some(own.resolve()?),
            };
            services.insert(
                name.clone(),
                ServiceCheck {
                    token,
                    ips: rules.ips.clone().filter(|ips| !ips.is_empty()),
                },
            );
        }
        Ok(Some(Arc::new(Security {
            ips: self.ips.clone(),
            default: ServiceCheck { token, ips: None },
            services,
            bad_token: AtomicU64::new(0),
            denied_calls: AtomicU64::new(0),
            denied_connections: AtomicU64::new(0),
            log: RateLimited::new(),
        })))
    }
}

struct ServiceCheck {
    token: Option<Arc<str>>,
    ips: Option<IpRules>,
}

/// The checks of a running server, shared by its dispatcher and its registration.
pub(crate) struct Security {
    ips: IpRules,
    default: ServiceCheck,
    services: HashMap<String, ServiceCheck>,
    bad_token: AtomicU64,
    denied_calls: AtomicU64,
    denied_connections: AtomicU64,
    /// Refusals are what a scan or a flood produces: one line per second at most.
    log: RateLimited,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("ips", &self.ips)
            .field("refusals", &self.refusals())
            .finish_non_exhaustive()
    }
}

impl Security {
    fn check_of(&self, service: &str) -> &ServiceCheck {
        if self.services.is_empty() {
            return &self.default;
        }
        self.services.get(service).unwrap_or(&self.default)
    }

    /// The token `service` announces and requires, if any.
    pub(crate) fn token_of(&self, service: &str) -> Option<&str> {
        self.check_of(service).token.as_deref()
    }

    /// The server's IP rules, checked when a connection is accepted.
    pub(crate) fn admits_connection(&self, peer: SocketAddr) -> bool {
        if self.ips.permits(peer.ip()) {
            return true;
        }
        self.denied_connections.fetch_add(1, Ordering::Relaxed);
        self.log.warn(|held_back| {
            tracing::warn!(target: "rpc::security", %peer, held_back, "connection refused by the server's IP rules");
        });
        false
    }

    /// The service's IP rules and token, checked per call before the arguments are decoded.
    pub(crate) fn admits_call(&self, service: &str, method: &str, context: &Context) -> Result<()> {
        let check = self.check_of(service);
        if let Some(ips) = &check.ips {
            let permitted = context
                .peer_addr()
                .is_none_or(|peer| ips.permits(peer.ip()));
            if !permitted {
                self.denied_calls.fetch_add(1, Ordering::Relaxed);
                let peer = context.peer_addr();
                self.log.warn(|held_back| {
                    tracing::warn!(target: "rpc::security", ?peer, service, method, held_back, "call refused by the service's IP rules");
                });
                return Err(Error::Unauthorized(format!(
                    "this address may not call {service}"
                )));
            }
        }
        if let Some(expected) = &check.token {
            let given = context.attachment(TOKEN_KEY);
            // Constant time in the token's bytes: how long a refusal takes tells nothing
            // about how much of a guess was right.
            let valid =
                given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())));
            if !valid {
                self.bad_token.fetch_add(1, Ordering::Relaxed);
                let peer = context.peer_addr();
                let missing = given.is_none();
                self.log.warn(|held_back| {
                    tracing::warn!(target: "rpc::security", ?peer, service, method, missing, held_back, "call refused: bad token");
                });
                let what = if missing { "missing" } else { "invalid" };
                return Err(Error::Unauthorized(format!(
                    "{what} token for {service}.{method}; consumers find the token in the \
                     provider's registry URL"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn refusals(&self) -> Refusals {
        Refusals {
            bad_token: self.bad_token.load(Ordering::Relaxed),
            denied_calls: self.denied_calls.load(Ordering::Relaxed),
            denied_connections: self.denied_connections.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attachments;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_allow_lists_are_exclusive() {
        let rules = IpRules::new()
            .allow("127.0.0.0/24")
            .unwrap()
            .deny("127.0.0.3")
            .unwrap();
        assert!(rules.permits(ip("127.0.0.2")));
        assert!(!rules.permits(ip("127.0.0.3")));
        assert!(!rules.permits(ip("127.0.1.2")));
        assert!(
            rules.permits(ip("::ffff:127.0.0.2")),
            "mapped v4 matches v4 rules"
        );
        let deny_only = IpRules::new().deny("10.0.0.0/8").unwrap();
        assert!(deny_only.permits(ip("127.0.0.1")));
        assert!(!deny_only.permits(ip("10.1.2.3")));
    }

    #[test]
    fn bad_rules_name_themselves() {
        let error = IpRules::new().allow("10.0.0.300").unwrap_err().to_string();
        assert!(
            error.contains("\"10.0.0.300\"") && error.contains("CIDR"),
            "{error}"
        );
    }

    #[test]
    fn dubbo_token_settings() {
        assert_eq!(Token::parse("true"), Some(Token::Random));
        assert_eq!(Token::parse("false"), None);
        assert_eq!(Token::parse("s3cret"), Some(Token::Fixed("s3cret".into())));
        let a = Token::Random.resolve().unwrap();
        let b = Token::Random.resolve().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_are_checked_and_refusals_counted() {
        let settings = SecuritySettings {
            token: Some(Token::Fixed("abc".into())),
            ..SecuritySettings::default()
        };
        let security = settings.build().unwrap().unwrap();
        let call = |token: Option<&str>| {
            let attachments: Attachments = token.map(|t| (TOKEN_KEY, t)).into_iter().collect();
            security.admits_call("s", "m", &Context::new(attachments, None, None))
        };
        assert!(call(Some("abc")).is_ok());
        assert!(
            matches!(call(Some("abd")), Err(Error::Unauthorized(m)) if m.starts_with("invalid"))
        );
        assert!(matches!(call(None), Err(Error::Unauthorized(m)) if m.starts_with("missing")));
        assert_eq!(security.refusals().bad_token, 2);
    }
}
