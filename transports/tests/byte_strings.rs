//! `Vec<u8>` and `bytes::Bytes` arguments and results travel as byte strings, in every
//! codec and on both transports, with nothing for the user to annotate; and frames right
//! at the 8 MiB limit go through while one byte more is refused. Large bodies leave in
//! vectored writes from their own memory; many of them in flight at once, between small
//! ones, on a plain and on a TLS connection, each come back whole and in their own call.

mod certs;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::{Codec, Error, Server, Transport};
use transports::{GrpcConfig, GrpcTransport, TcpConfig, TcpTransport};

/// Byte payloads in every position the macro handles.
#[rpc_core::service(name = "test.Bytes")]
pub trait ByteStrings {
    /// Returns `payload` with `tag` appended.
    async fn tagged(&self, payload: Vec<u8>, tag: u8) -> Vec<u8>;
    /// A path-qualified `Vec<u8>`, returning its length.
    async fn len(&self, payload: std::vec::Vec<u8>) -> u64;
    /// `bytes::Bytes` both ways.
    async fn shared(&self, payload: Bytes) -> Bytes;
    /// A result only: `len` bytes counting up from 0.
    async fn make(&self, len: u32) -> Vec<u8>;
}

#[derive(Clone)]
struct ByteStringsImpl;

impl ByteStrings for ByteStringsImpl {
    async fn tagged(&self, mut payload: Vec<u8>, tag: u8) -> Vec<u8> {
        payload.push(tag);
        payload
    }

    async fn len(&self, payload: Vec<u8>) -> u64 {
        payload.len() as u64
    }

    async fn shared(&self, payload: Bytes) -> Bytes {
        payload
    }

    async fn make(&self, len: u32) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }
}

const MIB: usize = 1024 * 1024;

