use rpc_core::Context as Ctx;

#[rpc_core::service]
pub trait Greeter {
    // Neither named `cx` nor typed `&Context`: taken for a reference argument.
    async fn whoami(&self, caller: &Ctx) -> String;
}

fn main() {}
