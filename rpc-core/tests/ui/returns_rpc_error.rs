use rpc_core::Error;

#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: String) -> Result<String, rpc_core::Error>;

    // Found by type, whatever the spelling.
    async fn count(&self) -> rpc_core::Result<u64>;

    async fn reset(&self) -> Result<(), Error>;
}

fn main() {}
