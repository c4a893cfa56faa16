//! The one error type of the framework.

use std::sync::Arc;
use std::time::Duration;

use crate::Code;

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
    /// The call could not be sent: no connection to the provider could be opened, or the
    /// connection closed before the request was written. The provider never saw the call,
    /// so a cluster may retry it elsewhere whether or not it is idempotent.
    #[error("provider unavailable: {message}")]
    Unavailable {
        /// What happened, with the peer address where known.
        message: String,
        /// The I/O error behind it, if any.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },
    /// A message broke its transport's protocol (unknown codec, malformed head, bad magic).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A message is longer than the transport's configured limit; nothing was allocated
    /// for it.
    #[error("message length {size} exceeds limit {limit}")]
    MessageTooLarge {
        /// The (declared) message length.
        size: u64,
        /// The configured maximum.
        limit: u64,
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
    /// The provider answered with an error; `message` is the provider's own text.
    #[error("remote error ({code}): {message}")]
    Remote {
        /// Why, as the transport reported it.
        code: Code,
        /// The provider's message.
        message: String,
    },
    /// The call was refused before it ran (overload, shutdown, a full buffer).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The provider abandoned the call before it finished (it shut down past its grace
    /// period); callers see it as [`Error::Remote`] with [`Code::ServerError`] and this
    /// message.
    #[error("call cancelled: the provider stopped before it finished")]
    Cancelled,
    /// Failover ran out of attempts on several providers; each attempt's provider
    /// (address) and error, in order. [`Error::root`] is the last attempt's error.
    #[error("all {} attempts failed: {}", attempts.len(), describe(attempts))]
    Exhausted {
        /// Each attempt's provider and error.
        attempts: Vec<(String, Error)>,
    },
    /// A broadcast call failed on some providers (it reached every provider).
    #[error("broadcast failed on {} of {total} providers: {}", failed.len(), describe(failed))]
    Broadcast {
        /// Each provider that failed (address) and its error.
        failed: Vec<(String, Error)>,
        /// How many providers were called.
        total: usize,
    },
    /// A call in failsafe mode failed. Generated stubs turn it into the return type's
    /// `Default`; an untyped call sees it, with the failure inside.
    #[error("failsafe call failed: {0}")]
    Failsafe(Box<Error>),
    /// No provider is available for the service.
    #[error("no provider available for {0}")]
    NoProvider(String),
    /// A handler failed on the provider (it panicked); the caller sees it as [`Error::Remote`].
    #[error("handler failed: {0}")]
    Handler(String),
    /// A registry operation failed: a server could not register its services, or a
    /// registry URL is malformed. Calls themselves never fail with it: a consumer keeps its
    /// last good provider list while its registry is away.
    #[error("registry error: {0}")]
    Registry(#[from] registry::Error),
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

    /// An unavailable-provider error with an I/O source.
    pub fn unavailable(message: impl Into<String>, source: Option<std::io::Error>) -> Error {
        Error::Unavailable {
            message: message.into(),
            source: source.map(Arc::new),
        }
    }

    /// The error a caller sees for an answer with `code` and the provider's `message`.
    ///
    /// Codes that have their own kind map to it, so [`Code::Timeout`] is an
    /// [`Error::Timeout`] and [`Code::Overloaded`] an [`Error::Rejected`] on both sides of
    /// the wire.
    pub fn from_code(code: Code, message: String, budget: Duration) -> Error {
        match code {
            Code::Timeout => Error::Timeout(budget),
            Code::Overloaded => Error::Rejected(message),
            _ => Error::Remote { code, message },
        }
    }

    /// The code a provider answers this error with ([`Code::for_error`]).
    pub fn code(&self) -> Code {
        Code::for_error(self.root())
    }

    /// The error behind a wrapper: the last attempt's of [`Error::Exhausted`], the
    /// swallowed one of [`Error::Failsafe`]; otherwise this error. Match on it to react to
    /// the kind of failure whatever the cluster mode.
    pub fn root(&self) -> &Error {
        match self {
            Error::Exhausted { attempts } => match attempts.last() {
                Some((_, last)) => last.root(),
                None => self,
            },
            Error::Failsafe(inner) => inner.root(),
            other => other,
        }
    }

    /// The text a provider sends its caller for this error, next to [`Error::code`]. Variants that hold the provider's own words (a handler's panic,
    /// a refusal, a relayed remote error) send them bare, so the caller's
    /// [`Error::from_code`] rebuilds the same error instead of nesting prefixes.
    pub fn remote_message(&self) -> String {
        match self {
            Error::Handler(message) | Error::Rejected(message) => message.clone(),
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// True for [`Error::Timeout`] (also behind [`Error::root`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self.root(), Error::Timeout(_))
    }
}

fn describe(failed: &[(String, Error)]) -> String {
    let parts: Vec<String> = failed
        .iter()
        .map(|(provider, error)| format!("{provider}: {error}"))
        .collect();
    parts.join("; ")
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
