//! What a server announces in its registry, and the withdrawal that comes first on
//! shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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

/// The URLs a server registered, withdrawn on shutdown (or, best effort, on drop), and
/// the services an operator took offline (unregistered while the server keeps serving).
pub(crate) struct Registration {
    registry: Arc<dyn Registry>,
    urls: Mutex<Urls>,
    /// Serializes offline/online/withdraw, which await the registry between list updates.
    ops: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Urls {
    online: Vec<ProviderUrl>,
    offline: Vec<ProviderUrl>,
}

impl Registration {
    /// Registers every URL; on a failure withdraws the ones already registered.
    pub(crate) async fn register(
        registry: Arc<dyn Registry>,
        urls: Vec<ProviderUrl>,
    ) -> crate::Result<Registration> {
        let registration = Registration {
            registry,
            urls: Mutex::new(Urls::default()),
            ops: tokio::sync::Mutex::new(()),
        };
        for url in urls {
            if let Err(error) = registration.registry.register(&url).await {
                registration.withdraw().await;
                return Err(error.into());
            }
            tracing::info!(%url, "registered");
            registration.lock().online.push(url);
        }
        Ok(registration)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Urls> {
        // Only list moves happen under this lock; a poisoned list is still a valid list.
        self.urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The URLs registered now.
    pub(crate) fn online(&self) -> Vec<ProviderUrl> {
        self.lock().online.clone()
    }

    /// True when `service` was taken offline.
    pub(crate) fn is_offline(&self, service: &str) -> bool {
        self.lock()
            .offline
            .iter()
            .any(|url| url.service() == service)
    }

    /// Unregisters every URL of `service` and keeps it for [`Registration::online`];
    /// returns how many were withdrawn (0: already offline).
    pub(crate) async fn take_offline(&self, service: &str) -> usize {
        let _op = self.ops.lock().await;
        let leaving: Vec<ProviderUrl> = {
            let mut urls = self.lock();
            let (leaving, staying) = std::mem::take(&mut urls.online)
                .into_iter()
                .partition(|url| url.service() == service);
            urls.online = staying;
            urls.offline.extend(leaving.iter().cloned());
            leaving
        };
        for url in &leaving {
            unregister(&*self.registry, url).await;
        }
        leaving.len()
    }

    /// Registers again the URLs of `service` taken offline; returns how many (0: it was
    /// not offline). A URL the registry refuses stays offline and fails the call.
    pub(crate) async fn bring_online(&self, service: &str) -> crate::Result<usize> {
        let _op = self.ops.lock().await;
        let returning: Vec<ProviderUrl> = {
            let mut urls = self.lock();
            let (returning, staying) = std::mem::take(&mut urls.offline)
                .into_iter()
                .partition(|url| url.service() == service);
            urls.offline = staying;
            returning
        };
        let count = returning.len();
        let mut returning = returning.into_iter();
        while let Some(url) = returning.next() {
            if let Err(error) = self.registry.register(&url).await {
                let mut urls = self.lock();
                urls.offline.push(url);
                urls.offline.extend(returning);
                return Err(error.into());
            }
            tracing::info!(%url, "registered again");
            self.lock().online.push(url);
        }
        Ok(count)
    }

    /// Unregisters every URL, each bounded by [`WITHDRAW_TIMEOUT`].
    pub(crate) async fn withdraw(&self) {
        let _op = self.ops.lock().await;
        let urls = {
            let mut urls = self.lock();
            urls.offline.clear();
            std::mem::take(&mut urls.online)
        };
        for url in &urls {
            unregister(&*self.registry, url).await;
        }
    }

    /// Starts withdrawing every URL on a task, when a runtime is there to run it.
    pub(crate) fn withdraw_in_background(&self) {
        let urls = {
            let mut urls = self.lock();
            urls.offline.clear();
            std::mem::take(&mut urls.online)
        };
        if urls.is_empty() {
            return;
        }
        let registry = self.registry.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for url in &urls {
                    unregister(&*registry, url).await;
                }
            });
        }
    }
}

/// Unregisters `url`, bounded by [`WITHDRAW_TIMEOUT`]; failures are logged.
async fn unregister(registry: &dyn Registry, url: &ProviderUrl) {
    match tokio::time::timeout(WITHDRAW_TIMEOUT, registry.unregister(url)).await {
        Ok(Ok(())) => tracing::info!(%url, "unregistered"),
        Ok(Err(error)) => tracing::warn!(%error, %url, "could not unregister"),
        Err(_) => tracing::warn!(%url, "unregistering timed out"),
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.withdraw_in_background();
    }
}
