#[rpc_core::service]
pub trait Shop {
    #[rpc(tps = 0)]
    async fn charge(&self, order: u64) -> u64;
    #[rpc(executes = 0)]
    async fn refund(&self, order: u64) -> u64;
    #[rpc(actives = 0)]
    async fn browse(&self, page: u64) -> u64;
}

fn main() {}
