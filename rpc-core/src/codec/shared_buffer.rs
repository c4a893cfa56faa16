//! Encoding a call's arguments or result into a block shared by many calls.
//!
//! A body encoded into a buffer of its own costs two allocations per call: the buffer,
//! and the reference count `BytesMut::freeze` adds to hand it out as `Bytes`. Instead,
//! each thread encodes into one 64 KiB block and splits every body off it (`split` and
//! `freeze` of a shared `BytesMut` only count references): a small body then costs no
//! allocation, and a fresh block is taken only once the last one is full. A block is
//! freed when the last body cut from it is dropped (once the transport has written it),
//! and reused in place when none is left by the time it fills.
//!
//! It is a buffer cache, not request state: nothing is read back from it, and encoding
//! runs without an `.await`, so a thread-local cannot leak one call's bytes into another.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::Result;

/// Size of the block a thread's bodies are cut from.
const BLOCK: usize = 64 * 1024;

/// Room a body starts with before encoding; below it the block is renewed first.
const ROOM: usize = super::ENCODE_CAPACITY;

thread_local! {
    static BLOCK_BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The bytes `encode` writes, cut from this thread's shared block. Nothing is kept of an
/// encoding that fails.
pub(crate) fn encode_to_bytes(encode: impl FnOnce(&mut BytesMut) -> Result<()>) -> Result<Bytes> {
    BLOCK_BUFFER.with(|block| match block.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.capacity() < ROOM {
                // Reuses the block in place when no body cut from it is alive any more.
                buffer.reserve(BLOCK);
            }
            let encoded = encode(&mut buffer);
            let body = buffer.split().freeze();
            encoded.map(|()| body)
        }
        // A value whose serialization encodes another one (re-entrance): a buffer of its own.
        Err(_) => {
            let mut buffer = BytesMut::with_capacity(ROOM);
            encode(&mut buffer)?;
            Ok(buffer.freeze())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_cut_from_one_block_keep_their_own_bytes() {
        let bodies: Vec<Bytes> = (0..2000u32)
            .map(|n| {
                encode_to_bytes(|buf| {
                    buf.extend_from_slice(&n.to_le_bytes());
                    buf.extend_from_slice(&[n as u8; 61]);
                    Ok(())
                })
                .unwrap()
            })
            .collect();
        for (n, body) in bodies.iter().enumerate() {
            assert_eq!(body.len(), 65);
            assert_eq!(&body[..4], &(n as u32).to_le_bytes());
            assert!(body[4..].iter().all(|b| *b == n as u8));
        }
    }

    #[test]
    fn a_failed_encoding_leaves_nothing_behind() {
        let failed = encode_to_bytes(|buf| {
            buf.extend_from_slice(b"partial");
            Err(crate::Error::Config("refused".into()))
        });
        assert!(failed.is_err());
        let next = encode_to_bytes(|buf| {
            buf.extend_from_slice(b"next");
            Ok(())
        })
        .unwrap();
        assert_eq!(&next[..], b"next");
    }

    #[test]
    fn an_encoding_inside_an_encoding_gets_its_own_buffer() {
        let outer = encode_to_bytes(|buf| {
            let inner = encode_to_bytes(|inner| {
                inner.extend_from_slice(b"inner");
                Ok(())
            })?;
            buf.extend_from_slice(b"outer+");
            buf.extend_from_slice(&inner);
            Ok(())
        })
        .unwrap();
        assert_eq!(&outer[..], b"outer+inner");
    }

    #[test]
    fn a_large_body_is_whole() {
        let body = encode_to_bytes(|buf| {
            buf.extend_from_slice(&vec![9u8; 3 * BLOCK]);
            Ok(())
        })
        .unwrap();
        assert_eq!(body.len(), 3 * BLOCK);
        assert!(body.iter().all(|b| *b == 9));
    }
}
