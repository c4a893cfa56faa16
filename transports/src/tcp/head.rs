//! The routing head at the start of a request body.
//!
//! ```text
//! service | version | method | attachment count u16 | (key | value)* | arguments...
//! ```
//! Each string is a u16 big-endian length and UTF-8 bytes. The head is read without
//! touching the arguments, so routing never needs the codec. The deadline travels as the
//! attachment `timeout`: the milliseconds left when the frame was written, since the two
//! machines' clocks need not agree.

use std::fmt::Write;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rpc_core::{Attachments, Error, Request, Result};

use super::frame::{HEADER_LEN, Header};

/// Attachment key carrying the milliseconds left before the caller's deadline (as Dubbo).
pub const TIMEOUT_KEY: &str = "timeout";

/// Most attachments a request may carry (the timeout included). Metadata is a handful of
/// entries; the cap keeps a hostile head from costing more than a bounded amount of work.
pub const MAX_ATTACHMENTS: usize = 256;

/// Appends a request frame up to its arguments to `out`: header and head (with the time
/// left as the `timeout` attachment); `req.body`, the arguments, must follow it (the outbox
/// appends it). The head is written first and the length patched in afterwards, so there
/// is no separate size computation to keep in step. A body longer
/// than `max_frame_len` is refused (the client passes `u32::MAX`, the most a header can
/// declare: the provider, not the sender, applies the configured limit). On error `out` is
/// left as it was.
pub(crate) fn encode_request_head(
    req: &Request,
    header: Header,
    timeout_ms: u64,
    max_frame_len: u32,
    out: &mut BytesMut,
) -> Result<()> {
    let start = out.len();
    let written = write_request(req, header, timeout_ms, max_frame_len, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn write_request(
    req: &Request,
    header: Header,
    timeout_ms: u64,
    max_frame_len: u32,
    out: &mut BytesMut,
) -> Result<()> {
    let count = req.attachments.len() + 1;
    if count > MAX_ATTACHMENTS {
        return Err(Error::Protocol(format!(
            "{count} attachments exceed the limit of {MAX_ATTACHMENTS}"
        )));
    }
    let start = out.len();
    header.encode(out);
    let body_start = out.len();
    put_str(out, &req.service)?;
    put_str(out, &req.version)?;
    put_str(out, req.method.name)?;
    out.put_u16(count as u16);
    put_str(out, TIMEOUT_KEY)?;
    let len_at = out.len();
    out.put_u16(0);
    // Formatting into a BytesMut cannot fail.
    let _ = write!(out, "{timeout_ms}");
    let digits = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&digits.to_be_bytes());
    for (k, v) in req.attachments.iter() {
        put_str(out, k)?;
        put_str(out, v)?;
    }
    // The arguments follow the head in the same frame; the outbox sends them from their
    // own memory when they are large (see `Outbox`), so they are counted, not copied.
    let body_len = out.len() - body_start + req.body.len();
    if body_len > max_frame_len as usize {
        return Err(Error::request_too_large(
            body_len as u64,
            max_frame_len.into(),
            "",
        ));
    }
    out[start + 12..start + HEADER_LEN].copy_from_slice(&(body_len as u32).to_be_bytes());
    Ok(())
}

fn put_str(out: &mut BytesMut, s: &str) -> Result<()> {
    let len = u16::try_from(s.len()).map_err(|_| {
        Error::Protocol(format!(
            "string of {} bytes in request head exceeds 65535",
            s.len()
        ))
    })?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Writes the attachments a handler sent back, at the start of a response body flagged
/// [`super::frame::FLAG_REPLY_ATTACHMENTS`]: a u16 count and that many key/value strings,
/// as in a request head. Too many entries, or one longer than 65535 bytes, is an error.
pub fn encode_reply_attachments(attachments: &Attachments, out: &mut BytesMut) -> Result<()> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(Error::Protocol(format!(
            "{} reply attachments exceed the limit of {MAX_ATTACHMENTS}",
            attachments.len()
        )));
    }
    out.put_u16(attachments.len() as u16);
    for (k, v) in attachments.iter() {
        put_str(out, k)?;
        put_str(out, v)?;
    }
    Ok(())
}

/// Reads what [`encode_reply_attachments`] wrote: the attachments and the offset of the
/// return value. Hostile input yields [`Error::Protocol`], never a panic.
pub fn decode_reply_attachments(body: &[u8]) -> Result<(Attachments, usize)> {
    let mut reader = Reader { body, pos: 0 };
    let count = reader.u16("reply attachment count")?;
    if usize::from(count) > MAX_ATTACHMENTS {
        return Err(Error::Protocol(format!(
            "{count} reply attachments exceed the limit of {MAX_ATTACHMENTS}"
        )));
    }
    let mut attachments = Attachments::new();
    for _ in 0..count {
        let key = reader.string("reply attachment key")?;
        let value = reader.string("reply attachment value")?;
        attachments.insert(key, value);
    }
    Ok((attachments, reader.pos))
}

