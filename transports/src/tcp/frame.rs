//! The 16-byte header and frame decoding (Dubbo's layout).
//!
//! ```text
//! 0      2       3        4               12          16
//! | magic | flags | status | request id u64 | length u32 | body ...
//!  0xdabb   0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization id
//! ```
//! All integers are big endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rpc_core::Codec;
use tokio_util::codec::Decoder;

use crate::Error;

/// The serialization id of `codec`, carried in the low 5 bits of the flags byte.
///
/// JSON and protobuf keep Dubbo's ids for its JSON (6) and protobuf (22) serializers;
/// bincode, which Dubbo does not have, takes an id Dubbo leaves unused (24).
pub fn serialization_id(codec: Codec) -> u8 {
    match codec {
        Codec::Json => 6,
        Codec::Protobuf => 22,
        _ => 24,
    }
}

/// The codec a serialization id names.
pub fn codec_for_id(id: u8) -> Result<Codec, Error> {
    match id {
        24 => Ok(Codec::Bincode),
        6 => Ok(Codec::Json),
        22 => Ok(Codec::Protobuf),
        other => Err(Error::UnknownCodec(other)),
    }
}

/// The two magic bytes that open every frame.
pub const MAGIC: u16 = 0xdabb;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Default limit on a frame's body: 8 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 8 * 1024 * 1024;

/// Body bytes that must have arrived before the rest of the frame is reserved at once;
/// until then at most this much is reserved ahead. Less than one read of a consumer's
/// 64 KiB read buffer, so a large response proves itself with its first read; a
/// provider's 8 KiB buffer grows to this, then once more to the whole frame.
const PROVEN_BEFORE_FULL_RESERVE: usize = 32 * 1024;

/// Flag bit: the frame is a request (clear: a response).
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: the request expects a response (clear: one-way).
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag bit: an event (heartbeat, cancellation) rather than a call.
pub const FLAG_EVENT: u8 = 0x20;
/// Flag bit of a response (where the two-way bit means nothing): the body starts with the
/// attachments the handler sent back ([`super::head::encode_reply_attachments`]).
pub const FLAG_REPLY_ATTACHMENTS: u8 = 0x40;
/// Mask of the serialization id bits.
pub const SERIALIZATION_MASK: u8 = 0x1f;

/// The decoded fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flag bits and serialization id.
    pub flags: u8,
    /// Response status (0 in requests).
    pub status: u8,
    /// Matches a response to its request.
    pub request_id: u64,
    /// Length of the body that follows.
    pub body_len: u32,
}

impl Header {
    /// True for requests (calls, heartbeat requests, cancellations).
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// True when a response is expected.
    pub fn is_two_way(&self) -> bool {
        self.flags & FLAG_TWO_WAY != 0
    }

    /// True for events (heartbeats, cancellations).
    pub fn is_event(&self) -> bool {
        self.flags & FLAG_EVENT != 0
    }

    /// The serialization id in the low 5 bits.
    pub fn serialization_id(&self) -> u8 {
        self.flags & SERIALIZATION_MASK
    }

    /// Appends the 16 header bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(HEADER_LEN);
        out.put_u16(MAGIC);
        out.put_u8(self.flags);
        out.put_u8(self.status);
        out.put_u64(self.request_id);
        out.put_u32(self.body_len);
    }

    /// Reads a header from the first 16 bytes of `bytes`; `None` if fewer are there.
    pub fn decode(mut bytes: &[u8]) -> Result<Option<Header>, Error> {
        if bytes.len() < HEADER_LEN {
            return Ok(None);
        }
        let magic = bytes.get_u16();
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        Ok(Some(Header {
            flags: bytes.get_u8(),
            status: bytes.get_u8(),
            request_id: bytes.get_u64(),
            body_len: bytes.get_u32(),
        }))
    }
}

