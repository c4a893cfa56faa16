#[rpc_core::service(name = "demo.Greeter", group = "blue")]
pub trait Greeter {
    async fn greet(&self, name: String) -> String;
}

fn main() {}
