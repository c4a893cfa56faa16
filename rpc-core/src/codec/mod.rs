//! Serialization: how arguments and results become bytes.
//!
//! The codec is chosen per client and travels with every call (each transport says how:
//! the TCP transport as a serialization id in its header), so one provider serves callers
//! of every codec and answers each in its own. [`Codec`] only names the format; which
//! Rust types can be written in it is the business of a [`crate::format`].
//!
//! # Byte strings
//!
//! serde describes a `Vec<u8>` as a sequence of numbers, so JSON writes it (and
//! `bytes::Bytes`, and `serde_bytes` types) as an array of numbers: about four bytes of
//! text per byte, a 4 MiB payload becomes 16 MiB. Use [`Blob`] for byte payloads: JSON
//! writes it as a base64 string (as protobuf's JSON mapping writes `bytes`, about 5.6 MiB
//! for 4 MiB), and bincode writes exactly what it writes for a `Vec<u8>`.
//!
//! Speed is another matter: `#[service]` carries an argument or result spelled `Vec<u8>`
//! as a byte string (one length, one copy) rather than as serde's sequence of numbers,
//! with the same bytes on the wire; `bytes::Bytes` is a byte string already.

mod bincode;
mod blob;
pub mod buffer;
pub(crate) mod byte_string;
mod json;
pub(crate) mod protobuf;
mod shared_buffer;

pub use blob::Blob;
pub(crate) use shared_buffer::encode_to_bytes;

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Initial buffer for encoding one call's arguments or result: large enough that a typical
/// small message encodes without growing the buffer (serde writes piecewise, and each
/// growth is a reallocation and a copy).
pub const ENCODE_CAPACITY: usize = 256;

/// A serialization format. Transports map it to their own wire identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2 (standard config: little endian, varint lengths). Compact and fast.
    #[default]
    Bincode,
    /// JSON (serde_json). Readable; arguments travel as a JSON array. A `Vec<u8>` is an
    /// array of numbers; a [`Blob`] is a base64 string (see the [module docs](self)).
    Json,
    /// Protocol Buffers (prost), for services whose argument and result are protobuf
    /// messages (services generated from `.proto` files by `rpc-build`). A serde service
    /// refuses it: a client for one cannot be built with it, and a provider answers a
    /// call in it with a bad request.
    Protobuf,
}

impl Codec {
    /// Every codec this build knows.
    pub const ALL: [Codec; 3] = [Codec::Bincode, Codec::Json, Codec::Protobuf];

    /// The codecs that carry any serde type: those of `#[service]` traits.
    pub const SERDE: [Codec; 2] = [Codec::Bincode, Codec::Json];

    /// The codec's name, as used in configuration and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Bincode => "bincode",
            Codec::Json => "json",
            Codec::Protobuf => "protobuf",
        }
    }

    /// Appends the serde encoding of `value` to `out`.
    ///
    /// Fails with [`Error::Config`] for [`Codec::Protobuf`], which carries protobuf
    /// messages only (see [`crate::format::Prost`]).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T, out: &mut BytesMut) -> Result<()> {
        match self {
            Codec::Bincode => bincode::encode(value, out),
            Codec::Json => json::encode(value, out),
            Codec::Protobuf => Err(protobuf::serde_value_refused()),
        }
    }

    /// Decodes one serde value that must fill `bytes` exactly.
    ///
    /// `bytes` came from the network: errors are typed, nothing panics, and no length inside
    /// the payload can make the decoder allocate more than the payload could hold. For
    /// [`Codec::Protobuf`] it fails with [`Error::Protocol`] (a provider answers it as a bad
    /// request): serde types have no protobuf encoding.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            Codec::Bincode => bincode::decode(bytes),
            Codec::Json => json::decode(bytes),
            Codec::Protobuf => Err(protobuf::serde_body_refused()),
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Codec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Codec> {
        match s {
            "bincode" => Ok(Codec::Bincode),
            "json" => Ok(Codec::Json),
            "protobuf" => Ok(Codec::Protobuf),
            other => Err(Error::Config(format!(
                "unknown codec {other:?}; expected bincode, json or protobuf"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        item: String,
        quantity: i32,
        tags: Vec<String>,
        note: Option<String>,
        price: f64,
    }

    fn order() -> impl Strategy<Value = Order> {
        (
            any::<u64>(),
            ".*",
            any::<i32>(),
            proptest::collection::vec(".*", 0..4),
            proptest::option::of(".*"),
            -1e12f64..1e12,
        )
            .prop_map(|(id, item, quantity, tags, note, price)| Order {
                id,
                item,
                quantity,
                tags,
                note,
                price,
            })
    }

    #[test]
    fn names_round_trip() {
        for codec in Codec::ALL {
            assert_eq!(codec.name().parse::<Codec>().ok(), Some(codec));
        }
        assert!("protobuf2".parse::<Codec>().is_err());
    }

    #[test]
    fn protobuf_refuses_serde_values_with_a_typed_error() {
        let mut out = BytesMut::new();
        assert!(matches!(
            Codec::Protobuf.encode(&("a", 1u8), &mut out),
            Err(Error::Config(_))
        ));
        assert!(out.is_empty());
        let refused = Codec::Protobuf.decode::<(String,)>(b"\x0a\x01a");
        assert!(
            matches!(&refused, Err(Error::Protocol(m)) if m.contains("protobuf")),
            "{refused:?}"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        for codec in Codec::SERDE {
            let mut out = BytesMut::new();
            codec.encode(&(7u32,), &mut out).ok();
            out.extend_from_slice(b"zz");
            assert!(matches!(
                codec.decode::<(u32,)>(&out),
                Err(Error::Codec { .. })
            ));
        }
    }

    #[test]
    fn a_4_mib_payload_is_compact_in_json_only_as_a_blob() {
        let payload = vec![0xab_u8; 4 * 1024 * 1024];
        let size = |codec: Codec, value: &dyn erased::Value| {
            let mut out = BytesMut::new();
            value.encode(codec, &mut out);
            out.len()
        };
        let vec = size(Codec::Json, &(&payload,));
        let blob = size(Codec::Json, &(&Blob(payload.clone()),));
        eprintln!("4 MiB in JSON: Vec<u8> {vec} bytes, Blob {blob} bytes");
        assert_eq!(vec, 4 * 4 * 1024 * 1024 + 3, "171, and a comma, per byte");
        assert_eq!(
            blob,
            4 * 1024 * 1024 / 3 * 4 + 4 + 4,
            "base64, quotes and brackets"
        );
        assert_eq!(
            size(Codec::Bincode, &(&payload,)),
            size(Codec::Bincode, &(&Blob(payload.clone()),))
        );
    }

    /// Encoding values of different types through one closure.
    mod erased {
        use super::*;

        pub(super) trait Value {
            fn encode(&self, codec: Codec, out: &mut BytesMut);
        }

        impl<T: Serialize> Value for T {
            fn encode(&self, codec: Codec, out: &mut BytesMut) {
                codec.encode(self, out).ok();
            }
        }
    }

    proptest! {
        #[test]
        fn any_value_round_trips_in_every_codec(o in order(), n in any::<u32>(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for codec in Codec::SERDE {
                let args = (&o, &n, &bytes);
                let mut out = BytesMut::new();
                codec.encode(&args, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let back: (Order, u32, Vec<u8>) = codec.decode(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, (o.clone(), n, bytes.clone()));
            }
        }

        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for codec in Codec::ALL {
                let _ = codec.decode::<(Order, Vec<String>)>(&bytes);
                let _ = codec.decode::<(String, u64)>(&bytes);
            }
        }
    }
}
