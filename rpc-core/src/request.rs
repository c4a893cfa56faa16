//! The envelope of a call as it moves through the consumer and provider pipelines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::descriptor::{MethodDescriptor, ServiceDescriptor};
use crate::server::Skeleton;
use crate::{Attachments, Codec, Context};

/// A call leaving the consumer: routing head, metadata and the encoded arguments.
///
/// The arguments are already encoded, so routing, balancing and the transport never look
/// inside them; what balancing needs from them (the consistent-hash key) the stub computed
/// beforehand. The method's descriptor travels along, so the cluster stage reads its
/// `retries`, `cluster`, `idempotent` and `loadbalance` settings at run time.
#[derive(Debug, Clone)]
pub struct Request {
    /// Service name.
    pub service: Name,
    /// Service version (may be empty).
    pub version: Name,
    /// The method called, with its `#[rpc(...)]` settings.
    pub method: &'static MethodDescriptor,
    /// Hash of the method's `hash_arg` argument (default: the first), for consistent
    /// hashing; computed only when the method's load balancer asks for it.
    pub hash_key: Option<u64>,
    /// Caller metadata; the deadline travels separately in [`Request::deadline`].
    pub attachments: Attachments,
    /// Codec of `body`; the provider answers in the same codec.
    pub codec: Codec,
    /// No response is expected.
    pub oneway: bool,
    /// The call's time budget, for error messages.
    pub timeout: Duration,
    /// When the caller stops waiting. Transports send the time left to the provider.
    pub deadline: Instant,
    /// The encoded arguments (a tuple of all arguments).
    pub body: Bytes,
    /// Which attempt this is (0 for the first); set by the cluster stage.
    pub attempt: u32,
    /// Address of the provider this attempt goes to; set by the cluster stage, so layers
    /// added with `ClientBuilder::provider_layer` see it.
    pub provider: Option<Arc<str>>,
    /// No other provider is left to try for this attempt, so the transport may wait (until
    /// the deadline) for a connection that is down and being retried, instead of failing
    /// at once with the last connection error (gRPC's "wait for ready"). The cluster
    /// stage sets it per attempt; [`Request::new`] leaves it `false`: fail fast, so a
    /// caller with other providers moves on.
    pub wait_for_ready: bool,
}

/// A service name or version: borrowed for the `'static` names of generated stubs, shared
/// otherwise. Cloned into every request, so the common case costs no reference count
/// (a count shared by every call of a client bounces between cores under load).
#[derive(Clone)]
pub enum Name {
    /// A name known at compile time.
    Static(&'static str),
    /// A name made at run time.
    Shared(Arc<str>),
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

// Equality and hashing go by the text, whichever way it is held.
impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        **self == **other
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl From<&'static str> for Name {
    fn from(name: &'static str) -> Name {
        Name::Static(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Name {
        Name::Shared(name.into())
    }
}

impl From<Arc<str>> for Name {
    fn from(name: Arc<str>) -> Name {
        Name::Shared(name)
    }
}

impl Request {
    /// A two-way first attempt of `method`, with `body` (the argument tuple, already
    /// encoded in `codec`) due `timeout` from now, no attachments and no hash key.
    pub fn new(
        service: impl Into<Name>,
        version: impl Into<Name>,
        method: &'static MethodDescriptor,
        codec: Codec,
        body: Bytes,
        timeout: Duration,
    ) -> Request {
        Request {
            service: service.into(),
            version: version.into(),
            method,
            hash_key: None,
            attachments: Attachments::new(),
            codec,
            oneway: method.oneway,
            timeout,
            deadline: Instant::now() + timeout,
            body,
            attempt: 0,
            provider: None,
            wait_for_ready: false,
        }
    }
}

/// A successful answer: the encoded result in the request's codec (empty for one-way calls).
#[derive(Debug, Clone)]
pub struct Response {
    /// Codec of `body`.
    pub codec: Codec,
    /// The encoded return value.
    pub body: Bytes,
    /// What the provider's handler sent back ([`crate::Context::set_reply_attachment`]);
    /// usually empty.
    pub attachments: Attachments,
}

impl Response {
    /// An answer with no attachments.
    pub fn new(codec: Codec, body: Bytes) -> Response {
        Response {
            codec,
            body,
            attachments: Attachments::new(),
        }
    }
}

/// A call arriving at a provider, already resolved to a method of a registered skeleton.
#[derive(Clone)]
pub struct ServerRequest {
    /// The method to run.
    pub method: MethodRef,
    /// Attachments, deadline and peer of the call.
    pub context: Context,
    /// Codec of `body`.
    pub codec: Codec,
    /// The encoded arguments.
    pub body: Bytes,
}

impl std::fmt::Debug for ServerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequest")
            .field("service", &self.method.service().name)
            .field("method", &self.method.descriptor().name)
            .field("codec", &self.codec)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One method of one registered skeleton. Resolving names to it happens once per request,
/// without allocating.
#[derive(Clone)]
pub struct MethodRef {
    pub(crate) skeleton: Arc<dyn Skeleton>,
    pub(crate) index: usize,
}

impl MethodRef {
    /// The method's descriptor.
    pub fn descriptor(&self) -> &'static MethodDescriptor {
        &self.skeleton.descriptor().methods[self.index]
    }

    /// The service's descriptor.
    pub fn service(&self) -> &'static ServiceDescriptor {
        self.skeleton.descriptor()
    }
}

#[cfg(test)]
mod tests {
    use super::Name;

    #[test]
    fn names_compare_by_text_however_they_are_held() {
        let shared: Name = String::from("demo.Greeter").into();
        assert_eq!(Name::from("demo.Greeter"), shared);
        assert_eq!(&*shared, "demo.Greeter");
    }
}
