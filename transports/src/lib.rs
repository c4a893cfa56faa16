#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod error;
pub mod grpc;
pub mod tcp;
pub mod tls;

pub use error::Error;
pub use grpc::{GrpcConfig, GrpcTransport};
pub use tcp::{TcpConfig, TcpTransport};
