//! The request context under another name: `use rpc_core::Context as Ctx`.
#![deny(warnings)]

use rpc_core::Context as Ctx;
use rpc_core::{Codec, Skeleton};

#[rpc_core::service]
trait Greeter {
    async fn whoami(&self, cx: &Ctx) -> String;
    async fn trace(&self, ctx: &rpc_core::Context, depth: u32) -> u32;
    async fn peer(&self, _context: &Ctx) -> bool;
}

struct Hello;

impl Greeter for Hello {
    async fn whoami(&self, cx: &Ctx) -> String {
        cx.attachment("user").unwrap_or("nobody").to_owned()
    }
    async fn trace(&self, ctx: &rpc_core::Context, depth: u32) -> u32 {
        depth + u32::from(ctx.deadline().is_some())
    }
    async fn peer(&self, _context: &Ctx) -> bool {
        true
    }
}

fn main() {
    let methods = GREETER_DESCRIPTOR.methods;
    assert!(methods[0].args.is_empty(), "the context is not an argument");
    assert_eq!(methods[1].args, ["depth"]);
    assert!(methods[2].args.is_empty());
    let skeleton = GreeterServer::new(Hello);
    let mut args = rpc_core::__private::BytesMut::new();
    Codec::Json.encode(&(), &mut args).unwrap();
    let _ = skeleton.call(0, Ctx::default(), Codec::Json, args.freeze());
}
