//! gRPC status codes, their mapping to core's [`Code`], and the `grpc-message` and
//! `grpc-timeout` header values.
//!
//! A provider writes the closest gRPC code for its [`Code`], plus a `tri-code` trailer with
//! core's own name for it: several codes share a gRPC code (a codec failure and a server
//! failure are both `INTERNAL`), and between two of our processes the trailer keeps them
//! apart. A stock gRPC peer ignores it, and its statuses come back through
//! [`GrpcStatus::to_code`].

use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use rpc_core::{Code, Error, MessageKind};

/// The trailer with core's [`Code`] name, next to `grpc-status`.
pub(crate) const TRI_CODE: &str = "tri-code";

/// A gRPC status code (the value of the `grpc-status` trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcStatus {
    /// 0: success.
    Ok,
    /// 1: the call was cancelled (typically by the caller).
    Cancelled,
    /// 2: an error with no better code (a handler's failure).
    Unknown,
    /// 3: the client sent something invalid.
    InvalidArgument,
    /// 4: the deadline passed.
    DeadlineExceeded,
    /// 5: something requested was not found.
    NotFound,
    /// 6: something to be created exists already.
    AlreadyExists,
    /// 7: the caller may not do this.
    PermissionDenied,
    /// 8: out of a resource (a message over the size limit, a quota).
    ResourceExhausted,
    /// 9: the system is not in a state for this call.
    FailedPrecondition,
    /// 10: the call was aborted (a concurrency conflict).
    Aborted,
    /// 11: a value past the valid range.
    OutOfRange,
    /// 12: no such service or method.
    Unimplemented,
    /// 13: an internal error (framing, serialization, the server itself).
    Internal,
    /// 14: the service is unavailable for now; safe to retry elsewhere.
    Unavailable,
    /// 15: unrecoverable data loss or corruption.
    DataLoss,
    /// 16: no valid credentials.
    Unauthenticated,
    /// Any other number, kept as received.
    Other(u32),
}

impl GrpcStatus {
    /// The number on the wire.
    pub fn number(self) -> u32 {
        match self {
            GrpcStatus::Ok => 0,
            GrpcStatus::Cancelled => 1,
            GrpcStatus::Unknown => 2,
            GrpcStatus::InvalidArgument => 3,
            GrpcStatus::DeadlineExceeded => 4,
            GrpcStatus::NotFound => 5,
            GrpcStatus::AlreadyExists => 6,
            GrpcStatus::PermissionDenied => 7,
            GrpcStatus::ResourceExhausted => 8,
            GrpcStatus::FailedPrecondition => 9,
            GrpcStatus::Aborted => 10,
            GrpcStatus::OutOfRange => 11,
            GrpcStatus::Unimplemented => 12,
            GrpcStatus::Internal => 13,
            GrpcStatus::Unavailable => 14,
            GrpcStatus::DataLoss => 15,
            GrpcStatus::Unauthenticated => 16,
            GrpcStatus::Other(n) => n,
        }
    }

    /// Reads a wire number; unknown ones are kept as [`GrpcStatus::Other`].
    pub fn from_number(n: u32) -> GrpcStatus {
        const ALL: [GrpcStatus; 17] = [
            GrpcStatus::Ok,
            GrpcStatus::Cancelled,
            GrpcStatus::Unknown,
            GrpcStatus::InvalidArgument,
            GrpcStatus::DeadlineExceeded,
            GrpcStatus::NotFound,
            GrpcStatus::AlreadyExists,
            GrpcStatus::PermissionDenied,
            GrpcStatus::ResourceExhausted,
            GrpcStatus::FailedPrecondition,
            GrpcStatus::Aborted,
            GrpcStatus::OutOfRange,
            GrpcStatus::Unimplemented,
            GrpcStatus::Internal,
            GrpcStatus::Unavailable,
            GrpcStatus::DataLoss,
            GrpcStatus::Unauthenticated,
        ];
        ALL.get(n as usize).copied().unwrap_or(GrpcStatus::Other(n))
    }

