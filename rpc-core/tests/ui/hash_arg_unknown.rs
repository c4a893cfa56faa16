#[rpc_core::service]
pub trait Shop {
    #[rpc(loadbalance = "consistenthash", hash_arg = "ordr")]
    async fn charge(&self, order: u64, amount: u64) -> u64;
}

fn main() {}
