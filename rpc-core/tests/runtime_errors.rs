//! What errors say and how they match: I/O causes in `Display`, timeouts that name where
//! the call stood yet still match as timeouts, one "too large" error for both directions,
//! and byte payloads that stay compact in JSON.

use std::time::Duration;

use bytes::BytesMut;
use rpc_core::codec::Blob;
use rpc_core::format::{Decode, Encode, Serde};
use rpc_core::{Code, Codec, Error};

fn refused() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused")
}

#[test]
fn transport_and_unavailable_errors_say_their_io_cause() {
    let unavailable = Error::unavailable("connect to 127.0.0.1:1 failed", Some(refused()));
    assert_eq!(
        unavailable.to_string(),
        "provider unavailable: connect to 127.0.0.1:1 failed: Connection refused"
    );
    let transport = Error::io("write to 127.0.0.1:9 failed", refused());
    assert_eq!(
        transport.to_string(),
        "transport error: write to 127.0.0.1:9 failed: Connection refused"
    );
    // Still there for code that inspects it.
    assert!(std::error::Error::source(&transport).is_some());
    // Without a cause, nothing is added.
    assert_eq!(
        Error::transport("connection to 127.0.0.1:9 closed by peer").to_string(),
        "transport error: connection to 127.0.0.1:9 closed by peer"
    );
    assert_eq!(
        Error::unavailable("connection closed", None).to_string(),
        "provider unavailable: connection closed"
    );
}

#[test]
fn each_timeout_names_where_the_call_stood() {
    let budget = Duration::from_secs(1);
    let last = Error::unavailable("connect to 10.0.0.9:20880 failed", Some(refused()));
    for (error, text) in [
        (
            Error::timeout_connecting(budget, "10.0.0.9:20880", None),
            "call timed out after 1s: never connected to 10.0.0.9:20880 (no connection could \
             be opened before the deadline)",
        ),
        (
            Error::timeout_connecting(budget, "10.0.0.9:20880", Some(&last)),
            "call timed out after 1s: never connected to 10.0.0.9:20880 (no connection could \
             be opened before the deadline; the last attempt: provider unavailable: connect \
             to 10.0.0.9:20880 failed: Connection refused)",
        ),
        (
            Error::timeout_awaiting_answer(budget, "10.0.0.9:20880"),
            "call timed out after 1s: the request was sent to 10.0.0.9:20880 but no answer \
             came before the deadline (the provider is slow, overloaded or not answering)",
        ),
        (
            Error::timeout_in_handler(budget, "10.0.0.9:20880"),
            "call timed out after 1s: the provider at 10.0.0.9:20880 stopped the call at the \
             deadline (the handler took too long)",
        ),
    ] {
        assert_eq!(error.to_string(), text);
        assert!(error.timeout_stage().is_some());
    }
}

#[test]
fn a_timeout_with_a_stage_still_matches_as_a_timeout() {
    let budget = Duration::from_millis(250);
    let error = Error::timeout_awaiting_answer(budget, "127.0.0.1:9");
    assert!(error.is_timeout());
    assert!(matches!(error.root(), Error::Timeout(d) if *d == budget));
    assert_eq!(error.code(), Code::Timeout);
    assert_eq!(Code::for_error(&error), Code::Timeout);
    // Behind the cluster's wrappers too.
    let exhausted = Error::Exhausted {
        attempts: vec![
            ("a:1".into(), Error::unavailable("down", None)),
            ("b:1".into(), error.clone()),
        ],
    };
    assert!(exhausted.is_timeout());
    assert!(matches!(exhausted.root(), Error::Timeout(_)));
    assert_eq!(exhausted.timeout_stage(), error.timeout_stage());
    let failsafe = Error::Failsafe(Box::new(error.clone()));
    assert!(failsafe.is_timeout());
    assert_eq!(failsafe.timeout_stage(), error.timeout_stage());
    // A bare timeout (the client's own deadline timer) has no stage.
    assert_eq!(Error::Timeout(budget).timeout_stage(), None);
}

