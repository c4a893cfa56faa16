//! The body of a unary call: at most two DATA chunks (a gRPC prefix, when it travels apart
//! from its message, and the message), then trailers if any.

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
    head: Option<Bytes>,
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Unary {
    /// A body of `data` only.
    pub(crate) fn data(data: Bytes) -> Unary {
        Unary {
            head: None,
            data: (!data.is_empty()).then_some(data),
            trailers: None,
        }
    }

    /// A body of `head`, then `data`, then `trailers`.
    pub(crate) fn with_trailers(head: Option<Bytes>, data: Bytes, trailers: HeaderMap) -> Unary {
        Unary {
            head,
            data: (!data.is_empty()).then_some(data),
            trailers: Some(trailers),
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Unary {
        Unary::default()
    }

    /// The data chunks and the trailers, for a writer that sends them itself.
    pub(crate) fn into_parts(self) -> ([Option<Bytes>; 2], Option<HeaderMap>) {
        ([self.head, self.data], self.trailers)
    }
}

impl Body for Unary {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.head.take().or_else(|| self.data.take()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = |chunk: &Option<Bytes>| chunk.as_ref().map_or(0, |c| c.len() as u64);
        SizeHint::with_exact(len(&self.head) + len(&self.data))
    }
}

/// The body of an answer as h2 hands it to the consumer: its DATA chunks, each one's
/// flow-control window given back as soon as it is taken, then its trailers.
pub(crate) struct Received {
    stream: h2::RecvStream,
    data_done: bool,
    trailers_done: bool,
}

impl Received {
    pub(crate) fn new(stream: h2::RecvStream) -> Received {
        Received {
            stream,
            data_done: false,
            trailers_done: false,
        }
    }
}

impl Body for Received {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match std::task::ready!(self.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The chunk is ours now: the window it used is the peer's again.
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        if self.trailers_done {
            return Poll::Ready(None);
        }
        let trailers = std::task::ready!(self.stream.poll_trailers(cx));
        self.trailers_done = true;
        Poll::Ready(trailers.transpose().map(|t| t.map(Frame::trailers)))
    }

    fn is_end_stream(&self) -> bool {
        self.trailers_done
    }
}
