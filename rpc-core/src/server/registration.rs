//! What a server announces in its registry, and the withdrawal that comes first on
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use registry::{ProviderUrl, Registry};

use crate::Codec;
use crate::client::{epoch_ms, local_host};
use crate::descriptor::ServiceDescriptor;

/// How long shutdown waits for the registry to withdraw a service before draining anyway.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(3);

/// How a server describes itself in its provider URLs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Announcement {
    pub(crate) application: String,
    pub(crate) weight: Option<u32>,
    /// The host consumers should dial; `None`: the bound address, or this host's
    /// outward address when bound to all interfaces.
    pub(crate) host: Option<String>,
    /// The provider's timeout (`provider.timeout`), announced as Dubbo does.
    pub(crate) timeout_ms: Option<u64>,
}

impl Announcement {
    /// One provider URL per service served at `bound`.
    pub(crate) fn urls(
        &self,
        protocol: &str,
        bound: SocketAddr,
        services: &[&'static ServiceDescriptor],
        codecs: &[Codec],
    ) -> Vec<ProviderUrl> {
        let host = match &self.host {
            Some(host) => host.clone(),
            None if bound.ip().is_unspecified() => local_host(),
            None => bound.ip().to_string(),
        };
        let address = match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{host}]:{}", bound.port()),
            Err(_) => format!("{host}:{}", bound.port()),
        };
        let serialization: Vec<&str> = codecs.iter().map(|c| c.name()).collect();
        let started = epoch_ms().to_string();
        services
            .iter()
            .map(|service| {
                let methods: Vec<&str> = service.methods.iter().map(|m| m.name).collect();
                let mut url = ProviderUrl::new(protocol, &address, service.name)
                    .with_param("side", "provider")
                    .with_param("methods", &methods.join(","))
                    .with_param("serialization", &serialization.join(","))
                    .with_param("timestamp", &started)
                    .with_param("pid", &std::process::id().to_string());
                if !service.version.is_empty() {
                    url = url.with_param("version", service.version);
                }
                if !self.application.is_empty() {
                    url = url.with_param("application", &self.application);
                }
                if let Some(weight) = self.weight {
                    url = url.with_param("weight", &weight.to_string());
                }
                if let Some(timeout) = self.timeout_ms {
                    url = url.with_param("timeout", &timeout.to_string());
                }
                url
            })
            .collect()
    }
}

/// The URLs a server registered, withdrawn on shutdown (or, best effort, on drop).
pub(crate) struct Registration {
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) urls: Vec<ProviderUrl>,
}

impl Registration {
    /// Registers every URL; on a failure withdraws the ones already registered.
    pub(crate) async fn register(
        registry: Arc<dyn Registry>,
        urls: Vec<ProviderUrl>,
    ) -> crate::Result<Registration> {
        let mut registration = Registration {
            registry,
            urls: Vec::with_capacity(urls.len()),
        };
        for url in urls {
            if let Err(error) = registration.registry.register(&url).await {
                registration.withdraw().await;
                return Err(error.into());
            }
            tracing::info!(%url, "registered");
            registration.urls.push(url);
        }
        Ok(registration)
    }

    /// Unregisters every URL, each bounded by [`WITHDRAW_TIMEOUT`].
    pub(crate) async fn withdraw(&mut self) {
        for url in std::mem::take(&mut self.urls) {
            match tokio::time::timeout(WITHDRAW_TIMEOUT, self.registry.unregister(&url)).await {
                Ok(Ok(())) => tracing::info!(%url, "unregistered"),
                Ok(Err(error)) => tracing::warn!(%error, %url, "could not unregister"),
                Err(_) => tracing::warn!(%url, "unregistering timed out"),
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.urls.is_empty() {
            return;
        }
        let urls = std::mem::take(&mut self.urls);
        let registry = self.registry.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut registration = Registration { registry, urls };
                registration.withdraw().await;
            });
        }
    }
}
