//! JSON through serde_json.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

fn codec_error(message: impl std::fmt::Display) -> Error {
    Error::Codec {
        codec: "json",
        message: message.to_string(),
    }
}

pub(super) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut BytesMut) -> Result<()> {
    serde_json::to_writer(super::buffer::Writer(out), value).map_err(codec_error)
}

/// serde_json rejects trailing characters and caps nesting at 128 levels, so hostile input
/// cannot overflow the stack.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(codec_error)
}
