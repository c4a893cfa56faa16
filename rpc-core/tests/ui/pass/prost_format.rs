//! A hand-written prost message served in the protobuf format, with a wire name.

use rpc_core::format::ProtoMessage;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Ping {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
}

impl ProtoMessage for Ping {}

#[rpc_core::service(name = "demo.Pinger", format = rpc_core::format::Prost)]
pub trait Pinger {
    #[rpc(name = "Ping", timeout_ms = 100)]
    async fn ping(&self, request: Ping) -> Ping;
}

fn main() {
    assert_eq!(PINGER_DESCRIPTOR.methods[0].name, "Ping");
    assert_eq!(PINGER_DESCRIPTOR.codecs[0], rpc_core::Codec::Protobuf);
    let _client: fn(PingerClient) = |c| drop(c.ping(Ping { seq: 1 }));
}
