#[rpc_core::service]
pub trait Shop {
    #[rpc(cluster = "no-such-mode")]
    async fn charge(&self, order: u64) -> u64;
}

fn main() {
    // The client and server are still generated: the name is the only error.
    let _ = ShopClient::builder();
    let _ = SHOP_DESCRIPTOR.methods[0].cluster;
}
