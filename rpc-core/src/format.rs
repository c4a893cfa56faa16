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

    #[test]
    fn serde_round_trips_through_the_format() {
        for codec in Codec::ALL {
            let mut out = BytesMut::new();
            <Serde as Encode<_>>::encode(codec, &("a", 7u8), &mut out).ok();
            let back: Result<(String, u8)> = <Serde as Decode<_>>::decode(codec, &out);
            assert_eq!(back.ok(), Some(("a".to_owned(), 7)));
        }
    }
}
