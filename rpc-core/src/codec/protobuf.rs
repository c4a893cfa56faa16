//! Protocol Buffers through prost: a body is exactly one message.
//!
//! Only protobuf messages have a protobuf encoding, so the serde entry points of
//! [`Codec`](super::Codec) refuse this codec with an error that says so; messages go
//! through [`encode`] and [`decode`], which the protobuf format ([`crate::format::Prost`])
//! calls.

use bytes::BytesMut;

use crate::{Error, Result};

fn codec_error(message: impl std::fmt::Display) -> Error {
    Error::Codec {
        codec: "protobuf",
        message: message.to_string(),
    }
}

/// Appends the protobuf encoding of `message` to `out`.
pub(crate) fn encode<M: prost::Message>(message: &M, out: &mut BytesMut) -> Result<()> {
    // Room first, so a large message goes into reused memory (see `buffer`); prost's
    // "insufficient capacity" cannot happen on a `BytesMut`, mapped anyway rather than assumed.
    super::buffer::reserve(out, message.encoded_len());
    message.encode(out).map_err(codec_error)
}

/// Decodes one message that fills `bytes`.
///
/// prost checks every length prefix against the bytes that remain before it copies
/// anything, and limits nesting depth, so hostile input costs no more than its own size.
pub(crate) fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(codec_error)
}

/// Why a serde value cannot be written in protobuf.
pub(super) fn serde_value_refused() -> Error {
    Error::Config(
        "codec protobuf carries protobuf messages only; this method's types are serde types: \
         call it in bincode or json, or generate the service from a .proto file"
            .into(),
    )
}

/// Why a serde value cannot be read from protobuf: the caller asked a serde service for a
/// codec it does not speak, a bad request (status 40), not a garbled body.
pub(super) fn serde_body_refused() -> Error {
    Error::Protocol(
        "codec protobuf is not supported by this method: its types are serde types, not \
         protobuf messages; call it in bincode or json"
            .into(),
    )
}
