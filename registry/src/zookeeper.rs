//! `zookeeper://`: placeholder, being written.
use crate::{Error, RegistryAddress};
/// ZooKeeper registry.
#[derive(Debug)]
pub struct ZooKeeperRegistry;
impl ZooKeeperRegistry {
    /// Opens.
    pub fn open(_a: RegistryAddress) -> Result<ZooKeeperRegistry, Error> { Err(Error::Closed) }
}
