//! Arbitrary bytes through `decode_head`.
//!
//! Checks: no panic; the arguments offset stays inside the body; a decoded head, written
//! back in the wire layout, decodes to the same head with the same arguments.

#![no_main]

use libfuzzer_sys::fuzz_target;
use transports::tcp::head::{TIMEOUT_KEY, decode_head};

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Ok(head) = decode_head(data) else {
        return;
    };
    assert!(head.args_offset <= data.len());
    let args = &data[head.args_offset..];

    let mut again = Vec::new();
    put_str(&mut again, head.service);
    put_str(&mut again, head.version);
    put_str(&mut again, head.method);
    let count = head.attachments.len() + usize::from(head.timeout.is_some());
    let Ok(count) = u16::try_from(count) else {
        return;
    };
    again.extend_from_slice(&count.to_be_bytes());
    for (key, value) in head.attachments.iter() {
        assert_ne!(key, TIMEOUT_KEY, "the timeout is not an ordinary attachment");
        put_str(&mut again, key);
        put_str(&mut again, value);
    }
    if let Some(timeout) = head.timeout {
        put_str(&mut again, TIMEOUT_KEY);
        put_str(&mut again, &timeout.as_millis().to_string());
    }
    let offset = again.len();
    again.extend_from_slice(args);

    let round = decode_head(&again).expect("a re-encoded head decodes");
    assert_eq!(round.service, head.service);
    assert_eq!(round.version, head.version);
    assert_eq!(round.method, head.method);
    assert_eq!(round.attachments, head.attachments);
    assert_eq!(round.timeout, head.timeout);
    assert_eq!(round.args_offset, offset);
    assert_eq!(&again[round.args_offset..], args);
});