#[test]
fn a_message_too_large_names_size_limit_side_and_setting_either_way() {
    let request = Error::request_too_large(9_437_226, 8_388_608, "TcpConfig::max_frame_len");
    assert_eq!(
        request.to_string(),
        "request of 9437226 bytes exceeds the provider's limit of 8388608 bytes; raise \
         `TcpConfig::max_frame_len` on the provider (each side limits what it receives: the \
         provider requests, the consumer responses)"
    );
    assert_eq!(request.code(), Code::BadRequest);
    let response = Error::response_too_large(9_437_189, 8_388_608, "TcpConfig::max_frame_len");
    assert_eq!(
        response.to_string(),
        "response of 9437189 bytes exceeds the consumer's limit of 8388608 bytes; raise \
         `TcpConfig::max_frame_len` on the consumer (each side limits what it receives: the \
         provider requests, the consumer responses)"
    );
    assert_eq!(response.code(), Code::BadResponse);
    for error in [&request, &response] {
        assert!(matches!(
            error,
            Error::MessageTooLarge {
                limit: 8_388_608,
                ..
            }
        ));
    }
    // A limit that cannot be raised (the transport's own maximum) gives no advice.
    assert_eq!(
        Error::request_too_large(5_000_000_000, u32::MAX.into(), "").to_string(),
        "request of 5000000000 bytes exceeds 4294967295 bytes, the most the transport can carry"
    );
}

#[test]
fn a_request_fails_fast_on_a_down_provider_unless_told_it_may_wait() {
    static METHOD: rpc_core::MethodDescriptor = rpc_core::MethodDescriptor::new("m");
    let request = rpc_core::Request::new(
        "s",
        "",
        &METHOD,
        Codec::Bincode,
        bytes::Bytes::new(),
        Duration::from_secs(1),
    );
    assert!(!request.wait_for_ready);
}

fn encoded<T: ?Sized>(codec: Codec, value: &T) -> BytesMut
where
    Serde: Encode<T>,
{
    let mut out = BytesMut::new();
    <Serde as Encode<T>>::encode(codec, value, &mut out).unwrap();
    out
}

#[test]
fn a_4_mib_blob_is_base64_in_json_and_unchanged_in_bincode() {
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let blob = Blob::from(payload.clone());

    let vec_json = encoded(Codec::Json, &(&payload,)).len();
    let blob_json = encoded(Codec::Json, &(&blob,)).len();
    eprintln!("4 MiB argument in JSON: Vec<u8> {vec_json} bytes, Blob {blob_json} bytes");
    assert!(vec_json > 3 * payload.len(), "{vec_json}");
    // base64 (4 characters per 3 bytes), quotes and brackets.
    assert_eq!(blob_json, payload.len().div_ceil(3) * 4 + 4);

    // bincode: the very same bytes as a Vec<u8>, so switching a type is free there, and
    // the consistent-hash key does not move either.
    assert_eq!(
        encoded(Codec::Bincode, &(&payload,)),
        encoded(Codec::Bincode, &(&blob,))
    );
    assert_eq!(
        <Serde as Encode<Vec<u8>>>::hash_key(&payload),
        <Serde as Encode<Blob>>::hash_key(&blob)
    );

    for codec in Codec::SERDE {
        let back: (Blob,) =
            <Serde as Decode<(Blob,)>>::decode(codec, &encoded(codec, &(&blob,))).unwrap();
        assert_eq!(back.0, blob, "{codec}");
    }
    // A Blob reads what a Vec<u8> wrote, in both codecs.
    for codec in Codec::SERDE {
        let back: (Blob,) =
            <Serde as Decode<(Blob,)>>::decode(codec, &encoded(codec, &(&payload,))).unwrap();
        assert_eq!(back.0.as_slice(), payload.as_slice(), "{codec}");
    }
}
