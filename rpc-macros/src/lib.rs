//! The `#[service]` attribute: turns a trait into an RPC service.
//!
//! Use it through `rpc_core::service`, whose documentation (the attribute's, below) lists
//! what it generates, the rules for methods and every `#[rpc(...)]` option. The generated
//! code names `::rpc_core::...` paths only, so the user crate needs `rpc-core` (and `serde`
//! for its own types) and nothing else.
//!
//! A walk-through with one complete service, a provider and a consumer is the guide,
//! `docs/guide.md` in the repository; its example is compiled and run as a doc test of
//! this crate (the `#[cfg(doctest)] mod guide` at the end of `src/lib.rs`).

mod descriptor;
mod model;
mod skeleton;
mod stub;
mod trait_def;
mod wire_types;

use proc_macro::TokenStream;
use quote::quote;
use syn::ItemTrait;

/// Turns a trait into an RPC service: the trait, its descriptor, a client stub and a server
/// skeleton.
///
/// A walk-through with one complete service, its provider and its consumer (dependencies,
/// `use` lines, registry, load balancing, cluster modes, layers, shutdown) is the guide,
/// `docs/guide.md` in the repository. This is the reference.
///
/// ```
/// use rpc_core::Context;
/// use serde::{Deserialize, Serialize};
///
/// /// What `greet` and `charge` refuse: an error of your own, sent as a value.
/// #[derive(Debug, Serialize, Deserialize)]
/// pub struct GreetError(pub String);
///
/// /// An order.
/// #[derive(Debug, Serialize, Deserialize)]
/// pub struct Order { pub id: u64 }
///
/// /// A receipt.
/// #[derive(Debug, Serialize, Deserialize)]
/// pub struct Receipt { pub order: u64 }
///
/// #[rpc_core::service(name = "demo.Greeter", version = "1.0.0")]
/// pub trait Greeter {
///     /// Says hello. Callers get `Result<Result<String, GreetError>, rpc_core::Error>`.
///     async fn greet(&self, name: String) -> Result<String, GreetError>;
///
///     /// Charges an order.
///     #[rpc(timeout_ms = 200, retries = 0, cluster = "failfast", idempotent)]
///     #[rpc(loadbalance = "consistenthash", hash_arg = "order")]
///     async fn charge(&self, amount: u64, order: Order) -> Result<Receipt, GreetError>;
///
///     /// Logs a line; the caller does not wait.
///     #[rpc(oneway)]
///     async fn log(&self, line: String);
///
///     /// `&Context` first: the handler sees attachments, deadline and peer.
///     async fn whoami(&self, cx: &Context) -> String;
/// }
///
/// let charge = &GREETER_DESCRIPTOR.methods[1];
/// assert_eq!((GREETER_DESCRIPTOR.name, GREETER_DESCRIPTOR.version), ("demo.Greeter", "1.0.0"));
/// assert_eq!((charge.name, charge.timeout_ms, charge.hash_arg), ("charge", Some(200), Some("order")));
/// assert_eq!(charge.args, ["amount", "order"]);
/// assert!(GREETER_DESCRIPTOR.methods[2].oneway);
/// assert_eq!(GREETER_DESCRIPTOR.methods[3].args, [] as [&str; 0], "the context is not an argument");
/// ```
///
/// # What it generates
///
/// For a trait `Greeter` (every item gets the trait's visibility):
///
/// - **The trait itself**, with `Send + Sync + 'static` supertraits and each
///   `async fn m(&self, ..) -> R` rewritten to
///   `fn m(&self, ..) -> impl Future<Output = R> + Send`. Implementations still write
///   `async fn`; the `Send` bound lets the server run handlers on any worker thread.
///   `#[rpc(...)]` attributes are removed, docs and other attributes kept.
/// - **`GREETER_DESCRIPTOR`**, a `static rpc_core::ServiceDescriptor`: the service name
///   (`name = ".."`, default the trait name), version (`version = ".."`, default empty) and
///   one `MethodDescriptor` per method in declaration order, holding the argument names and
///   the `#[rpc(...)]` options.
/// - **`GreeterClient`**, the stub: `builder()` (a `ClientBuilder` preset with name and
///   version), `new(Client)`, `client()`, `with_timeout(..)`, `with_attachment(k, v)`, and per
///   method `async fn m(&self, args..) -> Result<R, rpc_core::Error>` (`Result<(), _>` for
///   one-way methods, which do not wait for the provider). The `&Context` argument is not
///   part of the stub. Arguments travel as one tuple.
/// - **`GreeterServer<T>`**, the skeleton: `new(T)`, `from_arc(Arc<T>)`, and
///   `impl<T: Greeter> rpc_core::Skeleton`, to register with `ServerBuilder::add_service`.
///
/// # Errors: yours and the framework's
///
/// Every stub method returns `Result<R, rpc_core::Error>`: the outer error is the
/// framework's (timeout, no provider, connection lost, the handler panicked...). An error
/// of your own goes inside `R`: declare `-> Result<T, MyError>` with a serializable
/// `MyError`, and the caller gets `Result<Result<T, MyError>, rpc_core::Error>`, the
/// handler's `Err` arriving as a value. Do not declare `-> Result<T, rpc_core::Error>`
/// (nor `rpc_core::Result<T>`): write `-> T`; the compiler says so.
///
/// # Method rules
///
/// Every method is `async fn name(&self, arg: Type, ..)`, with no generics and no default
/// body. Arguments are plain names with owned types that implement `Serialize` and
/// `DeserializeOwned` (no references, no `impl Trait`); the return type too. The optional
/// first argument `cx: &Context` gives the handler the request context; it is recognised
/// by its type (`&Context`, `&rpc_core::Context`) or, for a renamed import
/// (`use rpc_core::Context as Ctx`), by its name: `cx`, `ctx` or `context`. Method names
/// `builder`, `new`, `client`, `with_timeout` and `with_attachment` are taken by the stub.
///
/// # Method options: `#[rpc(...)]`
///
/// Options may be split over several `#[rpc(...)]` attributes; each is given at most once.
///
/// | option | meaning |
/// |---|---|
/// | `timeout_ms = 200` | per-method timeout, overriding the client's default (1 s unless `ClientBuilder::timeout` says otherwise); `with_timeout` on the stub overrides both |
/// | `retries = 2` | retries of the failover cluster mode (default: the client's, 2) |
/// | `forks = 3` | providers a forking call goes to at once (default: the client's, 2) |
/// | `oneway` | the caller does not wait for a response; the method must return `()` |
/// | `idempotent` | safe to run twice, so failover may retry it after it was sent |
/// | `cluster = "failfast"` | cluster mode: `failover` (default), `failfast`, `forking`, `broadcast`, `failsafe`, `failback` or `available` |
/// | `loadbalance = "random"` | load balancer: `random` (weighted, the default), `roundrobin`, `leastactive`, `consistenthash`, `p2c` or `shortestresponse` |
/// | `hash_arg = "order"` | the argument whose hash keys `consistenthash` (default: the first) |
/// | `tps = 100` | provider rate limit: permits per second (token bucket unless the server's rules say otherwise); a call over it is refused with status 100 |
/// | `tps_wait_ms = 100` | how long a call over `tps` may wait for a permit (default 0); needs `tps` |
/// | `executes = 8` | provider concurrency limit: calls of this method running at once; more are refused with status 100 |
/// | `actives = 8` | consumer concurrency limit: calls of this method in flight to one provider; more wait (up to their deadline) |
///
/// A method without `cluster`, `loadbalance`, `retries` or `forks` takes the client
/// builder's (`cluster`, `load_balance_by_name`, `retries`, `forks`).
///
/// Every mistake is a compile error at the offending token that says what to write
/// instead: an unknown or repeated option, a wrong literal, an unknown cluster mode or
/// load balancer (the error lists the valid names), a `hash_arg` that names no argument, a
/// non-async method, `&mut self`, a reference argument, a type that is not serializable
/// (one error, at the type)...
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut item = match syn::parse::<ItemTrait>(item) {
        Ok(item) => item,
        Err(error) => {
            let message = format!("#[service] applies to a trait: {error}");
            return syn::Error::new(error.span(), message)
                .into_compile_error()
                .into();
        }
    };
    match model::Service::parse(attr.into(), &mut item) {
        Ok(service) => {
            let trait_def = trait_def::generate(&service);
            let descriptor = descriptor::generate(&service);
            let wire_types = wire_types::generate(&service);
            let stub = stub::generate(&service);
            let skeleton = skeleton::generate(&service);
            let errors = service.recoverable.map(syn::Error::into_compile_error);
            quote!(#errors #trait_def #wire_types #descriptor #stub #skeleton).into()
        }
        Err(error) => {
            // Emit the trait too (without `#[rpc]`, which rustc would not know), so the
            // only errors are ours and not "cannot find trait" in every impl.
            model::strip_rpc_attrs(&mut item);
            let error = error.into_compile_error();
            quote!(#error #item).into()
        }
    }
}

/// The guide, `docs/guide.md`: compiled and run with this crate's doc tests, which may use
/// `rpc-core`, `transports` and `registry` (dev-dependencies) without a cycle in the build.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide.md")]
mod guide {}
