//! The one error type of the framework.

use std::sync::Arc;
use std::time::Duration;

use crate::Status;

/// What went wrong with a call, a connection or a configuration.
///
/// Every variant is something a caller may want to react to differently, so match on it
/// rather than on the message. Cloning is cheap: a disconnect fails every in-flight call
/// with the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The deadline passed before a response arrived (the value is the call's time budget).
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed, closed or could not be opened.
    #[error("transport error: {message}")]
    Transport {
        /// What happened, with the peer address where known.
        message: String,
        /// The I/O error behind it, if any.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },
    /// Arguments or a result could not be encoded or decoded.
    #[error("{codec} codec error: {message}")]
    Codec {
        /// The codec's name (`bincode`, `json`).
        codec: &'static str,
        /// The serializer's message.
        message: String,
    },
    /// A frame named a serialization id this side does not know.
    #[error("unknown serialization id {0}")]
    UnknownCodec(u8),
    /// A frame broke the wire protocol (bad magic, malformed head).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A frame declared a body longer than the configured limit.
    #[error("frame length {size} exceeds limit {limit}")]
    FrameTooLarge {
        /// The declared body length.
        size: u64,
        /// The configured maximum.
        limit: u32,
    },
    /// The provider does not serve this service and version.
    #[error("service not found: {service} (version {version:?})")]
    ServiceNotFound {
        /// Service name as requested.
        service: String,
        /// Version as requested.
        version: String,
    },
    /// The service exists but has no such method.
    #[error("method not found: {service}.{method}")]
    MethodNotFound {
        /// Service name as requested.
        service: String,
        /// Method name as requested.
        method: String,
    },
    /// The provider answered with a non-OK status; `message` is the provider's own text.
    #[error("remote error {status}: {message}")]
    Remote {
        /// The status byte of the response.
        status: Status,
        /// The provider's message.
        message: String,
    },
    /// The call was refused before it ran (overload, shutdown, a full buffer).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The provider abandoned the call before it finished (it shut down past its grace
    /// period); callers see it as [`Error::Remote`] with status 80 and this message.
    #[error("call cancelled: the provider stopped before it finished")]
    Cancelled,
    /// No provider is available for the service.
    #[error("no provider available for {0}")]
    NoProvider(String),
    /// A handler failed on the provider (it panicked); the caller sees it as [`Error::Remote`].
    #[error("handler failed: {0}")]
    Handler(String),
    /// A builder was given an invalid or incomplete configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// A transport error with an I/O source.
    pub fn io(message: impl Into<String>, source: std::io::Error) -> Error {
        Error::Transport {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// A transport error without an I/O source (the peer closed, the connection is gone).
    pub fn transport(message: impl Into<String>) -> Error {
        Error::Transport {
            message: message.into(),
            source: None,
        }
    }

    /// The error a caller sees for a response with a non-OK `status` and the provider's `message`.
    ///
    /// Statuses that have their own kind map to it, so `ServerTimeout` is a [`Error::Timeout`]
    /// and `ServerOverloaded` a [`Error::Rejected`] on both sides of the wire.
    pub fn from_status(status: Status, message: String, budget: Duration) -> Error {
        match status {
            Status::ClientTimeout | Status::ServerTimeout => Error::Timeout(budget),
            Status::ServerOverloaded => Error::Rejected(message),
            _ => Error::Remote { status, message },
        }
    }

    /// The text a provider sends its caller for this error, next to
    /// [`Status::for_error`]. Variants that hold the provider's own words (a handler's panic,
    /// a refusal, a relayed remote error) send them bare, so the caller's
    /// [`Error::from_status`] rebuilds the same error instead of nesting prefixes.
    pub fn remote_message(&self) -> String {
        match self {
            Error::Handler(message) | Error::Rejected(message) => message.clone(),
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