/// What to say when a peer's bytes do not start with [`MAGIC`]: who it is, what it sent
/// (the first line as text when it is text, else the first bytes in hex) and that it does
/// not speak this protocol. `buf` is the start of what the peer sent.
pub(crate) fn not_this_protocol(peer: &str, buf: &[u8]) -> String {
    let head = &buf[..buf.len().min(32)];
    let line = head
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()
        .unwrap_or_default();
    let sent = if !line.is_empty() && line.iter().all(|b| (0x20..0x7f).contains(b)) {
        format!("{:?}", String::from_utf8_lossy(line))
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("bytes {}", hex.join(" "))
    };
    let hint = if line.starts_with(b"HTTP/") {
        "; it answers like an HTTP server: point the client at the provider's RPC port"
    } else {
        "; is the address the provider's RPC port?"
    };
    format!(
        "{peer} does not speak this protocol: it sent {sent} where a frame starting with \
         magic {MAGIC:#06x} was expected{hint}"
    )
}

/// True when `buf` starts with a whole frame (header and body), valid or not.
pub(crate) fn starts_with_whole_frame(buf: &[u8]) -> bool {
    match buf.get(12..HEADER_LEN) {
        Some(len) => {
            let body_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            buf.len() - HEADER_LEN >= body_len
        }
        None => false,
    }
}

/// A whole frame: header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The fixed header (its `body_len` equals `body.len()`).
    pub header: Header,
    /// The body, sharing the read buffer's memory.
    pub body: Bytes,
}

impl Frame {
    /// A frame with `flags`, `status`, `request_id` and `body`.
    pub fn new(flags: u8, status: u8, request_id: u64, body: Bytes) -> Frame {
        Frame {
            header: Header {
                flags,
                status,
                request_id,
                body_len: body.len() as u32,
            },
            body,
        }
    }

    /// Appends header and body to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.header.encode(out);
        out.extend_from_slice(&self.body);
    }
}

/// What a connection reads: a frame, or the header of a frame over the limit whose body is
/// being dropped as it arrives ([`SkippingDecoder`]).
#[derive(Debug)]
pub(crate) enum Incoming {
    Frame(Frame),
    TooLarge(Header),
}

/// [`FrameDecoder`] that survives a frame over the limit of the kind this side reads:
/// requests on a provider, responses on a consumer. Such a frame is a well-formed message
/// that is too long, and the connection carries other calls, so only its own call fails:
/// its header comes out as [`Incoming::TooLarge`] (the provider answers it, the consumer
/// fails the call waiting for it) and its body is dropped as it arrives, never buffered.
/// A frame of the other kind, or an event, over the limit is a broken peer: an error, as
/// from [`FrameDecoder`].
#[derive(Debug)]
pub(crate) struct SkippingDecoder {
    frames: FrameDecoder,
    /// True on a provider (oversized requests are skipped), false on a consumer.
    skips_requests: bool,
    /// Body bytes of an oversized frame still to drop.
    skipping: usize,
    /// While skipping: when bytes of the body last arrived (or its header did).
    progress: Option<tokio::time::Instant>,
}

impl SkippingDecoder {
    /// A decoder with `max_frame_len`, skipping oversized requests when `skips_requests`
    /// (a provider) and oversized responses otherwise (a consumer).
    pub(crate) fn new(max_frame_len: u32, skips_requests: bool) -> SkippingDecoder {
        SkippingDecoder {
            frames: FrameDecoder::new(max_frame_len),
            skips_requests,
            skipping: 0,
            progress: None,
        }
    }

    /// While the body of an oversized frame is still being dropped: when its bytes last
    /// arrived, so the owner can give up on a peer that stopped sending it.
    pub(crate) fn skipping_since(&self) -> Option<tokio::time::Instant> {
        self.progress
    }

    fn skip(&mut self, src: &mut BytesMut) {
        let n = self.skipping.min(src.len());
        if n > 0 {
            src.advance(n);
            self.skipping -= n;
            self.progress = Some(tokio::time::Instant::now());
        }
        if self.skipping == 0 {
            self.progress = None;
        }
    }
}

