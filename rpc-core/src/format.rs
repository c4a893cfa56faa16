//! How a service's argument and result types become bytes.
//!
//! A [`Codec`] names a serialization; a format says which Rust types can be written in it.
//! Generated stubs and skeletons never name serde directly: they go through
//! [`Encode`]/[`Decode`] of the service's format, so a service whose types are protobuf
//! messages can plug in a protobuf format beside [`Serde`] without touching the macro's
//! runtime helpers.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Codec, Result};

/// Writes values of type `T` in a codec. Implemented by format marker types.
pub trait Encode<T: ?Sized> {
    /// Appends the encoding of `value` in `codec` to `out`.
    fn encode(codec: Codec, value: &T, out: &mut BytesMut) -> Result<()>;

    /// A hash of `value` that is the same in every process and every build, for
    /// consistent hashing (the stub computes it before the call is encoded).
    fn hash_key(value: &T) -> u64;
}

/// Reads values of type `T` from a codec. Implemented by format marker types.
pub trait Decode<T> {
    /// Decodes one value that must fill `bytes` exactly. `bytes` came from the network:
    /// errors are typed and nothing panics.
    fn decode(codec: Codec, bytes: &[u8]) -> Result<T>;
}

/// The format of `#[service]` traits: any `serde` type, in bincode or JSON.
#[derive(Debug, Clone, Copy)]
pub enum Serde {}

impl<T: Serialize + ?Sized> Encode<T> for Serde {
    fn encode(codec: Codec, value: &T, out: &mut BytesMut) -> Result<()> {
        codec.encode(value, out)
    }

    fn hash_key(value: &T) -> u64 {
        // bincode's output is a pure function of the value, and FNV-1a of it is stable
        // across processes, platforms and Rust releases (std's hashers promise neither).
        let mut hasher = Fnv1a::default();
        let config = bincode::config::standard();
        // Writing into a hasher cannot fail; a value serde refuses hashes what was written.
        let _ = bincode::serde::encode_into_std_write(value, &mut hasher, config);
        hasher.0
    }
}

impl<T: DeserializeOwned> Decode<T> for Serde {
    fn decode(codec: Codec, bytes: &[u8]) -> Result<T> {
        codec.decode(bytes)
    }
}

/// The format of services generated from `.proto` files: every method takes exactly one
/// protobuf message and returns one, and the body on the wire is that message itself (not
/// a tuple of arguments, as gRPC has it). [`Codec::Protobuf`] writes it with prost; bincode
/// and JSON with serde, which the generated messages derive too (JSON with proto3's
/// lowerCamelCase field names).
///
/// The message types implement [`ProtoMessage`] (`rpc-build` generates that impl).
#[derive(Debug, Clone, Copy)]
pub enum Prost {}

/// A protobuf message that also has serde impls: what [`Prost`] carries.
///
/// `rpc-build` implements it for every message it generates; a hand-written prost message
/// needs `impl rpc_core::format::ProtoMessage for MyMessage {}`. It is a trait of this
/// crate (rather than a blanket over `prost::Message`) so that the argument tuple and the
/// message itself can each have their own impls.
pub trait ProtoMessage:
    prost::Message + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// The codecs a format can write, the first its default; the descriptor of a service
/// carries its format's (`ServiceDescriptor::codecs`).
pub trait Format {
    /// Codecs this format writes; the first is a client's default.
    const CODECS: &'static [Codec];
}

impl Format for Serde {
    const CODECS: &'static [Codec] = &Codec::SERDE;
}

impl Format for Prost {
    const CODECS: &'static [Codec] = &[Codec::Protobuf, Codec::Json, Codec::Bincode];
}

fn encode_message<M: ProtoMessage>(codec: Codec, message: &M, out: &mut BytesMut) -> Result<()> {
    match codec {
        Codec::Protobuf => crate::codec::protobuf::encode(message, out),
        other => other.encode(message, out),
    }
}

fn decode_message<M: ProtoMessage>(codec: Codec, bytes: &[u8]) -> Result<M> {
    match codec {
        Codec::Protobuf => crate::codec::protobuf::decode(bytes),
        other => other.decode(bytes),
    }
}

/// The hash of a message: FNV-1a of its protobuf encoding, which prost writes in field
/// order (and `rpc-build` makes maps `BTreeMap`s, so their order is fixed too).
fn hash_message<M: ProtoMessage>(message: &M) -> u64 {
    fnv1a(&message.encode_to_vec())
}

/// A message: a result, or the consistent-hash key.
impl<M: ProtoMessage> Encode<M> for Prost {
    fn encode(codec: Codec, value: &M, out: &mut BytesMut) -> Result<()> {
        encode_message(codec, value, out)
    }

    fn hash_key(value: &M) -> u64 {
        hash_message(value)
    }
}

impl<M: ProtoMessage> Decode<M> for Prost {
    fn decode(codec: Codec, bytes: &[u8]) -> Result<M> {
        decode_message(codec, bytes)
    }
}

