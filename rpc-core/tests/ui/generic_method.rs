#[rpc_core::service]
pub trait Greeter {
    async fn greet<T: serde::Serialize>(&self, name: T) -> String;
}

fn main() {}