/// A decoded head, borrowing from the frame body.
#[derive(Debug)]
pub struct Head<'a> {
    /// Service name.
    pub service: &'a str,
    /// Service version.
    pub version: &'a str,
    /// Method name.
    pub method: &'a str,
    /// Attachments other than the timeout.
    pub attachments: Attachments,
    /// Time left before the caller's deadline, if it sent one.
    pub timeout: Option<Duration>,
    /// Offset of the arguments in the body.
    pub args_offset: usize,
}

/// Reads the head of a request body. Hostile input yields [`Error::Protocol`], never a panic.
pub fn decode_head(body: &[u8]) -> Result<Head<'_>> {
    let mut reader = Reader { body, pos: 0 };
    let service = reader.string("service")?;
    let version = reader.string("version")?;
    let method = reader.string("method")?;
    let count = reader.u16("attachment count")?;
    if usize::from(count) > MAX_ATTACHMENTS {
        return Err(Error::Protocol(format!(
            "{count} attachments exceed the limit of {MAX_ATTACHMENTS}"
        )));
    }
    let mut attachments = Attachments::new();
    let mut timeout = None;
    for _ in 0..count {
        let key = reader.string("attachment key")?;
        let value = reader.string("attachment value")?;
        if key == TIMEOUT_KEY {
            let ms: u64 = value.parse().map_err(|_| {
                Error::Protocol(format!("timeout attachment {value:?} is not a number"))
            })?;
            timeout = Some(Duration::from_millis(ms));
        } else {
            attachments.insert(key, value);
        }
    }
    Ok(Head {
        service,
        version,
        method,
        attachments,
        timeout,
        args_offset: reader.pos,
    })
}

struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.body.len())
            .ok_or_else(|| Error::Protocol(format!("request head truncated in {what}")))?;
        let bytes = &self.body[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn string(&mut self, what: &str) -> Result<&'a str> {
        let len = self.u16(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map_err(|_| Error::Protocol(format!("request head {what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::frame::{FLAG_REQUEST, FLAG_TWO_WAY, FrameDecoder};
    use proptest::prelude::*;
    use rpc_core::{Codec, MethodDescriptor};
    use tokio_util::codec::Decoder;

    fn request(
        service: &str,
        method: &'static MethodDescriptor,
        attachments: Attachments,
    ) -> Request {
        let mut request = Request::new(
            service.to_owned(),
            "1.0",
            method,
            Codec::Json,
            bytes::Bytes::from_static(b"ARGS"),
            Duration::from_millis(250),
        );
        request.attachments = attachments;
        request
    }

    fn header() -> Header {
        Header {
            flags: FLAG_REQUEST | FLAG_TWO_WAY,
            status: 0,
            request_id: 9,
            body_len: 0,
        }
    }

    static METHOD: MethodDescriptor = MethodDescriptor::new("greet");

    #[test]
    fn a_failed_encoding_leaves_the_buffer_as_it_was() {
        let mut out = BytesMut::from(&b"queued"[..]);
        let req = request(&"s".repeat(70_000), &METHOD, Attachments::new());
        assert!(encode_request_head(&req, header(), 5, u32::MAX, &mut out).is_err());
        let req = request("s", &METHOD, Attachments::new());
        let too_small = encode_request_head(&req, header(), 5, 8, &mut out);
        assert!(matches!(
            too_small,
            Err(Error::MessageTooLarge { limit: 8, .. })
        ));
        assert_eq!(&out[..], b"queued");
    }

    proptest! {
        #[test]
        fn heads_round_trip(service in ".{0,40}", pairs in proptest::collection::vec(("[a-z-]{1,10}", ".{0,20}"), 0..5), ms in any::<u64>()) {
            let attachments: Attachments = pairs.into_iter().filter(|(k, _)| k != TIMEOUT_KEY).collect();
            let req = request(&service, &METHOD, attachments.clone());
            let mut out = BytesMut::new();
            encode_request_head(&req, header(), ms, u32::MAX, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            out.extend_from_slice(&req.body);
            let frame = FrameDecoder::new(u32::MAX).decode(&mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let frame = frame.ok_or_else(|| TestCaseError::fail("no whole frame"))?;
            prop_assert!(out.is_empty());
            prop_assert_eq!(frame.header.request_id, 9);
            let head = decode_head(&frame.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(head.service, service.as_str());
            prop_assert_eq!(head.version, "1.0");
            prop_assert_eq!(head.method, "greet");
            prop_assert_eq!(head.attachments, attachments);
            prop_assert_eq!(head.timeout, Some(Duration::from_millis(ms)));
            prop_assert_eq!(&frame.body[head.args_offset..], b"ARGS");
        }

        #[test]
        fn any_bytes_decode_to_a_head_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(head) = decode_head(&bytes) {
                prop_assert!(head.args_offset <= bytes.len());
            }
        }
    }
}