impl Decoder for SkippingDecoder {
    type Item = Incoming;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, Error> {
        self.skip(src);
        if self.skipping > 0 {
            return Ok(None);
        }
        match self.frames.decode(src) {
            Ok(frame) => Ok(frame.map(Incoming::Frame)),
            Err(error @ Error::FrameTooLarge { .. }) => {
                let header = match Header::decode(src)? {
                    Some(header)
                        if header.is_request() == self.skips_requests && !header.is_event() =>
                    {
                        header
                    }
                    _ => return Err(error),
                };
                src.advance(HEADER_LEN);
                self.skipping = header.body_len as usize;
                self.progress = Some(tokio::time::Instant::now());
                self.skip(src);
                Ok(Some(Incoming::TooLarge(header)))
            }
            Err(error) => Err(error),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, Error> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() && self.skipping == 0 => Ok(None),
            None => Err(Error::Truncated(src.len())),
        }
    }
}

/// Splits a byte stream into frames, many per buffer fill.
///
/// The declared length is checked against the limit before any memory is reserved for the
/// body, so a hostile length costs nothing.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_len: u32,
}

impl FrameDecoder {
    /// A decoder rejecting bodies longer than `max_frame_len`.
    pub fn new(max_frame_len: u32) -> FrameDecoder {
        FrameDecoder { max_frame_len }
    }
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let Some(header) = Header::decode(src)? else {
            return Ok(None);
        };
        if header.body_len > self.max_frame_len {
            return Err(Error::FrameTooLarge {
                size: header.body_len,
                limit: self.max_frame_len,
                request_id: header.request_id,
                request: header.is_request(),
                two_way_request: header.is_request() && header.is_two_way(),
            });
        }
        let total = HEADER_LEN + header.body_len as usize;
        if src.len() < total {
            // A peer announcing 8 MiB and sending nothing must not make us hold 8 MiB, so
            // the whole frame is reserved only once a first part of it has arrived;
            // before that, room for a first part. Reserving the rest in
            // one go reads a large body into one allocation: growing step by step would
            // copy what arrived at every step (1.8 MiB of copying for a 1 MiB body).
            // A large frame goes into memory an earlier one used, once that is free: a fresh
            // allocation costs a page fault per 4 KiB read into it.
            let missing = total - src.len();
            let proven = src.len() >= HEADER_LEN + PROVEN_BEFORE_FULL_RESERVE;
            rpc_core::codec::buffer::reserve(
                src,
                if proven {
                    missing
                } else {
                    missing.min(PROVEN_BEFORE_FULL_RESERVE)
                },
            );
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(header.body_len as usize).freeze();
        Ok(Some(Frame { header, body }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            // Say what happened: the peer left mid-frame (tokio-util's default error would
            // read like corrupt input).
            None => Err(Error::Truncated(src.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> impl Strategy<Value = Frame> {
        (
            any::<u8>(),
            any::<u8>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..2048),
        )
            .prop_map(|(flags, status, id, body)| Frame::new(flags, status, id, body.into()))
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut buf = BytesMut::new();
        Header {
            flags: FLAG_REQUEST | FLAG_TWO_WAY,
            status: 0,
            request_id: 7,
            body_len: DEFAULT_MAX_FRAME_LEN + 1,
        }
        .encode(&mut buf);
        let capacity = buf.capacity();
        let err = FrameDecoder::default().decode(&mut buf);
        assert!(matches!(
            err,
            Err(Error::FrameTooLarge { size, limit, request_id: 7, request: true, two_way_request: true })
                if size == DEFAULT_MAX_FRAME_LEN + 1 && limit == DEFAULT_MAX_FRAME_LEN
        ));
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn a_large_frame_is_reserved_whole_only_once_part_of_it_arrived() {
        let body_len = DEFAULT_MAX_FRAME_LEN as usize;
        let mut buf = BytesMut::new();
        Header {
            flags: FLAG_REQUEST | FLAG_TWO_WAY,
            status: 0,
            request_id: 7,
            body_len: body_len as u32,
        }
        .encode(&mut buf);
        let mut decoder = FrameDecoder::default();
        // Only the header: room for what may come soon, not 8 MiB.
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= 2 * (HEADER_LEN + PROVEN_BEFORE_FULL_RESERVE),
            "{}",
            buf.capacity()
        );
        // Part of the body proves the peer is sending it: the rest is reserved at once,
        // so the body is read into this one allocation.
        buf.extend_from_slice(&vec![1; PROVEN_BEFORE_FULL_RESERVE]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() >= HEADER_LEN + body_len,
            "{}",
            buf.capacity()
        );
        let before = buf.as_ptr();
        buf.extend_from_slice(&vec![2; body_len - PROVEN_BEFORE_FULL_RESERVE]);
        assert_eq!(
            buf.as_ptr(),
            before,
            "no reallocation while the body arrives"
        );
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.body.len(), body_len);
        assert_eq!(frame.body[body_len - 1], 2);
    }

    /// Reads `frame` in reads of 64 KiB, as a socket would deliver it.
    fn read_in_pieces(decoder: &mut FrameDecoder, buf: &mut BytesMut, wire: &[u8]) -> Frame {
        let mut frame = None;
        for piece in wire.chunks(64 * 1024) {
            assert!(frame.is_none(), "a frame before all of it arrived");
            buf.extend_from_slice(piece);
            frame = decoder.decode(buf).unwrap();
        }
        frame.unwrap()
    }

    #[test]
    fn a_large_frame_is_read_into_the_memory_of_one_already_dropped() {
        let mut wire = BytesMut::new();
        Frame::new(FLAG_REQUEST, 0, 1, Bytes::from(vec![3; 1 << 20])).encode(&mut wire);
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let first = read_in_pieces(&mut decoder, &mut buf, &wire);
        let at = first.body.as_ptr();
        // While the first body is in use, the second needs memory of its own.
        let second = read_in_pieces(&mut decoder, &mut buf, &wire);
        assert_ne!(second.body.as_ptr(), at);
        assert!(first.body.iter().chain(second.body.iter()).all(|b| *b == 3));
        drop(first);
        let third = read_in_pieces(&mut decoder, &mut buf, &wire);
        assert_eq!(
            third.body.as_ptr(),
            at,
            "the dropped body's memory is reused"
        );
        assert_eq!(third.body.len(), 1 << 20);
        assert!(third.body.iter().all(|b| *b == 3));
    }

    #[test]
    fn whole_frames_are_recognised() {
        let mut wire = BytesMut::new();
        Frame::new(FLAG_REQUEST, 0, 1, Bytes::from_static(b"abc")).encode(&mut wire);
        assert!(starts_with_whole_frame(&wire));
        assert!(!starts_with_whole_frame(&wire[..wire.len() - 1]));
        assert!(!starts_with_whole_frame(&wire[..HEADER_LEN - 1]));
        assert!(!starts_with_whole_frame(&[]));
    }

    #[test]
    fn serialization_ids_round_trip() {
        for codec in Codec::ALL {
            assert_eq!(codec_for_id(serialization_id(codec)).ok(), Some(codec));
            assert!(
                serialization_id(codec) <= SERIALIZATION_MASK,
                "the id must fit 5 bits"
            );
        }
        assert!(matches!(codec_for_id(2), Err(Error::UnknownCodec(2))));
    }

    #[test]
    fn a_peer_leaving_mid_frame_is_a_truncation() {
        let mut wire = BytesMut::new();
        Frame::new(FLAG_REQUEST, 0, 1, Bytes::from_static(b"abc")).encode(&mut wire);
        wire.truncate(10);
        assert!(matches!(
            FrameDecoder::default().decode_eof(&mut wire),
            Err(Error::Truncated(10))
        ));
        assert!(matches!(
            FrameDecoder::default().decode_eof(&mut BytesMut::new()),
            Ok(None)
        ));
    }

    #[test]
    fn a_peer_speaking_another_protocol_is_named_with_what_it_sent() {
        let http = not_this_protocol("127.0.0.1:8080", b"HTTP/1.1 400 Bad Request\r\nX: y");
        assert_eq!(
            http,
            "127.0.0.1:8080 does not speak this protocol: it sent \"HTTP/1.1 400 Bad Request\" \
             where a frame starting with magic 0xdabb was expected; it answers like an HTTP \
             server: point the client at the provider's RPC port"
        );
        let binary = not_this_protocol("h:1", &[0x16, 0x03, 0x01, 0x00]);
        assert!(
            binary.contains("it sent bytes 16 03 01 00 where"),
            "{binary}"
        );
    }

    #[test]
    fn an_oversized_frame_of_the_kind_read_is_skipped_and_the_next_one_read() {
        for (skips_requests, flags) in [(false, 0), (true, FLAG_REQUEST | FLAG_TWO_WAY)] {
            let mut decoder = SkippingDecoder::new(4, skips_requests);
            let mut wire = BytesMut::new();
            Frame::new(flags, 20, 1, Bytes::from_static(b"too long")).encode(&mut wire);
            Frame::new(flags, 20, 2, Bytes::from_static(b"ok")).encode(&mut wire);
            // The first header and part of its body, then the rest.
            let mut buf = BytesMut::from(&wire[..HEADER_LEN + 3]);
            match decoder.decode(&mut buf) {
                Ok(Some(Incoming::TooLarge(header))) => assert_eq!(header.request_id, 1),
                other => panic!("expected the oversized header, got {other:?}"),
            }
            assert!(buf.is_empty());
            assert!(decoder.skipping_since().is_some());
            buf.extend_from_slice(&wire[HEADER_LEN + 3..]);
            match decoder.decode(&mut buf) {
                Ok(Some(Incoming::Frame(frame))) => assert_eq!(&frame.body[..], b"ok"),
                other => panic!("expected the next frame, got {other:?}"),
            }
            assert!(decoder.skipping_since().is_none());
            // An oversized frame of the other kind, or event, is a broken peer.
            let other = if skips_requests { 0 } else { FLAG_REQUEST };
            for flags in [other, flags | FLAG_EVENT] {
                let mut wire = BytesMut::new();
                Frame::new(flags, 0, 3, Bytes::from_static(b"too long")).encode(&mut wire);
                assert!(matches!(
                    decoder.decode(&mut wire),
                    Err(Error::FrameTooLarge { .. })
                ));
            }
        }
    }

    #[test]
    fn bad_magic_is_rejected() {
        let mut buf = BytesMut::from(&[0xca, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            FrameDecoder::default().decode(&mut buf),
            Err(Error::BadMagic(0xcafe))
        ));
    }

    proptest! {
        #[test]
        fn frames_round_trip_across_any_split(frames in proptest::collection::vec(frame(), 1..8), split in 0usize..4096) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            let split = split.min(wire.len());
            let mut decoder = FrameDecoder::default();
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            while let Some(f) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(f);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(f) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(f);
            }
            prop_assert_eq!(out, frames);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn oversized_frames_are_skipped_across_any_split(frames in proptest::collection::vec(frame(), 1..8), limit in 0u32..1024, split in 0usize..4096, skips_requests in any::<bool>()) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            let split = split.min(wire.len());
            let mut decoder = SkippingDecoder::new(limit, skips_requests);
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            let mut failed = false;
            for rest in [&wire[split..], &[][..]] {
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(Incoming::Frame(f))) => out.push(f),
                        Ok(Some(Incoming::TooLarge(h))) => out.push(Frame { header: h, body: Bytes::new() }),
                        Ok(None) => break,
                        Err(_) => { failed = true; break; }
                    }
                }
                if failed { break; }
                buf.extend_from_slice(rest);
            }
            // Until the first frame it may not skip, every frame comes out: whole when
            // within the limit, as a bare header when skipped.
            let expected: Vec<Frame> = frames
                .iter()
                .take_while(|f| {
                    f.body.len() as u32 <= limit
                        || (f.header.is_request() == skips_requests && !f.header.is_event())
                })
                .map(|f| if f.body.len() as u32 <= limit { f.clone() } else { Frame { header: f.header, body: Bytes::new() } })
                .collect();
            prop_assert_eq!(failed, expected.len() < frames.len());
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn any_bytes_decode_to_frames_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..4096), limit in 0u32..4096) {
            let mut decoder = FrameDecoder::new(limit);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                prop_assert!(frame.body.len() as u32 <= limit);
            }
            for skips_requests in [false, true] {
                let mut decoder = SkippingDecoder::new(limit, skips_requests);
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some(item)) = decoder.decode(&mut buf) {
                    if let Incoming::Frame(frame) = item {
                        prop_assert!(frame.body.len() as u32 <= limit);
                    }
                }
                let _ = decoder.decode_eof(&mut buf);
            }
        }
    }
}
