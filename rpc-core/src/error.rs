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
    ///
    /// When the transport knows where the call stood, the error is an
    /// [`Error::TimeoutIn`] around this one: match on [`Error::root`], or call
    /// [`Error::is_timeout`], to catch both.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// A timeout ([`Error::Timeout`], boxed in `timeout`) with what the call was doing when
    /// its deadline passed: still connecting, sent and waiting for the answer, or stopped by
    /// the provider. [`Error::root`] is the `Timeout` inside, so [`Error::is_timeout`], a
    /// match on the root and [`Error::code`] treat it as a timeout.
    #[error("{timeout}: {stage}")]
    TimeoutIn {
        /// Where the call stood.
        stage: TimeoutStage,
        /// The [`Error::Timeout`] with the call's time budget.
        timeout: Box<Error>,
    },
    /// The connection failed, closed or could not be opened.
    #[error("transport error: {message}{}", cause(source.as_deref()))]
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
    #[error("provider unavailable: {message}{}", cause(source.as_deref()))]
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
    /// A message is longer than the side receiving it accepts; nothing was allocated for it.
    ///
    /// Each side limits what it receives: the provider its requests, the consumer its
    /// responses. The same error reaches the caller either way (a provider's refusal is
    /// rebuilt from its answer), naming the size, the limit, the side whose limit it is and
    /// the setting that raises it there.
    #[error("{}", too_large(*size, *limit, *kind, setting))]
    MessageTooLarge {
        /// The (declared) message length in bytes.
        size: u64,
        /// The most the receiving side accepts.
        limit: u64,
        /// A request (limited by the provider) or a response (limited by the consumer).
        kind: MessageKind,
        /// The setting that raises the limit, in the transport's terms
        /// (`TcpConfig::max_frame_len`); empty when the limit is the transport's own maximum
        /// and cannot be raised.
        setting: &'static str,
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
    /// The provider refused the call before decoding its arguments: the token was missing
    /// or wrong, or the caller's address is not allowed to call the service. Retrying
    /// elsewhere does not help: every provider of a service shares its security settings.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
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

    /// A [`Error::Timeout`] of `budget` that happened at `stage` ([`Error::TimeoutIn`]).
    pub fn timeout_in(budget: Duration, stage: TimeoutStage) -> Error {
        Error::TimeoutIn {
            stage,
            timeout: Box::new(Error::Timeout(budget)),
        }
    }

    /// A timeout of a call that never got a connection to `address`; `last_error` is the
    /// failure of the connection attempt before the one still running, if any.
    pub fn timeout_connecting(
        budget: Duration,
        address: impl Into<String>,
        last_error: Option<&Error>,
    ) -> Error {
        Error::timeout_in(
            budget,
            TimeoutStage::Connecting {
                address: address.into(),
                last_error: last_error.map(Error::to_string),
            },
        )
    }

    /// A timeout of a call sent to `address` that got no answer in time.
    pub fn timeout_awaiting_answer(budget: Duration, address: impl Into<String>) -> Error {
        Error::timeout_in(
            budget,
            TimeoutStage::AwaitingAnswer {
                address: address.into(),
            },
        )
    }

    /// A timeout the provider at `address` reported: the call's deadline passed while its
    /// handler ran.
    pub fn timeout_in_handler(budget: Duration, address: impl Into<String>) -> Error {
        Error::timeout_in(
            budget,
            TimeoutStage::Handler {
                address: address.into(),
            },
        )
    }

    /// A request of `size` bytes over the provider's `limit`, raised by `setting`
    /// ([`Error::MessageTooLarge`]).
    pub fn request_too_large(size: u64, limit: u64, setting: &'static str) -> Error {
        Error::MessageTooLarge {
            size,
            limit,
            kind: MessageKind::Request,
            setting,
        }
    }

    /// A response of `size` bytes over the consumer's `limit`, raised by `setting`
    /// ([`Error::MessageTooLarge`]).
    pub fn response_too_large(size: u64, limit: u64, setting: &'static str) -> Error {
        Error::MessageTooLarge {
            size,
            limit,
            kind: MessageKind::Response,
            setting,
        }
    }

    /// Where a timed-out call stood, when the transport said ([`Error::TimeoutIn`], also
    /// behind [`Error::root`]'s wrappers).
    pub fn timeout_stage(&self) -> Option<&TimeoutStage> {
        match self {
            Error::TimeoutIn { stage, .. } => Some(stage),
            Error::Exhausted { attempts } => attempts.last()?.1.timeout_stage(),
            Error::Failsafe(inner) => inner.timeout_stage(),
            _ => None,
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
            Code::Unauthorized => Error::Unauthorized(message),
            _ => Error::Remote { code, message },
        }
    }

    /// The code a provider answers this error with ([`Code::for_error`]).
    pub fn code(&self) -> Code {
        Code::for_error(self.root())
    }

    /// The error behind a wrapper: the last attempt's of [`Error::Exhausted`], the
    /// swallowed one of [`Error::Failsafe`], the [`Error::Timeout`] of
    /// [`Error::TimeoutIn`]; otherwise this error. Match on it to react to the kind of
    /// failure whatever the cluster mode and however much the transport said.
    pub fn root(&self) -> &Error {
        match self {
            Error::Exhausted { attempts } => match attempts.last() {
                Some((_, last)) => last.root(),
                None => self,
            },
            Error::Failsafe(inner) => inner.root(),
            Error::TimeoutIn { timeout, .. } => timeout.root(),
            other => other,
        }
    }

    /// The text a provider sends its caller for this error, next to [`Error::code`]. Variants that hold the provider's own words (a handler's panic,
    /// a refusal, a relayed remote error) send them bare, so the caller's
    /// [`Error::from_code`] rebuilds the same error instead of nesting prefixes.
    pub fn remote_message(&self) -> String {
        match self {
            Error::Handler(message) | Error::Rejected(message) | Error::Unauthorized(message) => {
                message.clone()
            }
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// True for [`Error::Timeout`] (also behind [`Error::root`], so for
    /// [`Error::TimeoutIn`] too).
    pub fn is_timeout(&self) -> bool {
        matches!(self.root(), Error::Timeout(_))
    }
}

/// Where a call stood when its deadline passed ([`Error::TimeoutIn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutStage {
    /// No connection to the provider was open, and none opened before the deadline.
    Connecting {
        /// The provider's address.
        address: String,
        /// Why the attempt before the one still running failed, if one did.
        last_error: Option<String>,
    },
    /// The request was sent; no answer came back before the deadline (the provider is
    /// slow, overloaded or not answering).
    AwaitingAnswer {
        /// The provider's address.
        address: String,
    },
    /// The provider answered that the call's deadline passed while it ran: the handler
    /// took too long.
    Handler {
        /// The provider's address.
        address: String,
    },
}

impl std::fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeoutStage::Connecting {
                address,
                last_error: None,
            } => write!(
                f,
                "never connected to {address} (no connection could be opened before the deadline)"
            ),
            TimeoutStage::Connecting {
                address,
                last_error: Some(last),
            } => write!(
                f,
                "never connected to {address} (no connection could be opened before the \
                 deadline; the last attempt: {last})"
            ),
            TimeoutStage::AwaitingAnswer { address } => write!(
                f,
                "the request was sent to {address} but no answer came before the deadline \
                 (the provider is slow, overloaded or not answering)"
            ),
            TimeoutStage::Handler { address } => write!(
                f,
                "the provider at {address} stopped the call at the deadline (the handler took \
                 too long)"
            ),
        }
    }
}

/// Which way a message travels, for [`Error::MessageTooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// A call's request, limited by the provider receiving it.
    Request,
    /// A call's response, limited by the consumer receiving it.
    Response,
}

impl MessageKind {
    /// `request` or `response`.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
        }
    }

    /// The side that receives it, and whose limit applies: `provider` or `consumer`.
    pub fn receiver(self) -> &'static str {
        match self {
            MessageKind::Request => "provider",
            MessageKind::Response => "consumer",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn too_large(size: u64, limit: u64, kind: MessageKind, setting: &str) -> String {
    if setting.is_empty() {
        return format!(
            "{kind} of {size} bytes exceeds {limit} bytes, the most the transport can carry"
        );
    }
    let receiver = kind.receiver();
    format!(
        "{kind} of {size} bytes exceeds the {receiver}'s limit of {limit} bytes; raise \
         `{setting}` on the {receiver} (each side limits what it receives: the provider \
         requests, the consumer responses)"
    )
}

/// `": <cause>"` for an error with an I/O cause, so `Display` says why (refused, reset,
/// unreachable), not only what was attempted.
fn cause(source: Option<&std::io::Error>) -> String {
    source.map_or_else(String::new, |source| format!(": {source}"))
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
