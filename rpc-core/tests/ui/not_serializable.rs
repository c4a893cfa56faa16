pub struct Opaque {
    pub id: u64,
}

#[rpc_core::service]
pub trait Store {
    async fn put(&self, value: Opaque) -> u64;
}

fn main() {}
