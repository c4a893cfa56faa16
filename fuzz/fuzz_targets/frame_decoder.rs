//! Arbitrary bytes through `FrameDecoder`, whole and in pieces.
//!
//! Checks: no panic; every frame respects the limit and its own header; re-encoding the
//! frames reproduces exactly the bytes consumed; feeding the same bytes in chunks of any
//! size yields the same frames and the same verdict; an over-limit header is rejected
//! without reserving its declared length.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use transports::tcp::frame::{DEFAULT_MAX_FRAME_LEN, Frame, FrameDecoder, HEADER_LEN, Header};

/// Decodes everything in `buf`; the frames and whether it ended in an error.
fn drain(decoder: &mut FrameDecoder, buf: &mut BytesMut, out: &mut Vec<Frame>) -> bool {
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

fn check(data: &[u8], limit: u32) {
    let mut decoder = FrameDecoder::new(limit);

    // All at once.
    let mut whole = BytesMut::from(data);
    let mut frames = Vec::new();
    let failed = drain(&mut decoder, &mut whole, &mut frames);
    let mut reencoded = BytesMut::new();
    for frame in &frames {
        assert!(frame.body.len() as u64 <= u64::from(limit), "body over the limit");
        assert_eq!(frame.header.body_len as usize, frame.body.len());
        frame.encode(&mut reencoded);
    }
    assert_eq!(&reencoded[..], &data[..reencoded.len()], "frames are the consumed bytes");
    let rest = &data[reencoded.len()..];
    if failed {
        // The error is about the next header: bad magic or a length over the limit.
        let header = Header::decode(rest);
        match header {
            Err(_) => assert!(rest.len() >= HEADER_LEN && rest[..2] != [0xda, 0xbb]),
            Ok(Some(header)) => assert!(header.body_len > limit),
            Ok(None) => panic!("error without a whole header"),
        }
        // Nothing is reserved for a rejected body: the header alone does not grow a buffer.
        if let Ok(Some(_)) = header {
            let mut alone = BytesMut::from(&rest[..HEADER_LEN]);
            let capacity = alone.capacity();
            assert!(FrameDecoder::new(limit).decode(&mut alone).is_err());
            assert_eq!(alone.capacity(), capacity, "reserved for a rejected body");
        }
    } else {
        assert_eq!(&whole[..], rest, "only an incomplete frame is left");
        match Header::decode(rest) {
            Ok(None) => assert!(rest.len() < HEADER_LEN),
            Ok(Some(header)) => {
                assert!(header.body_len <= limit);
                assert!(rest.len() < HEADER_LEN + header.body_len as usize);
            }
            Err(_) => panic!("a bad header left undiagnosed"),
        }
        // At end of stream the leftover is an error exactly when there is one.
        let mut eof = whole.clone();
        let at_eof = decoder.decode_eof(&mut eof);
        assert_eq!(at_eof.is_err(), !rest.is_empty());
    }

    // In pieces: same frames, same verdict.
    for chunk in [1, 3, HEADER_LEN - 1, HEADER_LEN + 1, 64] {
        let mut decoder = FrameDecoder::new(limit);
        let mut buf = BytesMut::new();
        let mut pieces = Vec::new();
        let mut piece_failed = false;
        for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            if drain(&mut decoder, &mut buf, &mut pieces) {
                piece_failed = true;
                break;
            }
        }
        assert_eq!(pieces, frames, "chunk size {chunk}");
        assert_eq!(piece_failed, failed, "chunk size {chunk}");
    }
}

fuzz_target!(|data: &[u8]| {
    // The default limit only changes which lengths pass; 64 KiB exercises the same paths
    // without reserving 8 MiB per input.
    check(data, 64 * 1024);
    check(data, 1024);
    check(data, 0);
    // The server's configuration: rejecting from the header alone.
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut buf = BytesMut::from(&data[..data.len().min(HEADER_LEN)]);
    let _ = decoder.decode(&mut buf);
});
