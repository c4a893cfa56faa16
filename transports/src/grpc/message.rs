//! gRPC's length-prefixed messages: a flag byte (1 = compressed), a 4-byte big-endian
//! length, the message.
//!
//! Unary calls carry exactly one message each way. The reader checks the declared length
//! against the limit before it reserves anything, and takes the message without a copy
//! when it arrives in one DATA frame (the common case).

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// Bytes of the prefix before each message.
pub const PREFIX_LEN: usize = 5;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The stream ended before a whole message arrived.
    #[error("the stream ended {0} bytes into a length-prefixed message")]
    Truncated(usize),
    /// The stream ended without any message.
    #[error("no message: a unary call carries exactly one")]
    Missing,
    /// A second message followed the first.
    #[error("more than one message: a unary call carries exactly one")]
    Extra,
    /// The declared length is over the limit; nothing was allocated for it.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The declared length.
        size: u64,
        /// The receiving side's limit.
        limit: u64,
    },
    /// The compressed flag is set but no compression was negotiated (this transport
    /// accepts none).
    #[error("compressed message, but no grpc-encoding was negotiated (identity only)")]
    Compressed,
    /// A flag byte other than 0 or 1.
    #[error("invalid message flag {0:#04x}")]
    BadFlag(u8),
    /// Reading the stream failed (the peer reset it, the connection dropped).
    #[error("reading the stream failed: {0}")]
    Body(String),
}

/// Appends `message` to `out` with its prefix.
pub fn encode(message: &[u8], out: &mut BytesMut) {
    out.reserve(PREFIX_LEN + message.len());
    out.extend_from_slice(&prefix(message.len() as u32));
    out.extend_from_slice(message);
}

/// The prefix of an uncompressed message of `len` bytes.
pub fn prefix(len: u32) -> [u8; PREFIX_LEN] {
    let [a, b, c, d] = len.to_be_bytes();
    [0, a, b, c, d]
}

/// `message` with its prefix, as one buffer.
pub fn framed(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + message.len());
    encode(message, &mut out);
    out.freeze()
}

/// From this size on a message is sent without copying it behind its prefix: it spans
/// more than one DATA frame anyway, and h2 sends a payload of this size without a copy.
pub const SPLIT_AT: usize = 16 * 1024;

/// `message` as the DATA chunks to send: a small one copied behind its prefix (one DATA
/// frame, which a reader takes without a copy); from [`SPLIT_AT`] on, the prefix, then
/// the message itself, not copied. `None` for a message longer than a prefix can say.
pub fn chunks(message: Bytes) -> Option<(Bytes, Option<Bytes>)> {
    let len = u32::try_from(message.len()).ok()?;
    Some(match message.len() < SPLIT_AT {
        true => (framed(&message), None),
        false => (Bytes::copy_from_slice(&prefix(len)), Some(message)),
    })
}

/// Reads the one message of `body` (up to `limit` bytes), then the rest of the stream:
/// its trailers when it has some. A second message is an error.
pub async fn read_unary<B>(
    body: &mut B,
    limit: u32,
) -> Result<(Bytes, Option<http::HeaderMap>), MessageError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut reader = Reader::new(limit);
    let mut message = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| MessageError::Body(e.to_string()))?;
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    continue;
                }
                if message.is_some() {
                    return Err(MessageError::Extra);
                }
                message = reader.push(data)?;
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let message = reader.finish(message)?;
                    return Ok((message, Some(trailers)));
                }
            }
        }
    }
    Ok((reader.finish(message)?, None))
}

/// Collects one message from DATA chunks.
struct Reader {
    limit: u32,
    /// The prefix and message so far, when they did not come in one chunk.
    partial: BytesMut,
    /// The declared length, once the prefix is in.
    declared: Option<usize>,
}

impl Reader {
    fn new(limit: u32) -> Reader {
        Reader {
            limit,
            partial: BytesMut::new(),
            declared: None,
        }
    }

