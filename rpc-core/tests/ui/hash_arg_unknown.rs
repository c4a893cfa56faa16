#[rpc_core::service]
pub trait Shop {
    #[rpc(loadbalance = "consistenthash", hash_arg = "ordr")]
    async fn charge(&self, order: u64, amount: u64) -> u64;
}

fn main() {
    // The client and server are still generated: the name is the only error.
    let _ = ShopClient::builder();
}
