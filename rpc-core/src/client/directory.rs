//! Where a consumer's providers come from, and how one is picked.
//!
//! A [`Directory`] lists the providers of a service right now (static for an address list;
//! registries push changes into theirs). A [`LoadBalance`] picks one for a request.
//! [`Balance`] joins the two as the tower service under the consumer's layers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Service, ServiceExt};

use crate::transport::{Channel, Transport};
use crate::{Error, Request, Response, Result};

/// One provider a consumer can call.
#[derive(Clone)]
pub struct Provider {
    /// `host:port` of the provider.
    pub address: Arc<str>,
    /// The (lazily connected) channel to it.
    pub channel: Channel,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The current providers of one service.
pub trait Directory: Send + Sync + 'static {
    /// A snapshot of the providers; cheap to call on every request.
    fn providers(&self) -> Arc<[Provider]>;
}

/// A fixed list of provider addresses.
pub struct StaticDirectory {
    providers: Arc<[Provider]>,
}

impl StaticDirectory {
    /// Channels to every address through `transport` (connected lazily).
    pub fn connect<I, A>(transport: &dyn Transport, addresses: I) -> Result<StaticDirectory>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<str>,
    {
        let providers = addresses
            .into_iter()
            .map(|address| {
                let address = address.as_ref();
                Ok(Provider {
                    address: address.into(),
                    channel: transport.connect(address)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StaticDirectory {
            providers: providers.into(),
        })
    }
}

impl Directory for StaticDirectory {
    fn providers(&self) -> Arc<[Provider]> {
        self.providers.clone()
    }
}

/// Chooses the provider for a request.
pub trait LoadBalance: Send + Sync + 'static {
    /// Index into `providers` (never empty) of the one to call.
    fn pick(&self, providers: &[Provider], request: &Request) -> usize;
}

/// Takes the providers in turn, each one the same share.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl LoadBalance for RoundRobin {
    fn pick(&self, providers: &[Provider], _request: &Request) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % providers.len()
    }
}

/// Sends each request to the provider its [`LoadBalance`] picks from its [`Directory`].
#[derive(Clone)]
pub struct Balance {
    service: Arc<str>,
    directory: Arc<dyn Directory>,
    load_balance: Arc<dyn LoadBalance>,
}

impl Balance {
    /// Balances calls to `service` over `directory` with `load_balance`.
    pub fn new(
        service: Arc<str>,
        directory: Arc<dyn Directory>,
        load_balance: Arc<dyn LoadBalance>,
    ) -> Balance {
        Balance {
            service,
            directory,
            load_balance,
        }
    }
}

impl Service<Request> for Balance {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let providers = self.directory.providers();
        if providers.is_empty() {
            let service = self.service.to_string();
            return Box::pin(async move { Err(Error::NoProvider(service)) });
        }
        let index = self
            .load_balance
            .pick(&providers, &req)
            .min(providers.len() - 1);
        let channel = providers[index].channel.clone();
        Box::pin(channel.oneshot(req))
    }
}
