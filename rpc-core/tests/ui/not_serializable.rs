pub struct Opaque {
    pub id: u64,
}

#[rpc_core::service]
pub trait Store {
    async fn put(&self, value: Opaque) -> u64;

    // The same type again: reported once, at its first use.
    async fn replace(&self, id: u64, value: Opaque) -> bool;
}

fn main() {}
