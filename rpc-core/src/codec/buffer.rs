//! Growing buffers for large bodies into memory this thread used before.
//!
//! A large body read or encoded into a fresh allocation costs more than the copy itself:
//! the allocator maps new pages for it (one page fault per 4 KiB, each page zeroed by the
//! kernel) and returns them to the system when the body is dropped, so the next body pays
//! again. With 1 MiB bodies that was a fifth of a consumer's CPU time. [`reserve`]
//! instead takes such room from a few allocations this thread made earlier, once nothing
//! uses them any more.
//!
//! Each thread keeps a handle to each of its last few large allocations, while they are in
//! use too. A handle costs nothing while the allocation is shared with the bodies cut from
//! it; once those are all dropped it is the only owner, and [`BytesMut::try_reclaim`] gets
//! the whole allocation back without copying. Handles are kept up to [`KEPT_BYTES`] per
//! thread; the oldest goes first, so memory a burst of large bodies left behind is bounded
//! by the number of threads, not of connections.
//!
//! ```
//! use bytes::BytesMut;
//! use rpc_core::codec::buffer;
//!
//! let mut frame = BytesMut::new();
//! buffer::reserve(&mut frame, 1 << 20);
//! assert!(frame.capacity() >= 1 << 20);
//! frame.extend_from_slice(&[7; 1 << 20]);
//! let body = frame.split().freeze();
//! drop(body);
//!
//! // The next large body on this thread gets the same memory back.
//! let mut next = BytesMut::new();
//! buffer::reserve(&mut next, 1 << 20);
//! assert!(next.capacity() >= 1 << 20);
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::BytesMut;

/// Below this much, a buffer grows the ordinary way: the allocator keeps such blocks in
/// its own free lists and hands them out again without mapping pages.
pub const LARGE: usize = 128 * 1024;

/// Most bytes of large allocations a thread keeps for reuse.
pub const KEPT_BYTES: usize = 32 * 1024 * 1024;

/// New large allocations are rounded up to this, so a body a few bytes longer than the
/// last one (a response header, a longer length prefix) still fits its memory.
const ROUND: usize = 64 * 1024;

/// Most allocations a thread keeps, so looking for a free one stays a short scan.
const KEPT: usize = 8;

/// A kept allocation: a handle of zero length to it, and its size.
struct Kept {
    handle: BytesMut,
    size: usize,
}

thread_local! {
    static KEPT_HERE: RefCell<VecDeque<Kept>> = const { RefCell::new(VecDeque::new()) };
}

/// Makes room in `buf` for `additional` more bytes, as [`BytesMut::reserve`] does; when
/// `buf` must grow past [`LARGE`], into memory this thread used for earlier large bodies
/// if one is free (what `buf` holds is copied over).
///
/// Growth is geometric, so appending a large body in small pieces copies it only a few
/// times, as with `Vec`.
#[inline]
pub fn reserve(buf: &mut BytesMut, additional: usize) {
    if buf.capacity() - buf.len() >= additional {
        return;
    }
    match buf.len().checked_add(additional) {
        Some(needed) if needed >= LARGE => grow_large(buf, needed),
        _ => buf.reserve(additional),
    }
}

#[cold]
fn grow_large(buf: &mut BytesMut, needed: usize) {
    let wanted = needed.max(buf.capacity().saturating_mul(2));
    let mut grown = take(wanted);
    grown.extend_from_slice(buf);
    *buf = grown;
}

/// An empty buffer with room for at least `wanted` bytes: a kept allocation nothing uses
/// any more, or a new one (kept too, within [`KEPT_BYTES`]).
fn take(wanted: usize) -> BytesMut {
    let reused = KEPT_HERE.with(|kept| {
        // Only a value's own encoding can call back in here (a `Serialize` impl that
        // encodes another value); that inner call just allocates.
        let mut kept = kept.try_borrow_mut().ok()?;
        kept.iter_mut()
            .find_map(|k| k.handle.try_reclaim(wanted).then(|| k.handle.split_off(0)))
    });
    if let Some(buf) = reused {
        return buf;
    }
    let size = wanted
        .checked_next_multiple_of(ROUND)
        .unwrap_or(wanted)
        .min(isize::MAX as usize);
    let mut handle = BytesMut::with_capacity(size);
    if size > KEPT_BYTES {
        return handle;
    }
    // The caller's part spans the whole allocation; the kept handle spans none of it.
    let buf = handle.split_off(0);
    KEPT_HERE.with(|kept| {
        if let Ok(mut kept) = kept.try_borrow_mut() {
            let mut total: usize = kept.iter().map(|k| k.size).sum();
            while kept.len() >= KEPT || total + size > KEPT_BYTES {
                match kept.pop_front() {
                    Some(oldest) => total -= oldest.size,
                    None => break,
                }
            }
            kept.push_back(Kept { handle, size });
        }
    });
    buf
}

