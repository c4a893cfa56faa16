/// Serializable, but a caller could not decode it.
#[derive(serde::Serialize)]
pub struct Receipt {
    pub total: u64,
}

#[rpc_core::service]
pub trait Shop {
    async fn charge(&self, amount: u64) -> Receipt;
}

fn main() {}
