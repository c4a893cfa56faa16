//! `#[service]` end to end without a network: the generated skeleton driven directly, and
//! the generated client stub through a real `Dispatcher` behind an in-process transport.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::__private::{BoxFuture, Bytes, BytesMut};
use rpc_core::server::{Dispatcher, IncomingCall, Reply};
use rpc_core::{
    Attachments, Channel, Codec, Context, Error, Listener, Request, Response, Skeleton, Transport,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tower::util::BoxCloneSyncService;

/// A user error: travels as a value inside the method's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GreetError {
    /// No name given.
    Empty,
    /// The charge was refused.
    Refused {
        /// Why.
        reason: String,
    },
}

/// An order to charge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: u64,
    /// What was ordered.
    pub item: String,
}

/// What a charge returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Order id.
    pub order: u64,
    /// Amount charged.
    pub total: u64,
}

/// A greeting service.
#[rpc_core::service(name = "demo.Greeter", version = "1.0.0")]
pub trait Greeter {
    /// Says hello to `name`.
    async fn greet(&self, name: String) -> Result<String, GreetError>;

    /// Charges an order.
    #[rpc(
        timeout_ms = 200,
        retries = 0,
        cluster = "failfast",
        loadbalance = "random",
        idempotent,
        hash_arg = "order"
    )]
    async fn charge(&self, order: Order, amount: u64) -> Result<Receipt, GreetError>;

    /// Records a line; nobody waits for it.
    #[rpc(oneway)]
    async fn log(&self, line: String);

    /// Who the caller says it is.
    async fn whoami(&self, cx: &rpc_core::Context) -> String;

    /// A method without arguments.
    async fn ping(&self) -> u32;

    /// Sleeps `ms` milliseconds, then echoes it.
    #[rpc(timeout_ms = 50)]
    async fn slow(&self, ms: u64) -> u64;

    /// Panics.
    async fn explode(&self, message: String) -> ();
}

#[derive(Default)]
struct MyGreeter {
    lines: Mutex<Vec<String>>,
    logged: Notify,
}

impl Greeter for MyGreeter {
    async fn greet(&self, name: String) -> Result<String, GreetError> {
        if name.is_empty() {
            return Err(GreetError::Empty);
        }
        Ok(format!("hello, {name}"))
    }

    async fn charge(&self, order: Order, amount: u64) -> Result<Receipt, GreetError> {
        if amount == 0 {
            return Err(GreetError::Refused {
                reason: format!("nothing to charge for {}", order.item),
            });
        }
        Ok(Receipt {
            order: order.id,
            total: amount,
        })
    }

    async fn log(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.logged.notify_one();
    }

    async fn whoami(&self, cx: &Context) -> String {
        cx.attachment("user").unwrap_or("anonymous").to_owned()
    }

    async fn ping(&self) -> u32 {
        7
    }

    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn explode(&self, message: String) {
        panic!("{message}");
    }
}

// A private trait with defaults, a `&Context` imported by name and a raw identifier.
#[rpc_core::service]
trait Echo {
    async fn echo(&self, cx: &Context, text: String) -> String;
    async fn r#type(&self) -> String;
}

struct MyEcho;

impl Echo for MyEcho {
    async fn echo(&self, cx: &Context, text: String) -> String {
        match cx.attachment("prefix") {
            Some(prefix) => format!("{prefix}{text}"),
            None => text,
        }
    }

    async fn r#type(&self) -> String {
        "echo".to_owned()
    }
}

/// Calls method `name` of `skeleton` the way the dispatcher does.
async fn call<A, R>(
    skeleton: &impl Skeleton,
    codec: Codec,
    cx: Context,
    name: &str,
    args: &A,
) -> rpc_core::Result<R>
where
    A: Serialize,
    R: DeserializeOwned,
{
    let index = skeleton.descriptor().method_index(name).unwrap();
    let mut body = BytesMut::new();
    codec.encode(args, &mut body)?;
    let result = skeleton.call(index, cx, codec, body.freeze()).await?;
    codec.decode(&result.body)
}

fn order() -> Order {
    Order {
        id: 42,
        item: "tea".to_owned(),
    }
}

#[tokio::test]
async fn the_skeleton_runs_every_method_in_both_codecs() {
    let server = GreeterServer::new(MyGreeter::default());
    for codec in Codec::SERDE {
        let cx = Context::default;
        let greeting: Result<String, GreetError> = call(&server, codec, cx(), "greet", &("bob",))
            .await
            .unwrap();
        assert_eq!(greeting, Ok("hello, bob".to_owned()));

        let receipt: Result<Receipt, GreetError> =
            call(&server, codec, cx(), "charge", &(order(), 5u64))
                .await
                .unwrap();
        assert_eq!(
            receipt,
            Ok(Receipt {
                order: 42,
                total: 5
            })
        );

        let () = call(&server, codec, cx(), "log", &("a line",))
            .await
            .unwrap();
        let pong: u32 = call(&server, codec, cx(), "ping", &()).await.unwrap();
        assert_eq!(pong, 7);
        let whoami: String = call(&server, codec, cx(), "whoami", &()).await.unwrap();
        assert_eq!(whoami, "anonymous");
    }
}