    /// Takes one chunk; the message once it is whole.
    fn push(&mut self, mut data: Bytes) -> Result<Option<Bytes>, MessageError> {
        if self.declared.is_none() && self.partial.is_empty() && data.len() >= PREFIX_LEN {
            let len = self.check_prefix(&data[..PREFIX_LEN])?;
            if data.len() == PREFIX_LEN + len {
                data.advance(PREFIX_LEN);
                return Ok(Some(data));
            }
            if data.len() > PREFIX_LEN + len {
                return Err(MessageError::Extra);
            }
        }
        if self.declared.is_none() {
            let need = PREFIX_LEN - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data.advance(take);
            if self.partial.len() < PREFIX_LEN {
                return Ok(None);
            }
            let prefix = [
                self.partial[0],
                self.partial[1],
                self.partial[2],
                self.partial[3],
                self.partial[4],
            ];
            let len = self.check_prefix(&prefix)?;
            self.declared = Some(len);
            self.partial.clear();
            // Checked against the limit above, so this reserves at most the limit.
            self.partial.reserve(len);
        }
        let declared = self.declared.unwrap_or(0);
        if self.partial.len() + data.len() > declared {
            return Err(MessageError::Extra);
        }
        self.partial.extend_from_slice(&data);
        if self.partial.len() == declared {
            return Ok(Some(std::mem::take(&mut self.partial).freeze()));
        }
        Ok(None)
    }

    /// The message once the stream ended.
    fn finish(&mut self, message: Option<Bytes>) -> Result<Bytes, MessageError> {
        if let Some(message) = message {
            return Ok(message);
        }
        match self.declared {
            Some(0) => Ok(Bytes::new()),
            Some(_) => Err(MessageError::Truncated(PREFIX_LEN + self.partial.len())),
            None if self.partial.is_empty() => Err(MessageError::Missing),
            None => Err(MessageError::Truncated(self.partial.len())),
        }
    }

    fn check_prefix(&self, prefix: &[u8]) -> Result<usize, MessageError> {
        match prefix[0] {
            0 => {}
            1 => return Err(MessageError::Compressed),
            other => return Err(MessageError::BadFlag(other)),
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        if len > self.limit {
            return Err(MessageError::TooLarge {
                size: len.into(),
                limit: self.limit.into(),
            });
        }
        Ok(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use proptest::prelude::*;

    type Chunks = futures_util::stream::Iter<
        std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
    >;

    fn body(chunks: Vec<Bytes>) -> StreamBody<Chunks> {
        let frames: Vec<_> = chunks
            .into_iter()
            .map(|c| Ok(http_body::Frame::data(c)))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn read(chunks: Vec<Bytes>, limit: u32) -> Result<Bytes, MessageError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { read_unary(&mut body(chunks), limit).await.map(|(m, _)| m) })
    }

    #[test]
    fn a_message_in_any_split_reads_back() {
        let wire = framed(b"hello world");
        for cut in 0..wire.len() {
            let chunks = vec![wire.slice(..cut), wire.slice(cut..)];
            assert_eq!(&read(chunks, 100).unwrap()[..], b"hello world", "{cut}");
        }
    }

    #[test]
    fn a_small_message_travels_framed_and_a_large_one_uncopied_behind_its_prefix() {
        let (small, none) = chunks(Bytes::from_static(b"hello")).unwrap();
        assert_eq!((small, none), (framed(b"hello"), None));
        let large = Bytes::from(vec![7; SPLIT_AT]);
        let (prefix, rest) = chunks(large.clone()).unwrap();
        let rest = rest.unwrap();
        assert_eq!(rest.as_ptr(), large.as_ptr(), "not copied");
        let wire = [prefix, rest].concat();
        assert_eq!(
            &read(vec![Bytes::from(wire)], u32::MAX).unwrap()[..],
            &large[..]
        );
    }

    #[test]
    fn bad_streams_are_typed_errors() {
        let wire = framed(b"hello");
        assert!(matches!(
            read(vec![wire.slice(..3)], 100),
            Err(MessageError::Truncated(3))
        ));
        assert!(matches!(
            read(vec![wire.slice(..7)], 100),
            Err(MessageError::Truncated(7))
        ));
        assert!(matches!(read(vec![], 100), Err(MessageError::Missing)));
        assert!(matches!(
            read(vec![wire.clone(), wire.clone()], 100),
            Err(MessageError::Extra)
        ));
        assert!(matches!(
            read(vec![Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff])], 100),
            Err(MessageError::TooLarge {
                size: 0xffff_ffff,
                limit: 100
            })
        ));
        assert!(matches!(
            read(vec![Bytes::from_static(&[1, 0, 0, 0, 1, 7])], 100),
            Err(MessageError::Compressed)
        ));
        assert!(matches!(
            read(vec![Bytes::from_static(&[9, 0, 0, 0, 0])], 100),
            Err(MessageError::BadFlag(9))
        ));
        assert_eq!(&read(vec![framed(b"")], 100).unwrap()[..], b"");
    }

    proptest! {
        #[test]
        fn any_bytes_read_to_a_message_or_an_error(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..6)) {
            let chunks = chunks.into_iter().map(Bytes::from).collect();
            let _ = read(chunks, 64);
        }
    }
}
