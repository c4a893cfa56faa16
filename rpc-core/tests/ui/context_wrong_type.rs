pub struct Session;

#[rpc_core::service]
pub trait Greeter {
    async fn whoami(&self, cx: &Session) -> String;
}

fn main() {}