#[tokio::test]
async fn user_errors_round_trip_as_values() {
    let server = GreeterServer::new(MyGreeter::default());
    for codec in Codec::SERDE {
        let empty: Result<String, GreetError> =
            call(&server, codec, Context::default(), "greet", &("",))
                .await
                .unwrap();
        assert_eq!(empty, Err(GreetError::Empty));

        let refused: Result<Receipt, GreetError> = call(
            &server,
            codec,
            Context::default(),
            "charge",
            &(order(), 0u64),
        )
        .await
        .unwrap();
        assert_eq!(
            refused,
            Err(GreetError::Refused {
                reason: "nothing to charge for tea".to_owned()
            })
        );
    }
}

#[tokio::test]
async fn a_context_argument_gives_the_handler_the_attachments() {
    let server = GreeterServer::new(MyGreeter::default());
    let attachments: Attachments = [("user", "alice")].into_iter().collect();
    let cx = Context::new(attachments, None, None);
    let whoami: String = call(&server, Codec::Json, cx, "whoami", &()).await.unwrap();
    assert_eq!(whoami, "alice");

    let echo = EchoServer::new(MyEcho);
    let cx = Context::new([("prefix", "> ")].into_iter().collect(), None, None);
    let echoed: String = call(&echo, Codec::Bincode, cx, "echo", &("hi",))
        .await
        .unwrap();
    assert_eq!(echoed, "> hi");
}

#[test]
fn the_descriptor_lists_methods_in_order_with_their_options() {
    let d = &GREETER_DESCRIPTOR;
    assert_eq!((d.name, d.version), ("demo.Greeter", "1.0.0"));
    let names: Vec<_> = d.methods.iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        [
            "greet", "charge", "log", "whoami", "ping", "slow", "explode"
        ]
    );

    let greet = &d.methods[0];
    assert_eq!(greet.args, ["name"]);
    assert_eq!(greet.timeout_ms, None);
    assert_eq!(greet.retries, None);
    assert!(!greet.oneway && !greet.idempotent);
    assert_eq!(
        (greet.cluster, greet.loadbalance, greet.hash_arg),
        (None, None, None)
    );

    let charge = &d.methods[1];
    assert_eq!(charge.args, ["order", "amount"]);
    assert_eq!(charge.timeout_ms, Some(200));
    assert_eq!(charge.retries, Some(0));
    assert!(charge.idempotent && !charge.oneway);
    assert_eq!(charge.cluster, Some("failfast"));
    assert_eq!(charge.loadbalance, Some("random"));
    assert_eq!(charge.hash_arg, Some("order"));

    assert!(d.methods[2].oneway);
    assert_eq!(
        d.methods[3].args,
        [] as [&str; 0],
        "&Context is not a wire argument"
    );
    assert_eq!(d.methods[5].timeout_ms, Some(50));

    let server = GreeterServer::new(MyGreeter::default());
    assert!(std::ptr::eq(server.descriptor(), &GREETER_DESCRIPTOR));
}

#[test]
fn an_unnamed_service_is_called_after_its_trait() {
    assert_eq!(
        (ECHO_DESCRIPTOR.name, ECHO_DESCRIPTOR.version),
        ("Echo", "")
    );
    let names: Vec<_> = ECHO_DESCRIPTOR.methods.iter().map(|m| m.name).collect();
    assert_eq!(names, ["echo", "type"]);
    assert_eq!(ECHO_DESCRIPTOR.methods[0].args, ["text"]);
}

