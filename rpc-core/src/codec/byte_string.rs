//! `Vec<u8>` arguments and results as byte strings: what `#[service]` wraps them in.
//!
//! serde sees a `Vec<u8>` as a sequence of numbers, so a codec writes it one element at a
//! time: about a millisecond per MiB in bincode, each way. The service macro wraps every
//! argument and result whose type is spelled `Vec<u8>` in these types, which go through
//! `serialize_bytes`/`deserialize_byte_buf`: one length and one copy. The bytes on the wire
//! are the same as for the plain `Vec<u8>` in every codec (bincode writes a length and the
//! bytes for both; JSON an array of numbers for both), so a caller or provider built
//! without the wrapping reads them unchanged.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A borrowed byte string to encode.
#[derive(Debug, Clone, Copy)]
pub struct ByteStr<'a>(pub &'a [u8]);

impl Serialize for ByteStr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// An owned byte string to decode into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByteBuf(pub Vec<u8>);

impl ByteBuf {
    /// The bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteBuf, D::Error> {
        // `bytes`, not `byte_buf`: a borrowing decoder then hands over a slice of the
        // input (one copy, into the vector) instead of a buffer it filled itself.
        deserializer.deserialize_bytes(ByteBufVisitor)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes: a byte string or an array of numbers 0-255")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<ByteBuf, E> {
        Ok(ByteBuf(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<ByteBuf, E> {
        Ok(ByteBuf(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ByteBuf, A::Error> {
        collect_bytes(seq).map(ByteBuf)
    }
}

/// The bytes of a sequence of numbers 0-255 (how a `Vec<u8>` reads from JSON).
pub(super) fn collect_bytes<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<u8>, A::Error> {
    // The hint comes from the peer: cap what it can make us reserve.
    let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
    while let Some(byte) = seq.next_element::<u8>()? {
        bytes.push(byte);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn encoded<T: Serialize + ?Sized>(codec: Codec, value: &T) -> BytesMut {
        let mut out = BytesMut::new();
        codec.encode(value, &mut out).unwrap();
        out
    }

    proptest! {
        /// The wrapping changes nothing on the wire, in either direction, in every serde
        /// codec: a peer built without it reads and writes the same bytes.
        #[test]
        fn byte_strings_are_what_a_vec_of_bytes_writes(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            other in any::<u32>(),
        ) {
            for codec in Codec::SERDE {
                let wrapped = encoded(codec, &(ByteStr(&bytes), other));
                prop_assert_eq!(&wrapped, &encoded(codec, &(&bytes, other)));
                let (back, number): (ByteBuf, u32) = codec.decode(&wrapped).unwrap();
                prop_assert_eq!(&back.0, &bytes);
                prop_assert_eq!(number, other);
                let plain: (Vec<u8>, u32) = codec.decode(&wrapped).unwrap();
                prop_assert_eq!(plain.0, bytes.clone());
            }
        }

        /// Hostile input: any bytes decode to a value or a codec error, never a panic.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            for codec in Codec::SERDE {
                let _ = codec.decode::<(ByteBuf,)>(&body);
            }
        }
    }

    #[test]
    fn a_length_beyond_the_body_is_an_error_not_an_allocation() {
        // bincode's varint: 0xfc then a u32, here 4 GiB - 1, followed by three bytes.
        let body = [0xfc, 0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let error = Codec::Bincode.decode::<(ByteBuf,)>(&body).unwrap_err();
        assert!(matches!(error, crate::Error::Codec { .. }), "{error:?}");
    }

    #[test]
    fn json_reads_an_array_of_numbers_0_to_255() {
        assert!(Codec::Json.decode::<(ByteBuf,)>(b"[[1,2,256]]").is_err());
        let (bytes,): (ByteBuf,) = Codec::Json.decode(b"[[1,2,255]]").unwrap();
        assert_eq!(bytes.0, [1, 2, 255]);
    }
}
