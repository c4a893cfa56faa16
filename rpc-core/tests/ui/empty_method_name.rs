#[rpc_core::service]
pub trait Greeter {
    #[rpc(name = " ")]
    async fn greet(&self, name: String) -> String;
}

fn main() {}
