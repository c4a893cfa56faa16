//! Registry URLs: `zookeeper://127.0.0.1:2181,127.0.0.1:2182?session_timeout_ms=6000`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// Where a registry is, parsed from its URL.
///
/// `scheme://LOCATION[?key=value&...]`, where the location is a comma-separated list of
/// `host:port` (ZooKeeper, etcd), a directory (`file:///tmp/rpc`), or a name (`memory://`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryAddress {
    scheme: String,
    location: String,
    params: BTreeMap<String, String>,
}

impl RegistryAddress {
    /// `memory://`: the unnamed in-process registry.
    pub(crate) fn memory() -> RegistryAddress {
        RegistryAddress {
            scheme: "memory".to_owned(),
            location: String::new(),
            params: BTreeMap::new(),
        }
    }

    /// `memory`, `file`, `zookeeper` or `etcd`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Everything between `://` and `?`: the hosts, the directory or the name.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The `host:port` entries of the location.
    pub fn hosts(&self) -> Vec<&str> {
        self.location.split(',').filter(|h| !h.is_empty()).collect()
    }

    /// A query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The parameter `key` read as milliseconds, `default` when absent.
    pub fn millis(&self, key: &str, default: Duration) -> Result<Duration, Error> {
        match self.param(key) {
            None => Ok(default),
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| Error::InvalidUrl {
                    url: self.to_string(),
                    reason: format!("{key} must be a positive number of milliseconds"),
                }),
        }
    }
}

impl fmt::Display for RegistryAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.location)?;
        crate::url::write_query(f, &self.params)
    }
}

impl FromStr for RegistryAddress {
    type Err = Error;

    fn from_str(text: &str) -> Result<RegistryAddress, Error> {
        let invalid = |reason: &str| crate::url::invalid(text, reason);
        let (scheme, location, params) = crate::url::split_url(text)?;
        let address = RegistryAddress {
            scheme: scheme.to_ascii_lowercase(),
            location: location.to_owned(),
            params,
        };
        if matches!(address.scheme(), "zookeeper" | "etcd") {
            if address.hosts().is_empty() {
                return Err(invalid("needs at least one host:port"));
            }
            for host in address.hosts() {
                let port = host.rsplit_once(':').map(|(_, port)| port);
                if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                    return Err(invalid("each host must be host:port"));
                }
            }
        }
        if address.scheme() == "file" && address.location.is_empty() {
            return Err(invalid(
                "file:// needs a directory, as in file:///tmp/rpc-registry",
            ));
        }
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls_parse() {
        let zk: RegistryAddress =
            "zookeeper://127.0.0.1:2181,127.0.0.1:2182?session_timeout_ms=4000"
                .parse()
                .unwrap();
        assert_eq!(zk.scheme(), "zookeeper");
        assert_eq!(zk.hosts(), ["127.0.0.1:2181", "127.0.0.1:2182"]);
        assert_eq!(
            zk.millis("session_timeout_ms", Duration::ZERO).unwrap(),
            Duration::from_secs(4)
        );
        let file: RegistryAddress = "file:///tmp/x".parse().unwrap();
        assert_eq!(file.location(), "/tmp/x");
        let memory: RegistryAddress = "memory://".parse().unwrap();
        assert_eq!(memory.location(), "");
    }

    #[test]
    fn bad_registry_urls_are_typed_errors() {
        for bad in [
            "",
            "127.0.0.1:2181",
            "zookeeper://",
            "zookeeper://host",
            "etcd://h:99999",
            "file://",
            "a b://x",
            "memory://x?=1",
        ] {
            assert!(
                matches!(
                    bad.parse::<RegistryAddress>(),
                    Err(Error::InvalidUrl { .. })
                ),
                "{bad:?} parsed"
            );
        }
        let bad_number: RegistryAddress = "etcd://h:1?lease_ttl_ms=soon".parse().unwrap();
        assert!(bad_number.millis("lease_ttl_ms", Duration::ZERO).is_err());
    }
}
