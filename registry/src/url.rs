//! Dubbo-style provider URLs:
//! `tcp://10.0.0.5:20880/demo.Greeter?methods=greet,charge&weight=100&side=provider`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Default weight of a provider, as in Dubbo.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One provider of one service. Parameters keep their order so the text form is stable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderUrl {
    scheme: String,
    address: String,
    service: String,
    params: BTreeMap<String, String>,
}

impl ProviderUrl {
    /// A URL for `service` served over `scheme` at `address` (`host:port`).
    pub fn new(scheme: &str, address: &str, service: &str) -> ProviderUrl {
        ProviderUrl {
            scheme: scheme.to_owned(),
            address: address.to_owned(),
            service: service.to_owned(),
            params: BTreeMap::new(),
        }
    }

    /// Adds or replaces the parameter `key`.
    pub fn with_param(mut self, key: &str, value: &str) -> ProviderUrl {
        self.params.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The transport scheme (`tcp`, `h2`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// `host:port` of the provider.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The `weight` parameter, [`DEFAULT_WEIGHT`] when absent or unreadable.
    pub fn weight(&self) -> u32 {
        self.param("weight")
            .and_then(|w| w.parse().ok())
            .unwrap_or(DEFAULT_WEIGHT)
    }
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme, self.address, self.service)?;
        for (i, (k, v)) in self.params.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl FromStr for ProviderUrl {
    type Err = Error;

    /// Parses text that came from a registry (so from the network): every part is
    /// checked, nothing panics.
    fn from_str(text: &str) -> Result<ProviderUrl, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: text.chars().take(256).collect(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| invalid("missing scheme"))?;
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("scheme must be letters and digits"));
        }
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (address, service) = location
            .split_once('/')
            .ok_or_else(|| invalid("missing /service"))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid("address must be host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid("address must be host:port with a port 0-65535"));
        }
        if service.is_empty() || service.contains('/') {
            return Err(invalid("service must be one non-empty path segment"));
        }
        let mut params = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.is_empty() {
                return Err(invalid("empty parameter name"));
            }
            params.insert(k.to_owned(), v.to_owned());
        }
        Ok(ProviderUrl {
            scheme: scheme.to_owned(),
            address: address.to_owned(),
            service: service.to_owned(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_dubbo_style_url_parses() {
        let url: ProviderUrl =
            "tcp://10.0.0.5:20880/demo.Greeter?application=demo&methods=greet,charge&weight=50&side=provider"
                .parse()
                .unwrap();
        assert_eq!(url.scheme(), "tcp");
        assert_eq!(url.address(), "10.0.0.5:20880");
        assert_eq!(url.service(), "demo.Greeter");
        assert_eq!(url.param("methods"), Some("greet,charge"));
        assert_eq!(url.weight(), 50);
    }

    #[test]
    fn malformed_urls_are_typed_errors() {
        for bad in [
            "",
            "10.0.0.5:20880/x",
            "tcp://10.0.0.5/x",
            "tcp://10.0.0.5:99999/x",
            "tcp://:1/x",
            "tcp://h:1",
            "tcp://h:1/",
            "tcp://h:1/a/b",
            "tcp://h:1/a?=v",
            "t p://h:1/a",
        ] {
            assert!(
                matches!(bad.parse::<ProviderUrl>(), Err(Error::InvalidUrl { .. })),
                "{bad:?} parsed"
            );
        }
    }

    proptest! {
        #[test]
        fn urls_round_trip_through_text(port in any::<u16>(), service in "[a-zA-Z][a-zA-Z0-9.]{0,30}", params in proptest::collection::btree_map("[a-z]{1,8}", "[a-z0-9,.]{0,12}", 0..5)) {
            let mut url = ProviderUrl::new("tcp", &format!("127.0.0.1:{port}"), &service);
            for (k, v) in &params {
                url = url.with_param(k, v);
            }
            let back: ProviderUrl = url.to_string().parse().map_err(|e: Error| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, url);
        }

        #[test]
        fn any_text_parses_or_fails_without_panicking(text in ".{0,200}") {
            let _ = text.parse::<ProviderUrl>();
        }
    }
}
