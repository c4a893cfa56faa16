#[rpc_core::service]
pub trait Greeter {
    #[rpc(timeout_ms = "x")]
    async fn greet(&self, name: String) -> String;

    #[rpc(cluster = failfast)]
    async fn hello(&self) -> String;
}

fn main() {}
