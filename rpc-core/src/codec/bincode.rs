//! bincode 2 through its serde integration.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Upper bound on what one decode may allocate. A frame is at most a few MiB, so a payload
/// claiming more is lying; bincode checks every claimed length against this before allocating.
const DECODE_LIMIT: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

fn codec_error(message: impl std::fmt::Display) -> Error {
    Error::Codec {
        codec: "bincode",
        message: message.to_string(),
    }
}

pub(super) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut BytesMut) -> Result<()> {
    let mut writer = super::buffer::Writer(out);
    bincode::serde::encode_into_std_write(value, &mut writer, config())
        .map(|_| ())
        .map_err(codec_error)
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // The borrowing decoder reads byte strings and strings in place (checked against what
    // is left of `bytes`) and copies them once into the value; the owning one would zero
    // a buffer of the claimed length first and then copy into it.
    let (value, read) =
        bincode::serde::borrow_decode_from_slice(bytes, config()).map_err(codec_error)?;
    if read != bytes.len() {
        return Err(codec_error(format_args!(
            "{} trailing bytes after the value",
            bytes.len() - read
        )));
    }
    Ok(value)
}
