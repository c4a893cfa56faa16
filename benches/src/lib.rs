//! Shared pieces of the benchmarks: the echo service as seen by each compared framework
//! (our `rpc-core`, tarpc and tonic, and a bare-tokio ceiling), and the latency recorder
//! the load generator uses.
//!
//! Every system serves the same thing: `echo(payload: Vec<u8>) -> Vec<u8>`, answered on the
//! server by returning the payload unchanged, over one TCP connection with `TCP_NODELAY`.

pub mod proto_echo;
pub mod raw_echo;
pub mod rpc_echo;
pub mod stats;
pub mod tarpc_echo;
pub mod tls_echo;
pub mod tonic_echo;

/// The multi-threaded tokio runtime every benchmark process runs on, with `threads` workers.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}
