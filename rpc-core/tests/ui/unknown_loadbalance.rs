#[rpc_core::service]
pub trait Shop {
    #[rpc(loadbalance = "round_robin")]
    async fn charge(&self, order: u64) -> u64;
}

fn main() {}
