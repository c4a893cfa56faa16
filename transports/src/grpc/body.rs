//! The body of a unary call: at most one DATA chunk, then trailers if any.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// One chunk of data and optional trailers, known up front: no channel, no task, no boxing
/// per call.
#[derive(Debug, Default)]
pub(crate) struct Unary {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Unary {
    /// A body of `data` only.
    pub(crate) fn data(data: Bytes) -> Unary {
        Unary {
            data: (!data.is_empty()).then_some(data),
            trailers: None,
        }
    }

    /// A body of `data` followed by `trailers`.
    pub(crate) fn with_trailers(data: Bytes, trailers: HeaderMap) -> Unary {
        Unary {
            data: (!data.is_empty()).then_some(data),
            trailers: Some(trailers),
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Unary {
        Unary::default()
    }
}

impl Body for Unary {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}