/// An [`std::io::Write`] appending to a `BytesMut` through [`reserve`], for encoders
/// that write through `io::Write` (bincode, serde_json).
#[derive(Debug)]
pub struct Writer<'a>(pub &'a mut BytesMut);

impl std::io::Write for Writer<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        reserve(self.0, data.len());
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use bytes::Bytes;

    use super::*;

    fn kept_sizes() -> Vec<usize> {
        KEPT_HERE.with(|kept| kept.borrow().iter().map(|k| k.size).collect())
    }

    fn clear() {
        KEPT_HERE.with(|kept| kept.borrow_mut().clear());
    }

    fn large_body(fill: u8) -> (Bytes, *const u8) {
        let mut buf = BytesMut::new();
        reserve(&mut buf, 1 << 20);
        buf.extend_from_slice(&vec![fill; 1 << 20]);
        let at = buf.as_ptr();
        (buf.split().freeze(), at)
    }

    #[test]
    fn a_dropped_large_body_gives_its_memory_to_the_next() {
        clear();
        let (first, at) = large_body(1);
        drop(first);
        let (second, again) = large_body(2);
        assert_eq!(at, again, "the freed allocation is reused");
        assert!(second.iter().all(|b| *b == 2));
        assert_eq!(kept_sizes().len(), 1);
    }

    #[test]
    fn memory_still_in_use_is_not_handed_out_twice() {
        clear();
        let (first, at) = large_body(1);
        let (second, other) = large_body(2);
        assert_ne!(at, other);
        assert!(first.iter().all(|b| *b == 1));
        assert!(second.iter().all(|b| *b == 2));
        assert_eq!(kept_sizes().len(), 2);
    }

    #[test]
    fn what_was_there_moves_with_the_growth() {
        clear();
        let mut buf = BytesMut::from(&b"prefix"[..]);
        reserve(&mut buf, LARGE);
        assert_eq!(&buf[..], b"prefix");
        assert!(buf.capacity() >= LARGE + 6);
    }

    #[test]
    fn small_growth_is_left_to_the_allocator() {
        clear();
        let mut buf = BytesMut::new();
        reserve(&mut buf, 1024);
        assert!(buf.capacity() >= 1024);
        assert!(kept_sizes().is_empty());
    }

    #[test]
    fn kept_memory_is_bounded_per_thread() {
        clear();
        let bodies: Vec<Bytes> = (0..3 * KEPT).map(|n| large_body(n as u8).0).collect();
        let sizes = kept_sizes();
        assert!(sizes.len() <= KEPT);
        assert!(sizes.iter().sum::<usize>() <= KEPT_BYTES);
        drop(bodies);
        let mut huge = BytesMut::new();
        reserve(&mut huge, KEPT_BYTES + 1);
        assert!(kept_sizes().iter().all(|size| *size <= KEPT_BYTES));
    }

    #[test]
    fn writing_in_small_pieces_grows_geometrically() {
        clear();
        let mut buf = BytesMut::new();
        let mut moves = 0;
        let mut at = buf.as_ptr();
        for _ in 0..(4 << 20) / 64 {
            Writer(&mut buf).write_all(&[5; 64]).unwrap();
            if buf.as_ptr() != at {
                moves += 1;
                at = buf.as_ptr();
            }
        }
        assert_eq!(buf.len(), 4 << 20);
        assert!(buf.iter().all(|b| *b == 5));
        assert!(moves < 30, "{moves} moves for 4 MiB in 64-byte pieces");
    }
}
