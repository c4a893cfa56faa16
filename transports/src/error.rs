//! Errors of reading the wire, before a frame becomes a call.

/// A frame this side cannot read. The connection it came on is closed; other
/// connections are unaffected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first two bytes of a header were not `0xdabb`.
    #[error("bad magic {0:#06x}, expected 0xdabb")]
    BadMagic(u16),
    /// The header declared a body longer than the limit; nothing was allocated for it.
    #[error("frame length {size} exceeds limit {limit}")]
    FrameTooLarge {
        /// Declared body length.
        size: u32,
        /// Configured maximum.
        limit: u32,
        /// Request id of the offending frame, so the peer can be told (status 40).
        request_id: u64,
        /// True when the frame was a two-way request, which gets that answer.
        two_way_request: bool,
    },
    /// Reading the socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<Error> for rpc_core::Error {
    fn from(error: Error) -> rpc_core::Error {
        match error {
            Error::BadMagic(_) => rpc_core::Error::Protocol(error.to_string()),
            Error::FrameTooLarge { size, limit, .. } => rpc_core::Error::FrameTooLarge {
                size: size.into(),
                limit,
            },
            Error::Io(io) => rpc_core::Error::io("read failed", io),
        }
    }
}
