#[rpc_core::service]
pub trait Logger {
    #[rpc(oneway = true)]
    async fn log(&self, line: String);
}

fn main() {}
