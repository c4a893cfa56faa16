//! Arbitrary bytes through the gRPC length-prefixed message reader (`read_unary`), split
//! into several DATA frames.
//!
//! Input layout: a control byte, then up to 7 chunk lengths, then the body bytes.
//! - control bits 0-2: how many chunk lengths follow (the body is cut at those lengths,
//!   the rest is the last chunk; a 0 length is an empty DATA frame);
//! - bit 3: a trailers frame follows the data;
//! - bit 4: the stream fails (a reset) after the data, before any trailers;
//! - bit 5: the body is not ready before each frame (it wakes the task and returns
//!   `Pending`), as when DATA frames arrive one by one.
//!
//! Checks: no panic; the verdict depends on the body bytes alone, never on where the frames
//! cut them, and matches a model of the wire format: `Ok` only for exactly one message whose
//! length is the declared prefix and at most the limit (and it is those bytes), `TooLarge`
//! only for a declared length over the limit, and so on for every `MessageError`. While the
//! reader runs, no single allocation exceeds the limit (plus a small slack): a hostile
//! prefix cannot make it reserve the declared length.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use transports::grpc::message::{MessageError, PREFIX_LEN, framed, read_unary};

/// Records the largest single allocation while armed, so the target can check that the
/// reader's buffer is bounded by the limit rather than by the declared length.
struct Largest;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Allocations the reader may make besides its message buffer (the error's text, the
/// executor's bookkeeping); far below any declared length worth rejecting.
const SLACK: usize = 1024;

/// The body's failure when the control byte asks for a reset.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream reset by the fuzzer")
    }
}

/// A request body that yields prepared frames.
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, Reset>>,
    /// Return `Pending` once before each frame.
    stall: bool,
    stalled: bool,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Reset;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Reset>>> {
        let this = self.get_mut();
        if this.stall && !this.stalled && !this.frames.is_empty() {
            this.stalled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.stalled = false;
        Poll::Ready(this.frames.pop_front())
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// What `read_unary` must answer for `body`, from the wire format alone.
#[derive(Debug, PartialEq)]
enum Expected {
    Message(Bytes),
    Truncated(usize),
    Missing,
    Extra,
    TooLarge(u64),
    Compressed,
    BadFlag(u8),
    Body,
}

fn expected(body: &[u8], limit: u32, reset: bool) -> Expected {
    // Everything the prefix can be faulted for is seen as soon as its 5 bytes are in,
    // and extra bytes as soon as they arrive: both come before the end of the stream.
    if body.len() >= PREFIX_LEN {
        match body[0] {
            0 => {}
            1 => return Expected::Compressed,
            flag => return Expected::BadFlag(flag),
        }
        let declared = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
        if declared > limit {
            return Expected::TooLarge(declared.into());
        }
        let end = PREFIX_LEN + declared as usize;
        if body.len() > end {
            return Expected::Extra;
        }
        if reset {
            return Expected::Body;
        }
        if body.len() < end {
            return Expected::Truncated(body.len());
        }
        return Expected::Message(Bytes::copy_from_slice(&body[PREFIX_LEN..]));
    }
    if reset {
        Expected::Body
    } else if body.is_empty() {
        Expected::Missing
    } else {
        Expected::Truncated(body.len())
    }
}

fn check(data: &[u8], limit: u32) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(control & 0x07).min(rest.len());
    let with_trailers = control & 0x08 != 0;
    let reset = control & 0x10 != 0;
    let stall = control & 0x20 != 0;
    let (lengths, body) = rest.split_at(cuts);

    let body = Bytes::copy_from_slice(body);
    let mut frames = VecDeque::new();
    let mut at = 0;
    for &len in lengths {
        let end = (at + usize::from(len)).min(body.len());
        frames.push_back(Ok(Frame::data(body.slice(at..end))));
        at = end;
    }
    frames.push_back(Ok(Frame::data(body.slice(at..))));
    if reset {
        frames.push_back(Err(Reset));
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    if with_trailers {
        frames.push_back(Ok(Frame::trailers(trailers.clone())));
    }
    let mut stream = Frames {
        frames,
        stall,
        stalled: false,
    };
    let want = expected(&body, limit, reset);

    // Built on the first input, outside the measured window.
    let runtime = runtime();
    LARGEST.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let got = runtime.block_on(read_unary(&mut stream, limit));
    ARMED.store(false, Ordering::Relaxed);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= limit as usize + SLACK,
        "allocated {largest} bytes with a limit of {limit}: {got:?}"
    );

    match got {
        Ok((message, got_trailers)) => {
            assert_eq!(want, Expected::Message(message.clone()), "{body:02x?}");
            assert!(message.len() <= limit as usize);
            assert_eq!(
                framed(&message),
                body,
                "the message and its prefix are the body"
            );
            if with_trailers {
                assert_eq!(got_trailers.as_ref(), Some(&trailers));
            } else {
                assert!(got_trailers.is_none());
            }
        }
        Err(MessageError::Truncated(n)) => assert_eq!(want, Expected::Truncated(n)),
        Err(MessageError::Missing) => assert_eq!(want, Expected::Missing),
        Err(MessageError::Extra) => assert_eq!(want, Expected::Extra),
        Err(MessageError::TooLarge { size, limit: told }) => {
            assert_eq!(told, u64::from(limit));
            assert!(size > told);
            assert_eq!(want, Expected::TooLarge(size));
        }
        Err(MessageError::Compressed) => assert_eq!(want, Expected::Compressed),
        Err(MessageError::BadFlag(flag)) => assert_eq!(want, Expected::BadFlag(flag)),
        Err(MessageError::Body(text)) => {
            assert_eq!(want, Expected::Body);
            assert!(text.contains("stream reset by the fuzzer"), "{text}");
        }
        Err(other) => panic!("an error this target does not know: {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // 64 KiB is above any input libFuzzer makes here, so every in-limit length can be
    // satisfied or truncated; 16 bytes puts TooLarge within reach of short inputs.
    check(data, 64 * 1024);
    check(data, 16);
});
