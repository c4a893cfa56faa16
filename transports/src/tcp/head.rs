//! The routing head at the start of a request body.
//!
//! ```text
//! service | version | method | attachment count u16 | (key | value)* | arguments...
//! ```
//! Each string is a u16 big-endian length and UTF-8 bytes. The head is read without
//! touching the arguments, so routing never needs the codec. The deadline travels as the
//! attachment `timeout`: the milliseconds left when the frame was written, since the two
//! machines' clocks need not agree.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rpc_core::{Attachments, Error, Request, Result};

/// Attachment key carrying the milliseconds left before the caller's deadline (as Dubbo).
pub const TIMEOUT_KEY: &str = "timeout";

/// Most attachments a request may carry (the timeout included). Metadata is a handful of
/// entries; the cap keeps a hostile head from costing more than a bounded amount of work.
pub const MAX_ATTACHMENTS: usize = 256;

/// A number's decimal digits, formatted on the stack (the timeout is written per call).
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut n: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or("0")
    }
}

/// Length of the head `encode_head` would write.
pub(crate) fn head_len(req: &Request, timeout_ms: &str) -> Result<usize> {
    if req.attachments.len() + 1 > MAX_ATTACHMENTS {
        return Err(Error::Protocol(format!(
            "{} attachments exceed the limit of {MAX_ATTACHMENTS}",
            req.attachments.len() + 1
        )));
    }
    let mut len = 0;
    for s in [&*req.service, &*req.version, &*req.method] {
        len += string_len(s)?;
    }
    len += 2 + string_len(TIMEOUT_KEY)? + string_len(timeout_ms)?;
    for (k, v) in req.attachments.iter() {
        len += string_len(k)? + string_len(v)?;
    }
    Ok(len)
}

fn string_len(s: &str) -> Result<usize> {
    if s.len() > u16::MAX as usize {
        return Err(Error::Protocol(format!(
            "string of {} bytes in request head exceeds 65535",
            s.len()
        )));
    }
    Ok(2 + s.len())
}

/// Writes the head; call [`head_len`] first (it validates every length).
pub(crate) fn encode_head(req: &Request, timeout_ms: &str, out: &mut BytesMut) {
    put_str(out, &req.service);
    put_str(out, &req.version);
    put_str(out, &req.method);
    let count = req.attachments.len() + 1;
    out.put_u16(count as u16);
    put_str(out, TIMEOUT_KEY);
    put_str(out, timeout_ms);
    for (k, v) in req.attachments.iter() {
        put_str(out, k);
        put_str(out, v);
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
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
    use proptest::prelude::*;
    use rpc_core::Codec;
    use std::time::Instant;

    fn request(service: &str, method: &str, attachments: Attachments) -> Request {
        Request {
            service: service.into(),
            version: "1.0".into(),
            method: method.to_owned().into(),
            attachments,
            codec: Codec::Json,
            oneway: false,
            timeout: Duration::from_millis(250),
            deadline: Instant::now(),
            body: Default::default(),
        }
    }

    #[test]
    fn decimals_match_to_string() {
        for n in [0, 1, 9, 10, 999, 1000, 123_456_789, u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }

    proptest! {
        #[test]
        fn heads_round_trip(service in ".{0,40}", method in "[a-z_]{1,20}", pairs in proptest::collection::vec(("[a-z-]{1,10}", ".{0,20}"), 0..5), ms in any::<u32>()) {
            let attachments: Attachments = pairs.into_iter().filter(|(k, _)| k != TIMEOUT_KEY).collect();
            let req = request(&service, &method, attachments.clone());
            let ms = ms.to_string();
            let len = head_len(&req, &ms).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut out = BytesMut::new();
            encode_head(&req, &ms, &mut out);
            prop_assert_eq!(out.len(), len);
            out.extend_from_slice(b"ARGS");
            let head = decode_head(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(head.service, service.as_str());
            prop_assert_eq!(head.version, "1.0");
            prop_assert_eq!(head.method, method.as_str());
            prop_assert_eq!(head.attachments, attachments);
            prop_assert_eq!(head.timeout, Some(Duration::from_millis(ms.parse().unwrap_or_default())));
            prop_assert_eq!(&out[head.args_offset..], b"ARGS");
        }

        #[test]
        fn any_bytes_decode_to_a_head_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(head) = decode_head(&bytes) {
                prop_assert!(head.args_offset <= bytes.len());
            }
        }
    }
}