async fn serve<T: Transport>(transport: T) -> SocketAddr {
    let server = Server::builder()
        .transport(transport)
        .add_service(ByteStringsServer::new(ByteStringsImpl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run_until(std::future::pending()));
    addr
}

fn client<T: Transport>(transport: T, addr: SocketAddr, codec: Codec) -> ByteStringsClient {
    ByteStringsClient::builder()
        .transport(transport)
        .address(addr.to_string())
        .codec(codec)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

async fn round_trips(client: &ByteStringsClient, large: usize) {
    for len in [0, 1, 255, 4096, large] {
        let payload = pattern(len);
        let mut expected = payload.clone();
        expected.push(9);
        assert_eq!(client.tagged(payload.clone(), 9).await.unwrap(), expected);
        assert_eq!(client.len(payload.clone()).await.unwrap(), len as u64);
        let shared = Bytes::from(payload);
        assert_eq!(client.shared(shared.clone()).await.unwrap(), shared);
        let made = client.make(len as u32).await.unwrap();
        assert_eq!(made.len(), len);
        assert!(made.iter().enumerate().all(|(i, byte)| *byte == i as u8));
    }
}

/// A provider on one transport made by `transport`, and a client per serde codec on another.
async fn round_trips_in_every_codec<T: Transport>(transport: impl Fn() -> T) {
    let addr = serve(transport()).await;
    for codec in Codec::SERDE {
        let client = client(transport(), addr, codec);
        // JSON writes about four bytes of text per byte: keep its large payload smaller.
        let large = if codec == Codec::Json { MIB } else { 4 * MIB };
        round_trips(&client, large).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_strings_round_trip_over_tcp_in_every_codec() {
    let config = TcpConfig::default().max_frame_len(16 * MIB as u32);
    round_trips_in_every_codec(|| TcpTransport::new(config.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_strings_round_trip_over_http2_in_every_codec() {
    let config = GrpcConfig::default().max_message_len(16 * MIB as u32);
    round_trips_in_every_codec(|| GrpcTransport::new(config.clone())).await;
}

/// The provider's skeleton reads what a plain `Vec<u8>` argument tuple encodes, and a
/// plain decode reads what it answers: the wrapping is invisible on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_is_what_a_plain_vec_of_bytes_writes() {
    use tower::ServiceExt;
    let addr = serve(TcpTransport::default()).await;
    let channel = TcpTransport::default().connect(&addr.to_string()).unwrap();
    for codec in Codec::SERDE {
        let payload = pattern(1000);
        let mut body = bytes::BytesMut::new();
        codec.encode(&(&payload, 5u8), &mut body).unwrap();
        let request = rpc_core::Request::new(
            BYTE_STRINGS_DESCRIPTOR.name,
            BYTE_STRINGS_DESCRIPTOR.version,
            &BYTE_STRINGS_DESCRIPTOR.methods[0],
            codec,
            body.freeze(),
            Duration::from_secs(5),
        );
        let response = channel.clone().oneshot(request).await.unwrap();
        let answer: Vec<u8> = response.codec.decode(&response.body).unwrap();
        assert_eq!(answer.len(), 1001);
        assert_eq!(&answer[..1000], &payload[..]);
        assert_eq!(answer[1000], 5);
    }
}

/// With the default 8 MiB frame limit on both sides: a request whose frame is exactly at
/// the limit is served, one byte more is refused with `MessageTooLarge`, and a response
/// at the limit comes back while one byte more fails that call only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_at_the_8_mib_limit_pass_and_one_byte_more_is_refused() {
    let limit = 8 * MIB as u64;
    let addr = serve(TcpTransport::default()).await;
    let client = client(TcpTransport::default(), addr, Codec::Bincode);

    // The error names the frame's size: what the request adds to the payload.
    let probe = 8 * MIB;
    let error = client.len(vec![1; probe]).await.unwrap_err();
    let Error::MessageTooLarge {
        size, limit: seen, ..
    } = error
    else {
        panic!("expected MessageTooLarge, got {error:?}");
    };
    assert_eq!(seen, limit);
    let overhead = size as usize - probe;
    let at_limit = limit as usize - overhead;
    assert_eq!(
        client.len(vec![2; at_limit]).await.unwrap(),
        at_limit as u64
    );
    let error = client.len(vec![3; at_limit + 1]).await.unwrap_err();
    assert!(
        matches!(error, Error::MessageTooLarge { size, .. } if size == limit + 1),
        "{error:?}"
    );

    // Responses: find the response overhead the same way, from the consumer's error.
    let error = client.make(8 * MIB as u32).await.unwrap_err();
    let Error::MessageTooLarge { size, .. } = error else {
        panic!("expected MessageTooLarge, got {error:?}");
    };
    let at_limit = limit as usize - (size as usize - 8 * MIB);
    assert_eq!(client.make(at_limit as u32).await.unwrap().len(), at_limit);
    let error = client.make(at_limit as u32 + 1).await.unwrap_err();
    assert!(
        matches!(error, Error::MessageTooLarge { size, .. } if size == limit + 1),
        "{error:?}"
    );
    // The connection survived every refusal.
    assert_eq!(client.len(vec![4; 10]).await.unwrap(), 10);
}

/// Calls of many sizes at once on one connection: small bodies are copied into the write
/// batch, large ones (32 KiB and up) are queued as their own parts between them, and the
/// writer hands the lot to vectored writes. Every answer must be its own call's bytes.
async fn mixed_sizes_in_flight(client: ByteStringsClient) {
    let sizes = [
        10,
        40 * 1024,
        3,
        300 * 1024,
        0,
        2 * MIB,
        31 * 1024,
        33 * 1024,
    ];
    let calls = (0..64u8).map(|i| {
        let client = client.clone();
        let len = sizes[usize::from(i) % sizes.len()];
        tokio::spawn(async move {
            let payload: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(31) ^ i).collect();
            let answer = client.tagged(payload.clone(), i).await.unwrap();
            assert_eq!(answer.len(), len + 1, "call {i}");
            assert!(
                answer[..len] == payload[..],
                "call {i}: bytes of another call"
            );
            assert_eq!(answer[len], i);
        })
    });
    for call in calls {
        call.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_bodies_in_flight_together_keep_their_bytes() {
    let addr = serve(TcpTransport::default()).await;
    mixed_sizes_in_flight(client(TcpTransport::default(), addr, Codec::Bincode)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_bodies_in_flight_together_keep_their_bytes_over_tls() {
    use transports::tls::{ClientTls, ServerTls};
    let ca = certs::Ca::new("test CA");
    let leaf = ca.server_leaf();
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let addr = serve(TcpTransport::default().with_server_tls(tls).unwrap()).await;
    let trust = ClientTls::new().ca_pem(ca.pem().as_bytes()).unwrap();
    let transport = TcpTransport::default().with_client_tls(trust).unwrap();
    mixed_sizes_in_flight(client(transport, addr, Codec::Bincode)).await;
}
