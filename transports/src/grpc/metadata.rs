//! Custom metadata (HTTP/2 headers) as attachments, both ways.
//!
//! HTTP/2 header names are lower case, so attachment keys travel lower-cased. Headers of the
//! protocol itself (`grpc-*`, `tri-*`, `content-type`, `te`, ...) are never attachments,
//! and attachments with those names are not sent, so a caller cannot forge a deadline or a
//! status through them.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use rpc_core::{Attachments, Error, Result};

/// Headers that belong to HTTP or gRPC, not to the application.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "te",
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "expect",
    "date",
    "server",
];

/// True for a header name that is protocol, not metadata.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with("grpc-") || name.starts_with("tri-") || RESERVED.contains(&name)
}

/// The attachments in `headers`: every header that is not protocol and whose value is
/// text.
pub(crate) fn attachments(headers: &HeaderMap) -> Attachments {
    let mut attachments = Attachments::new();
    for (name, value) in headers {
        let name = name.as_str();
        if is_reserved(name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            attachments.insert(name, value);
        }
    }
    attachments
}

/// Adds `attachments` to `headers`; a key or value HTTP cannot carry fails the call
/// before it is sent, naming it.
pub(crate) fn add_attachments(attachments: &Attachments, headers: &mut HeaderMap) -> Result<()> {
    for (key, value) in attachments.iter() {
        let lower = key.to_ascii_lowercase();
        if is_reserved(&lower) {
            continue;
        }
        let name = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            Error::Protocol(format!(
                "attachment key {key:?} is not a valid HTTP/2 header name"
            ))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::Protocol(format!(
                "attachment {key:?} has a value HTTP/2 cannot carry (control characters)"
            ))
        })?;
        headers.append(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip_without_protocol_headers() {
        let sent: Attachments = [
            ("trace-id", "t-1"),
            ("Tenant", "acme"),
            ("grpc-timeout", "1S"),
        ]
        .into_iter()
        .collect();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        add_attachments(&sent, &mut headers).unwrap();
        let got = attachments(&headers);
        assert_eq!(got.get("trace-id"), Some("t-1"));
        assert_eq!(got.get("tenant"), Some("acme"));
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn keys_http_cannot_carry_are_refused() {
        let bad: Attachments = [("bad key", "v")].into_iter().collect();
        assert!(add_attachments(&bad, &mut HeaderMap::new()).is_err());
        let bad: Attachments = [("k", "line\nbreak")].into_iter().collect();
        assert!(add_attachments(&bad, &mut HeaderMap::new()).is_err());
    }
}
