//! Telling HTTP/2 from HTTP/1.1 on an accepted connection by its first bytes, and handing
//! those bytes back to whichever server reads the connection next.
//!
//! hyper-util's auto server does the same with a private rewind reader; tokio-util has no
//! read-back wrapper for a two-way stream, so [`Prefixed`] is the few lines it takes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// The HTTP/2 connection preface.
    Http2,
    /// Anything else: HTTP/1.1 (or garbage, which the HTTP/1.1 server refuses).
    Http1,
    /// The peer closed the connection before sending anything.
    Closed,
}

/// Reads until the bytes either are the HTTP/2 preface or cannot be: at most 24 bytes,
/// fewer when an HTTP/1.1 request differs early (it does at its first byte).
pub(super) async fn read<S: AsyncRead + Unpin>(
    mut stream: S,
) -> io::Result<(Protocol, Prefixed<S>)> {
    let mut head = [0; PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        let read = stream.read(&mut head[filled..]).await?;
        if read == 0 {
            break match filled {
                0 => Protocol::Closed,
                _ => Protocol::Http1,
            };
        }
        filled += read;
        if head[..filled] != PREFACE[..filled] {
            break Protocol::Http1;
        }
        if filled == PREFACE.len() {
            break Protocol::Http2;
        }
    };
    let prefixed = Prefixed {
        inner: stream,
        head,
        start: 0,
        end: filled,
    };
    Ok((protocol, prefixed))
}

/// A stream whose reads first return the bytes [`read`] took from it.
#[derive(Debug)]
pub(super) struct Prefixed<S> {
    inner: S,
    head: [u8; PREFACE.len()],
    start: usize,
    end: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.start < self.end {
            let take = (self.end - self.start).min(buf.remaining());
            let start = self.start;
            buf.put_slice(&self.head[start..start + take]);
            self.start += take;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What [`read`] makes of `wire` when each read returns at most `piece` bytes.
    async fn sniff(wire: &[u8], piece: usize) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(piece);
        let wire = wire.to_vec();
        tokio::spawn(async move { client.write_all(&wire).await.unwrap() });
        let (protocol, mut prefixed) = read(server).await.unwrap();
        let mut all = Vec::new();
        prefixed.read_to_end(&mut all).await.unwrap();
        (protocol, all)
    }

    #[tokio::test]
    async fn the_preface_is_http2_and_every_byte_is_read_back() {
        let mut wire = PREFACE.to_vec();
        wire.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        for piece in [1, 5, 23, 1024] {
            assert_eq!(sniff(&wire, piece).await, (Protocol::Http2, wire.clone()));
        }
    }

    #[tokio::test]
    async fn anything_else_is_http1_and_read_back_whole() {
        for wire in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST /a/b HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
            b"PRI * HTTP/1.1\r\n",
            b"PRI",
        ] {
            for piece in [1, 3, 1024] {
                assert_eq!(sniff(wire, piece).await, (Protocol::Http1, wire.to_vec()));
            }
        }
        assert_eq!(sniff(&[], 1024).await, (Protocol::Closed, Vec::new()));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_back_whole(
            wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
            piece in 1usize..32,
            preface in proptest::prelude::any::<bool>(),
        ) {
            let mut wire = wire;
            if preface {
                wire.splice(0..0, PREFACE.iter().copied());
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (protocol, back) = rt.block_on(sniff(&wire, piece));
            proptest::prop_assert_eq!(&back, &wire);
            let expected = match wire.len() {
                0 => Protocol::Closed,
                _ if wire.starts_with(PREFACE) => Protocol::Http2,
                _ => Protocol::Http1,
            };
            proptest::prop_assert_eq!(protocol, expected);
        }
    }
}