#[tokio::test]
async fn an_unknown_method_index_is_method_not_found() {
    let server = GreeterServer::new(MyGreeter::default());
    let result = server
        .call(
            99,
            Context::default(),
            Codec::Json,
            Bytes::from_static(b"[]"),
        )
        .await;
    match result {
        Err(Error::MethodNotFound { service, method }) => {
            assert_eq!(service, "demo.Greeter");
            assert_eq!(method, "#99");
        }
        other => panic!("expected MethodNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn arguments_of_the_wrong_shape_are_a_codec_error() {
    let server = GreeterServer::new(MyGreeter::default());
    let index = GREETER_DESCRIPTOR.method_index("charge").unwrap();
    let result = server
        .call(
            index,
            Context::default(),
            Codec::Json,
            Bytes::from_static(br#"["not an order"]"#),
        )
        .await;
    assert!(
        matches!(result, Err(Error::Codec { codec: "json", .. })),
        "{result:?}"
    );
}

/// Hands requests to a real [`Dispatcher`]'s admission path and skips only the wire.
/// One-way calls are handed off and answered at once, as a transport does.
struct InProcess {
    dispatcher: Dispatcher,
}

struct OneshotReply(tokio::sync::oneshot::Sender<rpc_core::Result<Response>>);

impl Reply for OneshotReply {
    fn send(self, result: rpc_core::Result<Response>) {
        let _ = self.0.send(result);
    }
}

impl Transport for InProcess {
    fn protocol(&self) -> &'static str {
        "inprocess"
    }

    fn connect(&self, _address: &str) -> rpc_core::Result<Channel> {
        let dispatcher = self.dispatcher.clone();
        Ok(BoxCloneSyncService::new(tower::service_fn(
            move |req: Request| {
                let mut session = dispatcher.session::<OneshotReply>();
                async move {
                    let call = IncomingCall {
                        service: &req.service,
                        version: &req.version,
                        method: req.method.name,
                        codec: req.codec,
                        context: Context::new(req.attachments.clone(), Some(req.deadline), None),
                        body: req.body.clone(),
                    };
                    if req.oneway {
                        session.dispatch(1, call, None);
                        return Ok(Response::new(req.codec, Bytes::new()));
                    }
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    session.dispatch(1, call, Some(OneshotReply(tx)));
                    // The session lives until the answer: dropping it abandons the call.
                    let answer = rx.await;
                    drop(session);
                    answer.unwrap_or_else(|_| Err(Error::transport("call dropped")))
                }
            },
        )))
    }

    fn bind(
        &self,
        _address: &str,
        _dispatcher: Dispatcher,
    ) -> BoxFuture<'static, rpc_core::Result<Box<dyn Listener>>> {
        Box::pin(async {
            Err(Error::Config(
                "the in-process transport does not bind".into(),
            ))
        })
    }
}

fn greeter_client(greeter: Arc<MyGreeter>, codec: Codec) -> GreeterClient {
    let dispatcher = Dispatcher::new(vec![
        Arc::new(GreeterServer::from_arc(greeter)),
        Arc::new(EchoServer::new(MyEcho)),
    ]);
    GreeterClient::builder()
        .transport(InProcess { dispatcher })
        .address("in-process")
        .codec(codec)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_client_stub_makes_typed_calls_in_both_codecs() {
    for codec in Codec::SERDE {
        let client = greeter_client(Arc::default(), codec);
        assert_eq!(client.client().codec(), codec);
        assert_eq!(client.client().service(), "demo.Greeter");
        assert_eq!(
            client.greet("bob".into()).await.unwrap(),
            Ok("hello, bob".into())
        );
        assert_eq!(
            client.greet(String::new()).await.unwrap(),
            Err(GreetError::Empty)
        );
        assert_eq!(
            client.charge(order(), 3).await.unwrap(),
            Ok(Receipt {
                order: 42,
                total: 3
            })
        );
        assert_eq!(client.ping().await.unwrap(), 7);
    }
}

#[tokio::test]
async fn attachments_set_on_the_stub_reach_the_handler_context() {
    let client = greeter_client(Arc::default(), Codec::Bincode);
    assert_eq!(client.whoami().await.unwrap(), "anonymous");
    let alice = client.with_attachment("user", "alice");
    assert_eq!(alice.whoami().await.unwrap(), "alice");
    assert_eq!(
        client.whoami().await.unwrap(),
        "anonymous",
        "the original is unchanged"
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_come_from_the_method_or_from_with_timeout() {
    let client = greeter_client(Arc::default(), Codec::Json);
    assert_eq!(client.slow(10).await.unwrap(), 10);
    // `#[rpc(timeout_ms = 50)]`; the provider, sharing the deadline, may be the one to fire.
    let err = client.slow(1_000).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(budget) if budget <= Duration::from_millis(50)),
        "{err:?}"
    );
    let patient = client.with_timeout(Duration::from_secs(5));
    assert_eq!(patient.slow(1_000).await.unwrap(), 1_000);
    let impatient = client.with_timeout(Duration::from_millis(5));
    assert!(impatient.slow(20).await.unwrap_err().is_timeout());
}

#[tokio::test]
async fn a_panicking_handler_is_a_handler_error() {
    let client = greeter_client(Arc::default(), Codec::Bincode);
    let err = client.explode("boom".into()).await.unwrap_err();
    match err {
        Error::Handler(message) => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected Error::Handler, got {other:?}"),
    }
    assert_eq!(client.ping().await.unwrap(), 7, "the service still serves");
}

#[tokio::test]
async fn a_oneway_call_returns_at_once_and_still_runs_the_handler() {
    let greeter = Arc::new(MyGreeter::default());
    let client = greeter_client(greeter.clone(), Codec::Json);
    let sent: Result<(), Error> = client.log("started".into()).await;
    sent.unwrap();
    tokio::time::timeout(Duration::from_secs(5), greeter.logged.notified())
        .await
        .expect("the handler ran");
    assert_eq!(*greeter.lines.lock().unwrap(), ["started"]);
}

#[tokio::test]
async fn a_stub_from_an_untyped_client_calls_the_same_service() {
    let client = greeter_client(Arc::default(), Codec::Bincode);
    let rewrapped = GreeterClient::new(client.client().clone());
    assert_eq!(rewrapped.ping().await.unwrap(), 7);
    let debug = format!("{client:?}");
    assert!(debug.contains("demo.Greeter"), "{debug}");
}
