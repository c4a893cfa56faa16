//! [`ServerControl`]: what an admin endpoint sees of a running server and may change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::registration::Registration;
use crate::descriptor::ServiceDescriptor;
use crate::transport::Transport;
use crate::{Client, Codec, Error, Result};

/// Where a server is in its life, for readiness probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// Listening and registered: ready for calls.
    Serving,
    /// Shutdown began: unregistering, draining, closing.
    Draining,
    /// Closed (shut down or dropped).
    Stopped,
}

/// A handle on a running [`super::Server`] for operators: its services, whether it is
/// ready, and taking a service offline (out of the registry, still serving whoever calls)
/// and online again. Cheap to clone; outlives the server harmlessly.
#[derive(Clone)]
pub struct ServerControl {
    pub(crate) inner: Arc<ControlInner>,
}

pub(crate) struct ControlInner {
    pub(crate) address: SocketAddr,
    pub(crate) services: Vec<&'static ServiceDescriptor>,
    pub(crate) registration: Option<Arc<Registration>>,
    pub(crate) state: AtomicU8,
    /// The server's transport, for [`ServerControl::client`].
    pub(crate) transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for ServerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerControl")
            .field("address", &self.inner.address)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ServerControl {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.address
    }

    /// The services the server serves.
    pub fn services(&self) -> &[&'static ServiceDescriptor] {
        &self.inner.services
    }

    /// Where the server is in its life.
    pub fn state(&self) -> ServerState {
        match self.inner.state.load(Ordering::Relaxed) {
            0 => ServerState::Serving,
            1 => ServerState::Draining,
            _ => ServerState::Stopped,
        }
    }

    pub(crate) fn set_state(&self, state: ServerState) {
        let value = match state {
            ServerState::Serving => 0,
            ServerState::Draining => 1,
            ServerState::Stopped => 2,
        };
        // Never back: a draining server does not become serving again.
        self.inner.state.fetch_max(value, Ordering::Relaxed);
    }

    /// True while serving (listening, and registered when it has a registry).
    pub fn is_ready(&self) -> bool {
        self.state() == ServerState::Serving
    }

    /// True when the server announces itself in a registry.
    pub fn has_registry(&self) -> bool {
        self.inner.registration.is_some()
    }

    /// The provider URLs registered now (empty without a registry).
    pub fn registered(&self) -> Vec<registry::ProviderUrl> {
        self.inner
            .registration
            .as_ref()
            .map(|r| r.online())
            .unwrap_or_default()
    }

    /// True when `service` was taken offline with [`ServerControl::offline`].
    pub fn is_offline(&self, service: &str) -> bool {
        self.inner
            .registration
            .as_ref()
            .is_some_and(|r| r.is_offline(service))
    }

    /// Takes `service` out of the registry (Dubbo's QoS `offline`): consumers following the
    /// registry stop sending to this server, which goes on serving calls that still come
    /// (a consumer keeps its last provider rather than none, as with any empty push).
    /// Returns how many URLs were withdrawn (0: it was offline already).
    ///
    /// Fails with [`Error::ServiceNotFound`] for a service this server does not serve and
    /// [`Error::Config`] without a registry.
    pub async fn offline(&self, service: &str) -> Result<usize> {
        let registration = self.registration_of(service)?;
        Ok(registration.take_offline(service).await)
    }

    /// Registers `service` again after [`ServerControl::offline`]; returns how many URLs
    /// (0: it was online). Same errors as `offline`, and the registry's.
    pub async fn online(&self, service: &str) -> Result<usize> {
        let registration = self.registration_of(service)?;
        if self.state() != ServerState::Serving {
            return Err(Error::Rejected("server is shutting down".into()));
        }
        registration.bring_online(service).await
    }

    /// A JSON client of `service` calling this server over its own transport (what a
    /// generic invoke of a provided service goes through: a real call, counted and
    /// dispatched like any other). Built per use; connections are shared per transport.
    pub fn client(&self, service: &str) -> Result<Client> {
        let descriptor = self
            .inner
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| Error::ServiceNotFound {
                service: super::quoted(service),
                version: String::new(),
            })?;
        let mut address = self.inner.address;
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let mut builder = Client::builder(descriptor.name)
            .version(descriptor.version)
            .descriptor(descriptor)
            .codec(Codec::Json)
            .address(address.to_string());
        builder.transports = vec![self.inner.transport.clone()];
        builder.build()
    }

    fn registration_of(&self, service: &str) -> Result<&Registration> {
        if !self.inner.services.iter().any(|s| s.name == service) {
            return Err(Error::ServiceNotFound {
                service: super::quoted(service),
                version: String::new(),
            });
        }
        self.inner
            .registration
            .as_deref()
            .ok_or_else(|| Error::Config("server has no registry to take a service out of".into()))
    }
}
