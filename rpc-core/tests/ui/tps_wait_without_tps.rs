#[rpc_core::service]
pub trait Shop {
    #[rpc(tps_wait_ms = 100)]
    async fn charge(&self, order: u64) -> u64;
}

fn main() {}
