//! The proto-generated `helloworld.Greeter` over the HTTP/2 transport: every codec, and
//! plain HTTP/1.1 JSON with the request message as the body.

use std::time::Duration;

use examples::helloworld::{GreeterClient, GreeterServer, HelloRequest, ProtoGreeting};
use rpc_core::{Codec, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transports::GrpcTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_greeter_is_called_over_http2_in_every_codec() {
    let server = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(GreeterServer::new(ProtoGreeting::new("h2")))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    for codec in [Codec::Protobuf, Codec::Json, Codec::Bincode] {
        let greeter = GreeterClient::builder()
            .transport(GrpcTransport::default())
            .address(server.local_addr().to_string())
            .codec(codec)
            .build()
            .unwrap();
        let reply = greeter
            .say_hello(HelloRequest {
                name: format!("{codec}"),
            })
            .await
            .unwrap();
        assert_eq!(reply.message, format!("Hello, {codec}! (from h2)"));
    }

    let body = r#"{"name": "curl"}"#;
    let request = format!(
        "POST /helloworld.Greeter/SayHello HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(r#"{"message":"Hello, curl! (from h2)"}"#),
        "{answer}"
    );
    server.shutdown().await;
}
