#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: String) -> String;
    async fn greet(&self, name: String, times: u32) -> String;
}

fn main() {}
