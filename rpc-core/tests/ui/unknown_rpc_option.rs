#[rpc_core::service]
pub trait Greeter {
    #[rpc(timeout = 200)]
    async fn greet(&self, name: String) -> String;
}

fn main() {}
