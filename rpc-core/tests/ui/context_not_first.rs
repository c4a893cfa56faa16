use rpc_core::Context;

#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: String, cx: &Context) -> String;
}

fn main() {}
