#[rpc_core::service(version = "1.0.0", version = "2.0.0")]
pub trait Greeter {
    #[rpc(retries = 1, retries = 2)]
    async fn greet(&self, name: String) -> String;
}

fn main() {}
