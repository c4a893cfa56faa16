#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: String) -> String {
        name
    }
}

fn main() {}