/// The stub's argument tuple: the one request message, written as itself.
impl<M: ProtoMessage> Encode<(&M,)> for Prost {
    fn encode(codec: Codec, value: &(&M,), out: &mut BytesMut) -> Result<()> {
        encode_message(codec, value.0, out)
    }

    fn hash_key(value: &(&M,)) -> u64 {
        hash_message(value.0)
    }
}

/// The skeleton's argument tuple.
impl<M: ProtoMessage> Decode<(M,)> for Prost {
    fn decode(codec: Codec, bytes: &[u8]) -> Result<(M,)> {
        decode_message(codec, bytes).map(|message| (message,))
    }
}

/// A method signature a format carries: `W` is `((arguments..), result)`. The service
/// macro picks the format for a method only when this holds (and reports the types that
/// cannot cross the wire otherwise).
pub trait Signature<W> {}

impl<W: Serialize + DeserializeOwned> Signature<W> for Serde {}

/// One request message in, one message out: the shape of a gRPC unary method.
impl<M: ProtoMessage, R: ProtoMessage> Signature<((M,), R)> for Prost {}

/// 64-bit FNV-1a of `bytes`: a hash stable across processes and releases.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv1a::default();
    let _ = std::io::Write::write(&mut hasher, bytes);
    hasher.0
}

/// 64-bit FNV-1a as an `io::Write` sink, so encoders stream into it without a buffer.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_are_stable_and_tell_values_apart() {
        // Pinned: a consumer built by another release must route the same key the same way.
        assert_eq!(
            <Serde as Encode<str>>::hash_key("user-42"),
            0x2188_77ba_9e85_f7be
        );
        assert_ne!(
            <Serde as Encode<u64>>::hash_key(&1),
            <Serde as Encode<u64>>::hash_key(&2)
        );
    }

    /// A message as prost-build writes one, with the serde derives rpc-build adds.
    #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct Order {
        #[prost(uint64, tag = "1")]
        order_id: u64,
        #[prost(string, repeated, tag = "2")]
        items: Vec<String>,
        #[prost(bytes = "vec", tag = "3")]
        note: Vec<u8>,
        #[prost(message, optional, tag = "4")]
        parent: Option<Box<Order>>,
    }

    impl ProtoMessage for Order {}

    fn order() -> impl proptest::strategy::Strategy<Value = Order> {
        use proptest::prelude::*;
        (
            any::<u64>(),
            proptest::collection::vec(".*", 0..4),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(order_id, items, note, parent)| Order {
                order_id,
                items: items.clone(),
                note,
                parent: parent.map(|order_id| {
                    Box::new(Order {
                        order_id,
                        items,
                        ..Order::default()
                    })
                }),
            })
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips_in_every_codec(message in order()) {
            for codec in Codec::ALL {
                let mut out = BytesMut::new();
                <Prost as Encode<(&Order,)>>::encode(codec, &(&message,), &mut out)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                let (back,): (Order,) = <Prost as Decode<_>>::decode(codec, &out)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                proptest::prop_assert_eq!(&back, &message);
                proptest::prop_assert_eq!(
                    <Prost as Encode<Order>>::hash_key(&back),
                    <Prost as Encode<(&Order,)>>::hash_key(&(&message,))
                );
            }
        }

        #[test]
        fn any_bytes_decode_to_a_message_or_a_typed_error(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..512)) {
            for codec in Codec::ALL {
                if let Err(error) = <Prost as Decode<Order>>::decode(codec, &bytes) {
                    proptest::prop_assert!(matches!(error, crate::Error::Codec { .. }), "{error:?}");
                }
            }
        }
    }

    #[test]
    fn protobuf_writes_the_message_itself_and_json_its_camel_case_fields() {
        let message = Order {
            order_id: 7,
            ..Order::default()
        };
        let mut out = BytesMut::new();
        <Prost as Encode<(&Order,)>>::encode(Codec::Protobuf, &(&message,), &mut out).ok();
        assert_eq!(&out[..], [0x08, 7], "field 1, varint 7: no tuple around it");
        let mut out = BytesMut::new();
        <Prost as Encode<(&Order,)>>::encode(Codec::Json, &(&message,), &mut out).ok();
        assert_eq!(
            std::str::from_utf8(&out).ok(),
            Some(r#"{"orderId":7,"items":[],"note":[],"parent":null}"#)
        );
        let sparse: Result<(Order,)> =
            <Prost as Decode<_>>::decode(Codec::Json, b"{\"orderId\":7}");
        assert_eq!(
            sparse.ok().map(|(m,)| m),
            Some(message),
            "missing fields default"
        );
    }

    #[test]
    fn serde_round_trips_through_the_format() {
        for codec in Codec::SERDE {
            let mut out = BytesMut::new();
            <Serde as Encode<_>>::encode(codec, &("a", 7u8), &mut out).ok();
            let back: Result<(String, u8)> = <Serde as Decode<_>>::decode(codec, &out);
            assert_eq!(back.ok(), Some(("a".to_owned(), 7)));
        }
    }
}
