#[rpc_core::service]
pub trait Logger {
    #[rpc(oneway)]
    async fn log(&self, line: String) -> bool;
}

fn main() {}
