//! Errors of reading the wire, before a frame becomes a call.

/// A frame this side cannot read. The connection it came on is closed; other
/// connections are unaffected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first two bytes of a header were not `0xdabb`: the peer does not speak this
    /// protocol (an HTTP server answers `HT`, 0x4854).
    #[error("bad magic {0:#06x}, expected 0xdabb: the peer does not speak this protocol")]
    BadMagic(u16),
    /// The header declared a body longer than the limit; nothing was allocated for it.
    #[error("frame length {size} exceeds this side's limit {limit} (`TcpConfig::max_frame_len`)")]
    FrameTooLarge {
        /// Declared body length.
        size: u32,
        /// Configured maximum.
        limit: u32,
        /// Request id of the offending frame, so the peer can be told (status 40).
        request_id: u64,
        /// True when the frame was a request (a call or an event), false for a response.
        request: bool,
        /// True when the frame was a two-way request, which gets that answer.
        two_way_request: bool,
    },
    /// A frame named a serialization id this side does not know.
    #[error("unknown serialization id {0}")]
    UnknownCodec(u8),
    /// The peer closed the connection in the middle of a frame. Nothing unreadable
    /// arrived; the peer just went away.
    #[error("peer closed the connection {0} bytes into a frame")]
    Truncated(usize),
    /// Reading the socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// True for the ordinary ways a peer leaves (reset, closed mid-frame): worth a debug
    /// line, not a warning.
    pub fn is_disconnect(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match self {
            Error::Truncated(_) => true,
            Error::Io(io) => matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ),
            _ => false,
        }
    }
}

impl From<Error> for rpc_core::Error {
    fn from(error: Error) -> rpc_core::Error {
        match error {
            Error::BadMagic(_) | Error::UnknownCodec(_) => {
                rpc_core::Error::Protocol(error.to_string())
            }
            // A provider reads requests, a consumer responses: each checks its own limit.
            Error::FrameTooLarge {
                size,
                limit,
                request: true,
                ..
            } => rpc_core::Error::request_too_large(
                size.into(),
                limit.into(),
                crate::tcp::MAX_FRAME_LEN_SETTING,
            ),
            Error::FrameTooLarge { size, limit, .. } => rpc_core::Error::response_too_large(
                size.into(),
                limit.into(),
                crate::tcp::MAX_FRAME_LEN_SETTING,
            ),
            Error::Truncated(_) => rpc_core::Error::transport(error.to_string()),
            Error::Io(io) => rpc_core::Error::io("read failed", io),
        }
    }
}
