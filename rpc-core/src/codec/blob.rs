//! [`Blob`]: a byte string that is compact in every codec.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A byte string for arguments and results: raw bytes in bincode, a base64 string in JSON.
///
/// serde cannot tell a `Vec<u8>` of bytes from a list of small numbers, so JSON writes a
/// `Vec<u8>` (and `bytes::Bytes`, and `serde_bytes` types) as an array of numbers: a
/// 4 MiB payload becomes about 16 MiB of text. A `Blob` is written as a base64 string
/// (RFC 4648, with padding) in human-readable formats, as protobuf's JSON mapping writes
/// `bytes`: about 5.6 MiB for the same payload. In bincode it is the same bytes on the
/// wire as a `Vec<u8>` (a length, then the bytes), so changing a `Vec<u8>` argument to a
/// `Blob` changes nothing for bincode callers; JSON callers of the method must move to a
/// `Blob` (or a base64 string) together with the provider. Decoding also accepts an array
/// of numbers, so a `Blob` reads what a `Vec<u8>` wrote.
///
/// ```
/// use rpc_core::codec::Blob;
/// use rpc_core::Codec;
///
/// let mut json = bytes::BytesMut::new();
/// Codec::Json.encode(&Blob::from(vec![0, 1, 2, 250]), &mut json)?;
/// assert_eq!(&json[..], b"\"AAEC+g==\"");
/// let back: Blob = Codec::Json.decode(&json)?;
/// assert_eq!(back.as_slice(), [0, 1, 2, 250]);
/// # Ok::<(), rpc_core::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blob(pub Vec<u8>);

impl Blob {
    /// An empty blob.
    pub const fn new() -> Blob {
        Blob(Vec::new())
    }

    /// The bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A payload may be megabytes: show its length and its first bytes.
        const SHOWN: usize = 16;
        write!(f, "Blob({} bytes", self.0.len())?;
        if !self.0.is_empty() {
            write!(f, ": ")?;
            for byte in self.0.iter().take(SHOWN) {
                write!(f, "{byte:02x}")?;
            }
            if self.0.len() > SHOWN {
                write!(f, "..")?;
            }
        }
        write!(f, ")")
    }
}

