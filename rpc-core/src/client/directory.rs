//! Where a consumer's providers come from.
//!
//! A [`Directory`] lists the providers of a service right now: fixed for an address list,
//! pushed by a registry for a registry-fed one. The cluster stage asks it once per call.

use futures_util::future::BoxFuture;

use super::provider::{Connector, Provider};
use super::providers::Providers;
use crate::Result;

/// The current providers of one service.
pub trait Directory: Send + Sync + 'static {
    /// A snapshot of the providers; cheap to call on every request.
    fn providers(&self) -> Providers;

    /// Resolves once the directory lists at least one provider. A call that finds none
    /// waits on it, within its deadline, instead of failing at once: a consumer started
    /// just before its providers (or before its registry answered) still gets through.
    /// A fixed list is ready at once.
    fn listed(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A fixed list of providers.
#[derive(Debug)]
pub struct StaticDirectory {
    providers: Providers,
}

impl StaticDirectory {
    /// Providers at `addresses`, made by `connector` (connected lazily).
    pub fn connect<I, A>(connector: &Connector, addresses: I) -> Result<StaticDirectory>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<str>,
    {
        let providers = addresses
            .into_iter()
            .map(|address| connector.provider(address.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(StaticDirectory::new(providers))
    }

    /// A directory of exactly `providers` (built with a [`Connector`], with their own
    /// weights and metadata).
    pub fn new(providers: Vec<Provider>) -> StaticDirectory {
        StaticDirectory {
            providers: providers.into(),
        }
    }
}

impl Directory for StaticDirectory {
    fn providers(&self) -> Providers {
        self.providers.clone()
    }
}
