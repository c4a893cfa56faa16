#[rpc_core::service]
pub trait Shop {
    #[rpc(tps = 100, tps_wait_ms = 50, executes = 8)]
    async fn charge(&self, order: u64) -> u64;
    #[rpc(actives = 4)]
    async fn browse(&self, page: u64) -> u64;
}

fn main() {
    let charge = &SHOP_DESCRIPTOR.methods[0];
    assert_eq!((charge.tps, charge.tps_wait_ms, charge.executes), (Some(100), Some(50), Some(8)));
    assert_eq!(SHOP_DESCRIPTOR.methods[1].actives, Some(4));
}
