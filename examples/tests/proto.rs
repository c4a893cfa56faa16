//! The proto-generated `helloworld.Greeter` served and called over TCP, and serde services
//! refusing protobuf.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use examples::helloworld::{
    GREETER_DESCRIPTOR, GreeterClient, GreeterServer, HelloAllRequest, HelloRequest, ProtoGreeting,
    hello_all_request::Person,
};
use examples::{GreeterServer as SerdeGreeterServer, Greeting};
use rpc_core::{Codec, Error, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use transports::TcpTransport;
use transports::tcp::Status;
use transports::tcp::frame::{FLAG_REQUEST, FLAG_TWO_WAY, Frame, FrameDecoder, serialization_id};

const WAIT: Duration = Duration::from_secs(10);

async fn serve() -> Server {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(GreeterServer::new(ProtoGreeting::new("p1")))
        .add_service(SerdeGreeterServer::new(Greeting::new("p1")))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn proto_client(addr: SocketAddr, codec: Option<Codec>) -> GreeterClient {
    let mut builder = GreeterClient::builder()
        .transport(TcpTransport::default())
        .address(addr.to_string());
    if let Some(codec) = codec {
        builder = builder.codec(codec);
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proto_service_is_served_and_called_in_every_codec() {
    let server = serve().await;
    for codec in [Codec::Protobuf, Codec::Bincode, Codec::Json] {
        let greeter = proto_client(server.local_addr(), Some(codec));
        assert_eq!(greeter.client().codec(), codec);
        let reply = greeter
            .say_hello(HelloRequest { name: "bob".into() })
            .await
            .unwrap();
        assert_eq!(reply.message, "Hello, bob! (from p1)", "{codec}");

        let request = HelloAllRequest {
            people: vec![
                Person {
                    name: "ann".into(),
                    language: "fr".into(),
                },
                Person {
                    name: "max".into(),
                    language: "de".into(),
                },
            ],
            suffix: "!".into(),
        };
        let all = greeter.say_hello_to_all(request).await.unwrap();
        assert_eq!(all.count, 2, "{codec}");
        let messages: Vec<_> = all.replies.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(
            messages,
            ["Bonjour, ann! (from p1)!", "Hallo, max! (from p1)!"],
            "{codec}"
        );
    }
}

#[tokio::test]
async fn a_generated_client_speaks_protobuf_by_default_under_the_proto_names() {
    assert_eq!(GREETER_DESCRIPTOR.name, "helloworld.Greeter");
    let names: Vec<_> = GREETER_DESCRIPTOR.methods.iter().map(|m| m.name).collect();
    assert_eq!(names, ["SayHello", "SayHelloToAll"]);
    assert_eq!(GREETER_DESCRIPTOR.codecs.first(), Some(&Codec::Protobuf));
    let greeter = proto_client("127.0.0.1:1".parse().unwrap(), None);
    assert_eq!(greeter.client().codec(), Codec::Protobuf);
}

#[tokio::test]
async fn a_serde_client_refuses_protobuf_when_it_is_built() {
    let refused = examples::GreeterClient::builder()
        .transport(TcpTransport::default())
        .address("127.0.0.1:1")
        .codec(Codec::Protobuf)
        .build();
    match refused {
        Err(Error::Config(message)) => {
            assert!(message.contains("codec protobuf"), "{message}");
            assert!(message.contains("bincode, json"), "{message}");
        }
        other => panic!(
            "expected a configuration error, got {:?}",
            other.map(|_| ())
        ),
    }
}

/// Sends one two-way request frame by hand and returns the answer.
async fn raw_call(
    addr: SocketAddr,
    codec_id: u8,
    service: &str,
    method: &str,
    args: &[u8],
) -> Frame {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let version = if service == "demo.Greeter" {
        "1.0.0"
    } else {
        ""
    };
    let mut body = Vec::new();
    put_str(&mut body, service);
    put_str(&mut body, version);
    put_str(&mut body, method);
    body.extend_from_slice(&1u16.to_be_bytes());
    put_str(&mut body, "timeout");
    put_str(&mut body, "5000");
    body.extend_from_slice(args);
    let mut wire = BytesMut::new();
    Frame::new(
        FLAG_REQUEST | FLAG_TWO_WAY | codec_id,
        0,
        7,
        Bytes::from(body),
    )
    .encode(&mut wire);

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&wire).await.unwrap();
    let mut decoder = FrameDecoder::new(u32::MAX);
    let mut buf = BytesMut::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(frame) = decoder.decode(&mut buf).unwrap() {
                return frame;
            }
            assert_ne!(stream.read_buf(&mut buf).await.unwrap(), 0, "server closed");
        }
    })
    .await
    .expect("an answer within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serde_service_answers_a_protobuf_call_with_bad_request() {
    let server = serve().await;
    // A protobuf HelloRequest { name: "bob" }, sent to the serde greeter.
    let args = [0x0a, 0x03, b'b', b'o', b'b'];
    let protobuf = serialization_id(Codec::Protobuf);
    assert_eq!(protobuf, 22, "Dubbo's id for protobuf");
    let answer = raw_call(
        server.local_addr(),
        protobuf,
        "demo.Greeter",
        "greet",
        &args,
    )
    .await;
    assert_eq!(answer.header.request_id, 7);
    assert_eq!(
        answer.header.status,
        Status::BadRequest.byte(),
        "{answer:?}"
    );
    assert_eq!(Status::BadRequest.byte(), 40);
    let message = String::from_utf8_lossy(&answer.body);
    assert!(
        message.contains("codec protobuf is not supported"),
        "{message}"
    );

    // The connection's peers are unharmed: the same provider still serves protobuf.
    let greeter = proto_client(server.local_addr(), None);
    let reply = greeter
        .say_hello(HelloRequest { name: "eve".into() })
        .await
        .unwrap();
    assert_eq!(reply.message, "Hello, eve! (from p1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_protobuf_body_gets_a_serialization_error() {
    let server = serve().await;
    let protobuf = serialization_id(Codec::Protobuf);
    // Field 1, length-delimited, claiming 100 bytes where 2 follow.
    let garbage = [0x0a, 100, b'h', b'i'];
    let answer = raw_call(
        server.local_addr(),
        protobuf,
        "helloworld.Greeter",
        "SayHello",
        &garbage,
    )
    .await;
    assert_eq!(
        answer.header.status,
        Status::SerializationError.byte(),
        "{answer:?}"
    );
    let message = String::from_utf8_lossy(&answer.body);
    assert!(message.contains("protobuf"), "{message}");

    let fine = raw_call(
        server.local_addr(),
        protobuf,
        "helloworld.Greeter",
        "SayHello",
        &[0x0a, 0x02, b'h', b'i'],
    )
    .await;
    assert_eq!(fine.header.status, Status::Ok.byte(), "{fine:?}");
}