    /// The gRPC name (`DEADLINE_EXCEEDED`).
    pub fn name(self) -> &'static str {
        match self {
            GrpcStatus::Ok => "OK",
            GrpcStatus::Cancelled => "CANCELLED",
            GrpcStatus::Unknown => "UNKNOWN",
            GrpcStatus::InvalidArgument => "INVALID_ARGUMENT",
            GrpcStatus::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcStatus::NotFound => "NOT_FOUND",
            GrpcStatus::AlreadyExists => "ALREADY_EXISTS",
            GrpcStatus::PermissionDenied => "PERMISSION_DENIED",
            GrpcStatus::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcStatus::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcStatus::Aborted => "ABORTED",
            GrpcStatus::OutOfRange => "OUT_OF_RANGE",
            GrpcStatus::Unimplemented => "UNIMPLEMENTED",
            GrpcStatus::Internal => "INTERNAL",
            GrpcStatus::Unavailable => "UNAVAILABLE",
            GrpcStatus::DataLoss => "DATA_LOSS",
            GrpcStatus::Unauthenticated => "UNAUTHENTICATED",
            GrpcStatus::Other(_) => "UNRECOGNIZED",
        }
    }

    /// The closest gRPC status for a provider's failure `error`.
    ///
    /// A message over a limit is `RESOURCE_EXHAUSTED`, as every gRPC implementation says
    /// it; everything else goes by [`Error::code`].
    pub fn for_error(error: &Error) -> GrpcStatus {
        match error.root() {
            Error::MessageTooLarge { .. } => GrpcStatus::ResourceExhausted,
            _ => GrpcStatus::for_code(error.code()),
        }
    }

    /// The closest gRPC status for `code`.
    pub fn for_code(code: Code) -> GrpcStatus {
        match code {
            Code::Codec => GrpcStatus::Internal,
            Code::Timeout => GrpcStatus::DeadlineExceeded,
            Code::BadRequest => GrpcStatus::InvalidArgument,
            Code::BadResponse => GrpcStatus::Internal,
            Code::NotFound => GrpcStatus::Unimplemented,
            // A handler's failure: what grpc servers answer for an exception in a handler.
            Code::ServiceError => GrpcStatus::Unknown,
            Code::ServerError => GrpcStatus::Internal,
            Code::ClientError => GrpcStatus::FailedPrecondition,
            // Refused before it ran: UNAVAILABLE tells any gRPC client it may retry
            // elsewhere, which is exactly what a refusal allows.
            Code::Overloaded => GrpcStatus::Unavailable,
            // A missing or wrong token: the caller did not authenticate.
            Code::Unauthorized => GrpcStatus::Unauthenticated,
            _ => GrpcStatus::Unknown,
        }
    }

    /// What a caller reads from this status (`None` for [`GrpcStatus::Ok`]); used when the
    /// peer sent no `tri-code` (a stock gRPC server).
    pub fn to_code(self) -> Option<Code> {
        Some(match self {
            GrpcStatus::Ok => return None,
            GrpcStatus::Unknown => Code::ServiceError,
            GrpcStatus::InvalidArgument
            | GrpcStatus::FailedPrecondition
            | GrpcStatus::OutOfRange => Code::BadRequest,
            GrpcStatus::DeadlineExceeded => Code::Timeout,
            GrpcStatus::NotFound | GrpcStatus::Unimplemented => Code::NotFound,
            GrpcStatus::ResourceExhausted | GrpcStatus::Unavailable => Code::Overloaded,
            // A provider that cancels a call abandoned it, which core calls a server error.
            GrpcStatus::Cancelled | GrpcStatus::Internal | GrpcStatus::Aborted => Code::ServerError,
            GrpcStatus::DataLoss => Code::BadResponse,
            GrpcStatus::Unauthenticated => Code::Unauthorized,
            GrpcStatus::AlreadyExists | GrpcStatus::PermissionDenied | GrpcStatus::Other(_) => {
                Code::Unknown
            }
        })
    }
}

impl std::fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.number(), self.name())
    }
}

/// Core's code for its `tri-code` name (`Code::name` with `-` for spaces).
pub(crate) fn code_from_tri(name: &str) -> Option<Code> {
    const ALL: [Code; 11] = [
        Code::Codec,
        Code::Timeout,
        Code::BadRequest,
        Code::BadResponse,
        Code::NotFound,
        Code::ServiceError,
        Code::ServerError,
        Code::ClientError,
        Code::Overloaded,
        Code::Unauthorized,
        Code::Unknown,
    ];
    ALL.into_iter().find(|code| tri_name(*code) == name)
}

/// The `tri-code` value of `code`.
pub(crate) fn tri_name(code: Code) -> &'static str {
    match code {
        Code::Codec => "codec-error",
        Code::Timeout => "timeout",
        Code::BadRequest => "bad-request",
        Code::BadResponse => "bad-response",
        Code::NotFound => "not-found",
        Code::ServiceError => "service-error",
        Code::ServerError => "server-error",
        Code::ClientError => "client-error",
        Code::Overloaded => "overloaded",
        Code::Unauthorized => "unauthorized",
        _ => "unknown",
    }
}

