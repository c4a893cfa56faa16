//! Interop with a stock gRPC implementation (Python `grpcio`), both ways, on
//! `examples/proto/helloworld.proto`.
//!
//! `scripts/test.sh` makes a virtualenv with `grpcio` and `grpcio-tools` and sets
//! `RPC_TEST_GRPC_PYTHON` to its `python`; without it these tests fail (they never skip).
//! The Python stubs are generated from the proto file here, into a temporary directory.
//!
//! The Rust side is `helloworld.Greeter` written by hand on prost messages (a skeleton
//! over [`rpc_core::format::Prost`], and an untyped client), so it exercises the wire only.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use rpc_core::format::{Decode, Encode, Prost};
use rpc_core::{
    Client, Code, Codec, Context, Error, MethodDescriptor, Request, Response, Server,
    ServiceDescriptor, Skeleton,
};
use serde::{Deserialize, Serialize};
use transports::GrpcTransport;

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

impl rpc_core::format::ProtoMessage for HelloRequest {}
impl rpc_core::format::ProtoMessage for HelloReply {}

static SAY_HELLO: MethodDescriptor = MethodDescriptor {
    args: &["request"],
    ..MethodDescriptor::new("SayHello")
};

static GREETER: ServiceDescriptor = ServiceDescriptor {
    name: "helloworld.Greeter",
    version: "",
    methods: std::slice::from_ref(&SAY_HELLO),
    codecs: &[Codec::Protobuf, Codec::Json, Codec::Bincode],
};

/// The Rust provider: `""` is refused as a bad request, `"slow"` sleeps 2 s, any other
/// name is greeted with the caller's `x-trace-id`.
struct Greeter;

impl Skeleton for Greeter {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &GREETER
    }

    fn call(
        &self,
        _method: usize,
        cx: Context,
        codec: Codec,
        args: Bytes,
    ) -> BoxFuture<'static, rpc_core::Result<Response>> {
        Box::pin(async move {
            let (request,): (HelloRequest,) = <Prost as Decode<_>>::decode(codec, &args)?;
            if request.name.is_empty() {
                return Err(Error::Remote {
                    code: Code::BadRequest,
                    message: "name must not be empty".into(),
                });
            }
            if request.name == "slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let trace = cx.attachment("x-trace-id").unwrap_or("none");
            let reply = HelloReply {
                message: format!("Hello, {}! trace={trace}", request.name),
            };
            let mut out = BytesMut::new();
            <Prost as Encode<HelloReply>>::encode(codec, &reply, &mut out)?;
            // Response metadata: a stock client reads it from the initial metadata.
            cx.set_reply_attachment("x-served-by", "rust");
            Ok(Response {
                codec,
                body: out.freeze(),
                attachments: cx.take_reply_attachments(),
            })
        })
    }
}

fn python() -> PathBuf {
    let python = std::env::var_os("RPC_TEST_GRPC_PYTHON").expect(
        "RPC_TEST_GRPC_PYTHON is not set: run scripts/test.sh, which makes a virtualenv with \
         grpcio and grpcio-tools and sets it to its python",
    );
    PathBuf::from(python)
}

/// Generates the Python stubs of helloworld.proto into a fresh directory.
fn stubs(python: &Path, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("grpc-interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new(python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", root.join("examples/proto").display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg("helloworld.proto")
        .status()
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc failed");
    out
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_calls_the_rust_provider() {
    let python = python();
    let stubs = stubs(&python, "client");
    let server = Server::builder()
        .transport(GrpcTransport::default())
        .add_service(Greeter)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let address = server.local_addr().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script("greeter_client.py"))
            .arg(&stubs)
            .arg(address)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    for check in [
        "ok success",
        "ok metadata sent",
        "ok metadata received",
        "ok application error code",
        "ok application error message",
        "ok deadline exceeded",
        "ok compression refused",
        "ok still connected",
    ] {
        assert!(stdout.contains(check), "missing {check:?} in:\n{stdout}");
    }
    server.shutdown().await;
}

/// A Python grpcio server of helloworld.Greeter; killed (its stdin closed) when dropped.
struct PythonServer {
    child: std::process::Child,
    port: u16,
}

impl PythonServer {
    fn start() -> PythonServer {
        let python = python();
        let stubs = stubs(&python, "server");
        let mut child = Command::new(python)
            .arg(script("greeter_server.py"))
            .arg(&stubs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port from the python server: {line:?}"));
        PythonServer { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn say_hello(client: &Client, name: &str) -> rpc_core::Result<HelloReply> {
    let mut body = BytesMut::new();
    let request = HelloRequest { name: name.into() };
    <Prost as Encode<(&HelloRequest,)>>::encode(Codec::Protobuf, &(&request,), &mut body)?;
    // The Python server sleeps 2 s for "slow": a 300 ms budget must run out.
    let timeout = match name {
        "slow" => Duration::from_millis(300),
        _ => Duration::from_secs(10),
    };
    let mut call = Request::new(
        "helloworld.Greeter",
        "",
        &SAY_HELLO,
        Codec::Protobuf,
        body.freeze(),
        timeout,
    );
    call.attachments.insert("x-trace-id", "rust-trace-9");
    let response = client.invoke(call).await?;
    // The Python server sends its name back as initial metadata.
    assert_eq!(response.attachments.get("x-served-by"), Some("python"));
    <Prost as Decode<HelloReply>>::decode(response.codec, &response.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_calls_a_python_grpcio_server() {
    let server = PythonServer::start();
    let client = Client::builder("helloworld.Greeter")
        .transport(GrpcTransport::default())
        .address(format!("127.0.0.1:{}", server.port))
        .codec(Codec::Protobuf)
        .cluster(rpc_core::client::ClusterMode::Failfast)
        .build()
        .unwrap();
    let reply = say_hello(&client, "rust").await.unwrap();
    assert_eq!(reply.message, "Hello, rust! trace=rust-trace-9");
    let error = say_hello(&client, "").await.unwrap_err();
    assert!(
        matches!(error.root(), Error::Remote { code: Code::BadRequest, message } if message == "name must not be empty (python)"),
        "{error}"
    );
    let started = std::time::Instant::now();
    let error = say_hello(&client, "slow").await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Still fine afterwards.
    assert_eq!(
        say_hello(&client, "again").await.unwrap().message,
        "Hello, again! trace=rust-trace-9"
    );
}
