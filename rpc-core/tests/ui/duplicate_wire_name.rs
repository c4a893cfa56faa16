#[rpc_core::service]
pub trait Greeter {
    #[rpc(name = "Greet")]
    async fn greet(&self, name: String) -> String;
    #[rpc(name = "Greet")]
    async fn greet_again(&self, name: String) -> String;
}

fn main() {}
