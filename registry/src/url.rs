//! Dubbo-style provider URLs:
//! `tcp://10.0.0.5:20880/demo.Greeter?methods=greet,charge&weight=100&side=provider`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::Error;

/// Default weight of a provider, as in Dubbo.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One provider of one service. Parameters keep their order so the text form is stable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    /// True for a consumer's URL (`side=consumer`), which a registry files under the
    /// service's `consumers` and never lists as a provider.
    pub fn is_consumer(&self) -> bool {
        self.param("side") == Some("consumer")
    }

    /// The `version` parameter; empty when the service is not versioned.
    pub fn version(&self) -> &str {
        self.param("version").unwrap_or("")
    }

    /// When the provider started (the `timestamp` parameter, ms since the Unix epoch), if
    /// given and readable.
    pub fn start(&self) -> Option<SystemTime> {
        let ms: u64 = self.param("timestamp")?.parse().ok()?;
        UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    }

    /// The codecs the provider accepts (the `serialization` parameter, comma-separated);
    /// `None` when it does not say.
    pub fn serializations(&self) -> Option<impl Iterator<Item = &str>> {
        let list = self.param("serialization")?;
        Some(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    /// All parameters, by name.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// The URL as one path segment (`tcp%3A%2F%2F...`), the way Dubbo names a provider's
    /// node: encoded like Java's `URLEncoder`.
    pub fn to_path_segment(&self) -> String {
        path_segment(&self.to_string())
    }

    /// Parses a URL named by a path segment made by [`ProviderUrl::to_path_segment`].
    pub fn from_path_segment(segment: &str) -> Result<ProviderUrl, Error> {
        let text = decode_path_segment(segment).ok_or_else(|| Error::InvalidUrl {
            url: segment.chars().take(256).collect(),
            reason: "not a percent-encoded UTF-8 segment".to_owned(),
        })?;
        text.parse()
    }
}

/// Bytes Java's `URLEncoder` keeps as they are: letters, digits and `*-._`.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// `text` encoded as one path segment, as Dubbo encodes service names and URLs in
/// ZooKeeper paths (Java's `URLEncoder`, with `%20` for a space, which never occurs in a
/// valid URL or service name).
pub fn path_segment(text: &str) -> String {
    utf8_percent_encode(text, KEPT).to_string()
}

/// The text of a path segment; `+` is a space, as Java's `URLDecoder` reads it. `None`
/// when the bytes are not UTF-8.
pub(crate) fn decode_path_segment(segment: &str) -> Option<String> {
    let plus_as_space = segment.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme, self.address, self.service)?;
        write_query(f, &self.params)
    }
}

/// Writes `?k=v&k=v` (nothing for no parameters).
pub(crate) fn write_query(
    f: &mut fmt::Formatter<'_>,
    params: &BTreeMap<String, String>,
) -> fmt::Result {
    for (i, (k, v)) in params.iter().enumerate() {
        write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
    }
    Ok(())
}

/// The error for `text` (quoted up to 256 characters) being wrong because of `reason`.
pub(crate) fn invalid(text: &str, reason: &str) -> Error {
    Error::InvalidUrl {
        url: text.chars().take(256).collect(),
        reason: reason.to_owned(),
    }
}

/// `scheme://LOCATION?QUERY` split into its scheme, location and parameters, checked.
pub(crate) fn split_url(text: &str) -> Result<(&str, &str, BTreeMap<String, String>), Error> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| invalid(text, "missing scheme://"))?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(text, "scheme must be letters and digits"));
    }
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut params = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.is_empty() {
            return Err(invalid(text, "empty parameter name"));
        }
        params.insert(k.to_owned(), v.to_owned());
    }
    Ok((scheme, location, params))
}

impl FromStr for ProviderUrl {
    type Err = Error;

    /// Parses text that came from a registry (so from the network): every part is
    /// checked, nothing panics.
    fn from_str(text: &str) -> Result<ProviderUrl, Error> {
        let invalid = |reason: &str| invalid(text, reason);
        let (scheme, location, params) = split_url(text)?;
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

    #[test]
    fn path_segments_are_encoded_like_dubbo() {
        let url: ProviderUrl =
            "tcp://10.0.0.5:20880/demo.Greeter?methods=greet,charge&side=provider"
                .parse()
                .unwrap();
        // As Dubbo's URL.encode (java.net.URLEncoder) writes it.
        assert_eq!(
            url.to_path_segment(),
            "tcp%3A%2F%2F10.0.0.5%3A20880%2Fdemo.Greeter%3Fmethods%3Dgreet%2Ccharge%26side%3Dprovider"
        );
        assert_eq!(
            ProviderUrl::from_path_segment(&url.to_path_segment()).unwrap(),
            url
        );
        assert!(ProviderUrl::from_path_segment("%FF%FE").is_err());
        assert_eq!(path_segment("demo.Greeter"), "demo.Greeter");
    }

    #[test]
    fn parameters_read_as_typed_values() {
        let url: ProviderUrl =
            "tcp://h:1/a.A?version=1.0&timestamp=1000&serialization=bincode, json"
                .parse()
                .unwrap();
        assert_eq!(url.version(), "1.0");
        assert_eq!(url.start(), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(
            url.serializations().unwrap().collect::<Vec<_>>(),
            ["bincode", "json"]
        );
        let bare: ProviderUrl = "tcp://h:1/a.A?timestamp=soon".parse().unwrap();
        assert_eq!((bare.version(), bare.start()), ("", None));
        assert!(bare.serializations().is_none());
    }

    proptest! {
        #[test]
        fn path_segments_round_trip(text in ".{0,100}") {
            prop_assert_eq!(decode_path_segment(&path_segment(&text)), Some(text));
        }

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
