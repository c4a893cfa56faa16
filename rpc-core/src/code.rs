//! The transport-neutral outcome of a failed call.
//!
//! Core speaks only [`Code`]; each transport maps it to its own wire: the TCP transport to
//! Dubbo's status byte, an HTTP/2 transport to gRPC status codes. A caller matches on
//! [`crate::Error`] variants; `Code` is what crosses the wire in between.

use crate::Error;
use crate::error::MessageKind;

/// Why a provider could not answer a call with a result, as in tonic's `Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The provider could not decode the arguments or encode the result.
    Codec,
    /// The deadline passed before the work finished.
    Timeout,
    /// The request could not be read or is not allowed (unknown codec, malformed head,
    /// message too large).
    BadRequest,
    /// The response could not be read or produced (a result too large to send).
    BadResponse,
    /// No such service, version or method on the provider.
    NotFound,
    /// The handler failed (it panicked).
    ServiceError,
    /// The provider failed outside the handler, or abandoned the call.
    ServerError,
    /// The caller failed.
    ClientError,
    /// The provider refused the call before running it (overloaded, shutting down).
    Overloaded,
    /// The provider refused the caller: a missing or wrong token, or an address not
    /// allowed to call the service.
    Unauthorized,
    /// Any status this side does not know; the message says more.
    Unknown,
}

impl Code {
    /// A short lower-case name (`not found`), used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Code::Codec => "codec error",
            Code::Timeout => "timeout",
            Code::BadRequest => "bad request",
            Code::BadResponse => "bad response",
            Code::NotFound => "not found",
            Code::ServiceError => "service error",
            Code::ServerError => "server error",
            Code::ClientError => "client error",
            Code::Overloaded => "overloaded",
            Code::Unauthorized => "unauthorized",
            Code::Unknown => "unknown",
        }
    }

    /// The code a provider answers with when serving a call failed with `error`.
    pub fn for_error(error: &Error) -> Code {
        match error {
            Error::Codec { .. } => Code::Codec,
            Error::Protocol(_) => Code::BadRequest,
            Error::MessageTooLarge {
                kind: MessageKind::Response,
                ..
            } => Code::BadResponse,
            Error::MessageTooLarge { .. } => Code::BadRequest,
            Error::Timeout(_) | Error::TimeoutIn { .. } => Code::Timeout,
            Error::ServiceNotFound { .. } | Error::MethodNotFound { .. } => Code::NotFound,
            Error::Remote { code, .. } => *code,
            Error::Rejected(_) => Code::Overloaded,
            Error::Unauthorized(_) => Code::Unauthorized,
            Error::Handler(_) => Code::ServiceError,
            _ => Code::ServerError,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