impl std::ops::Deref for Blob {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Blob {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Blob {
        Blob(bytes)
    }
}

impl From<&[u8]> for Blob {
    fn from(bytes: &[u8]) -> Blob {
        Blob(bytes.to_vec())
    }
}

impl From<bytes::Bytes> for Blob {
    fn from(bytes: bytes::Bytes) -> Blob {
        Blob(bytes.into())
    }
}

impl From<Blob> for Vec<u8> {
    fn from(blob: Blob) -> Vec<u8> {
        blob.0
    }
}

impl From<Blob> for bytes::Bytes {
    fn from(blob: Blob) -> bytes::Bytes {
        blob.0.into()
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(BlobVisitor)
        } else {
            deserializer.deserialize_byte_buf(BlobVisitor)
        }
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes: a base64 string, a byte string or an array of numbers 0-255")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Blob, E> {
        base64::decode(text).map(Blob).map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
        Ok(Blob(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Blob, A::Error> {
        super::byte_string::collect_bytes(seq).map(Blob)
    }
}

/// Base64 with the standard alphabet and padding (RFC 4648 section 4).
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
        let sextet = |n: u32, shift: u32| ALPHABET[(n >> shift & 0x3f) as usize];
        let mut chunks = bytes.chunks_exact(3);
        for chunk in &mut chunks {
            let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
            out.extend([sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
        }
        match *chunks.remainder() {
            [a] => {
                let n = u32::from(a) << 16;
                out.extend([sextet(n, 18), sextet(n, 12), b'=', b'=']);
            }
            [a, b] => {
                let n = u32::from(a) << 16 | u32::from(b) << 8;
                out.extend([sextet(n, 18), sextet(n, 12), sextet(n, 6), b'=']);
            }
            _ => {}
        }
        // Every byte pushed comes from ALPHABET or is '=': ASCII.
        out.into_iter().map(char::from).collect()
    }

    fn value(symbol: u8) -> Option<u32> {
        Some(u32::from(match symbol {
            b'A'..=b'Z' => symbol - b'A',
            b'a'..=b'z' => symbol - b'a' + 26,
            b'0'..=b'9' => symbol - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }

    /// Decodes padded base64; anything else (a wrong length, a symbol outside the
    /// alphabet, misplaced padding, stray bits in the last symbol) is an error.
    pub(super) fn decode(text: &str) -> Result<Vec<u8>, String> {
        let input = text.as_bytes();
        if !input.len().is_multiple_of(4) {
            return Err(format!(
                "invalid base64: length {} is not a multiple of 4",
                input.len()
            ));
        }
        let mut out = Vec::with_capacity(input.len() / 4 * 3);
        let quads = input.len() / 4;
        for (index, quad) in input.chunks_exact(4).enumerate() {
            let last = index + 1 == quads;
            let padding = match quad {
                [_, _, b'=', b'='] if last => 2,
                [_, _, _, b'='] if last => 1,
                _ => 0,
            };
            let mut n = 0u32;
            for (position, symbol) in quad[..4 - padding].iter().enumerate() {
                let value = value(*symbol).ok_or_else(|| {
                    format!(
                        "invalid base64: {:?} at offset {}",
                        char::from(*symbol),
                        index * 4 + position
                    )
                })?;
                n |= value << (18 - 6 * position);
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let kept = 3 - padding;
            if bytes[kept..].iter().any(|b| *b != 0) {
                return Err("invalid base64: stray bits before the padding".to_owned());
            }
            out.extend_from_slice(&bytes[..kept]);
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        #[test]
        fn rfc_4648_test_vectors() {
            for (plain, encoded) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(encode(plain.as_bytes()), encoded);
                assert_eq!(decode(encoded).ok(), Some(plain.as_bytes().to_vec()));
            }
        }

        #[test]
        fn malformed_input_is_an_error() {
            for bad in ["Zg=", "Zg==Zg==", "Z===", "Zm9v!A==", "Zh==", "=Zg="] {
                assert!(decode(bad).is_err(), "{bad}");
            }
        }

        proptest! {
            #[test]
            fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                prop_assert_eq!(decode(&encode(&bytes)), Ok(bytes));
            }

            #[test]
            fn any_text_decodes_or_fails(text in ".{0,64}") {
                let _ = decode(&text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use bytes::BytesMut;

    fn encode<T: Serialize>(codec: Codec, value: &T) -> BytesMut {
        let mut out = BytesMut::new();
        codec.encode(value, &mut out).ok();
        out
    }

    #[test]
    fn bincode_writes_a_blob_as_it_writes_a_vec_of_bytes() {
        for len in [0, 1, 250, 251, 65_536, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let blob = Blob(bytes.clone());
            assert_eq!(
                encode(Codec::Bincode, &(&blob, 7u32)),
                encode(Codec::Bincode, &(&bytes, 7u32)),
                "{len} bytes"
            );
            let back: (Blob, u32) = Codec::Bincode
                .decode(&encode(Codec::Bincode, &(&bytes, 7u32)))
                .unwrap();
            assert_eq!(back, (blob, 7));
        }
    }

    #[test]
    fn json_writes_a_blob_as_base64_and_reads_arrays_too() {
        let blob = Blob(b"hello".to_vec());
        assert_eq!(&encode(Codec::Json, &(&blob,))[..], br#"["aGVsbG8="]"#);
        let back: (Blob,) = Codec::Json.decode(br#"["aGVsbG8="]"#).unwrap();
        assert_eq!(back.0, blob);
        // What a `Vec<u8>` wrote.
        let back: (Blob,) = Codec::Json.decode(b"[[104,101,108,108,111]]").unwrap();
        assert_eq!(back.0, blob);
        for bad in [&br#"["aGVsbG8"]"#[..], b"[[256]]", b"[7]"] {
            assert!(Codec::Json.decode::<(Blob,)>(bad).is_err());
        }
    }

    #[test]
    fn debug_shows_the_length_and_the_first_bytes() {
        assert_eq!(format!("{:?}", Blob::new()), "Blob(0 bytes)");
        assert_eq!(format!("{:?}", Blob(vec![1, 0xab])), "Blob(2 bytes: 01ab)");
        assert_eq!(
            format!("{:?}", Blob(vec![0xff; 40])),
            format!("Blob(40 bytes: {}..)", "ff".repeat(16))
        );
    }
}