/// The error a caller sees for a non-OK status: `tri` is the provider's `tri-code`, if it
/// sent one; `budget` the call's time budget; `peer` the provider's address.
pub(crate) fn error_for(
    status: GrpcStatus,
    tri: Option<&str>,
    message: String,
    budget: Duration,
    peer: &str,
    setting: &'static str,
) -> Error {
    let code = tri
        .and_then(code_from_tri)
        .or_else(|| status.to_code())
        .unwrap_or(Code::Unknown);
    if code == Code::Timeout {
        return Error::timeout_in_handler(budget, peer);
    }
    if let Some((size, limit)) = request_too_large(&message) {
        return Error::request_too_large(size, limit, setting);
    }
    // A stock server's status keeps its gRPC name in the text: UNKNOWN and friends are
    // all a caller has to tell them apart.
    let message = if tri.is_none() && code == Code::Unknown {
        format!("{}: {message}", status.name())
    } else {
        message
    };
    Error::from_code(code, message, budget)
}

/// Size and limit from a provider's refusal of a request over its limit, worded as
/// [`Error::MessageTooLarge`] words it, so the caller rebuilds the same error.
fn request_too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("request of ")?;
    let (size, rest) = rest.split_once(" bytes exceeds the provider's limit of ")?;
    let (limit, _) = rest.split_once(" bytes")?;
    Some((size.parse().ok()?, limit.parse().ok()?))
}

/// The text sent for a provider's failure `error`.
pub(crate) fn message_for(error: &Error) -> String {
    match error.root() {
        error @ Error::MessageTooLarge {
            kind: MessageKind::Request,
            ..
        } => error.to_string(),
        _ => error.remote_message(),
    }
}

/// Characters percent-encoded in `grpc-message`: the gRPC spec allows printable ASCII
/// except `%` unescaped.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// Longest `grpc-message` sent: HTTP/2 peers cap header lists (often at 8 KiB).
const MAX_MESSAGE: usize = 4096;

/// `message` as a `grpc-message` value: percent-encoded UTF-8, cut at a character boundary.
pub fn encode_message(message: &str) -> String {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    utf8_percent_encode(&message[..end], GRPC_MESSAGE).to_string()
}

/// A `grpc-message` value as text; invalid escapes and bytes are kept lossily, as the spec
/// asks of receivers.
pub fn decode_message(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => percent_decode_str(text).decode_utf8_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}

/// Reads a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`).
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value: the finest unit that fits in 8 digits, rounded up
/// (a provider stopping a moment after its caller gave up is harmless; one stopping
/// early would fail calls that had time left); never zero.
pub fn format_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos().max(1);
    for (unit, per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ] {
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX}H")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_code_survives_the_trailer_pair() {
        for code in [
            Code::Codec,
            Code::Timeout,
            Code::BadRequest,
            Code::BadResponse,
            Code::NotFound,
            Code::ServiceError,
            Code::ServerError,
            Code::ClientError,
            Code::Overloaded,
            Code::Unauthorized,
            Code::Unknown,
        ] {
            assert_eq!(code_from_tri(tri_name(code)), Some(code));
            let status = GrpcStatus::for_code(code);
            assert_ne!(status, GrpcStatus::Ok);
            assert_eq!(GrpcStatus::from_number(status.number()), status);
        }
    }

    #[test]
    fn stock_statuses_map_to_the_closest_code() {
        for (n, code) in [
            (1, Code::ServerError),
            (2, Code::ServiceError),
            (3, Code::BadRequest),
            (4, Code::Timeout),
            (5, Code::NotFound),
            (7, Code::Unknown),
            (8, Code::Overloaded),
            (12, Code::NotFound),
            (13, Code::ServerError),
            (14, Code::Overloaded),
            (16, Code::Unauthorized),
            (99, Code::Unknown),
        ] {
            assert_eq!(GrpcStatus::from_number(n).to_code(), Some(code), "{n}");
        }
        assert_eq!(GrpcStatus::Ok.to_code(), None);
    }

    #[test]
    fn timeouts_parse_and_format() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        for bad in [&b""[..], b"m", b"123456789m", b"10x", b"-1m", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
        assert_eq!(format_timeout(Duration::from_millis(1000)), "1000000u");
        assert_eq!(format_timeout(Duration::ZERO), "1n");
    }

    #[test]
    fn messages_are_percent_encoded() {
        let text = "bad name: 100% wrong\nnext line, é";
        let encoded = encode_message(text);
        assert!(encoded.is_ascii() && !encoded.contains('\n'), "{encoded}");
        assert_eq!(decode_message(encoded.as_bytes()), text);
        assert_eq!(decode_message(b"50%zz"), "50%zz");
    }

    proptest! {
        #[test]
        fn any_timeout_round_trips_no_shorter(ms in 0u64..10_000_000_000) {
            let timeout = Duration::from_millis(ms);
            let back = parse_timeout(format_timeout(timeout).as_bytes()).unwrap();
            prop_assert!(back >= timeout);
        }

        #[test]
        fn any_header_value_parses_or_not_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse_timeout(&value);
            let _ = decode_message(&value);
        }
    }
}
