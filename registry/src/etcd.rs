//! `etcd://`: placeholder, being written.
use crate::{Error, RegistryAddress};
/// etcd registry.
#[derive(Debug)]
pub struct EtcdRegistry;
impl EtcdRegistry {
    /// Opens.
    pub fn open(_a: RegistryAddress) -> Result<EtcdRegistry, Error> { Err(Error::Closed) }
}
