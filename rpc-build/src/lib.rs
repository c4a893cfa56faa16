//! Services from `.proto` files, generated at build time.
//!
//! Used from a build script, as `tonic-build` is: it compiles `.proto` files with
//! [`protox`] (a protobuf compiler in Rust, so no system `protoc` is needed), generates the
//! messages with [`prost_build`] (deriving serde too, so the JSON and bincode codecs carry
//! them; JSON field names are proto3's lowerCamelCase), and for each service the same
//! items `#[rpc_core::service]` generates from a trait: the trait, its descriptor, a
//! client stub and a server skeleton. It does so by emitting the trait with the
//! attribute:
//!
//! ```text
//! #[::rpc_core::service(name = "helloworld.Greeter", format = ::rpc_core::format::Prost)]
//! pub trait Greeter {
//!     #[rpc(name = "SayHello")]
//!     async fn say_hello(&self, cx: &::rpc_core::Context, request: HelloRequest) -> HelloReply;
//! }
//! ```
//!
//! The service name is the proto package and service (`helloworld.Greeter`), the method
//! names on the wire are the proto names (`SayHello`), as gRPC has them. A generated
//! client speaks protobuf by default; JSON and bincode work too. Only unary methods are
//! supported: a streaming method is an error at build time.
//!
//! # Example
//!
//! `build.rs`:
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     rpc_build::compile_protos(&["proto/helloworld.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! The crate then includes the generated module and needs `rpc-core`, `prost` and `serde`
//! (with `derive`) as dependencies:
//!
//! ```text
//! pub mod helloworld {
//!     rpc_core::include_proto!("helloworld");
//! }
//!
//! struct MyGreeter;
//!
//! impl helloworld::Greeter for MyGreeter {
//!     async fn say_hello(&self, _cx: &rpc_core::Context, request: helloworld::HelloRequest)
//!         -> helloworld::HelloReply
//!     {
//!         helloworld::HelloReply { message: format!("hello, {}", request.name) }
//!     }
//! }
//! ```

mod service;

use std::path::{Path, PathBuf};

pub use prost_build;
pub use protox;

/// What can go wrong generating code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `.proto` file could not be read, parsed or checked.
    #[error("compiling .proto files: {0}")]
    Protox(#[from] protox::Error),
    /// A service has a streaming method; only unary methods are supported.
    #[error(
        "method {service}.{method} streams {direction}; only unary methods are supported \
         (one request message, one response message)"
    )]
    Streaming {
        /// The service, with its package (`helloworld.Greeter`).
        service: String,
        /// The method as the proto file names it.
        method: String,
        /// `requests`, `responses` or `both ways`.
        direction: &'static str,
    },
    /// Writing the generated code failed.
    #[error("generating code: {0}")]
    Io(#[from] std::io::Error),
}

/// Compiles `protos` (found in `includes`) into `$OUT_DIR/<package>.rs`, one file per
/// proto package; see the [crate docs](crate).
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<(), Error> {
    configure().compile(protos, includes)
}

/// A [`Builder`] with the defaults of [`compile_protos`].
pub fn configure() -> Builder {
    Builder {
        out_dir: None,
        emit_rerun_if_changed: true,
    }
}

/// Options of the code generation.
#[derive(Debug, Clone)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    emit_rerun_if_changed: bool,
}

impl Builder {
    /// Where the generated files go (default: `$OUT_DIR`, as set by cargo for build
    /// scripts).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.out_dir = Some(dir.into());
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for every `.proto` file read (default:
    /// yes, so the build script reruns only when one of them changes).
    pub fn emit_rerun_if_changed(mut self, emit: bool) -> Builder {
        self.emit_rerun_if_changed = emit;
        self
    }

    /// Compiles `protos`, found in `includes`.
    pub fn compile(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let files = protox::compile(protos, includes)?;
        if self.emit_rerun_if_changed {
            for proto in protos {
                println!("cargo:rerun-if-changed={}", proto.as_ref().display());
            }
        }
        self.generate(files)
    }

    /// Generates code from an already compiled descriptor set (with source info, for the
    /// doc comments).
    pub fn generate(self, files: prost_types::FileDescriptorSet) -> Result<(), Error> {
        service::check_unary(&files)?;
        let mut config = prost_build::Config::new();
        if let Some(dir) = &self.out_dir {
            config.out_dir(dir);
        }
        config
            // Maps in a fixed order: a message's encoding, hence its consistent-hash key,
            // is then a function of its value.
            .btree_map(["."])
            .type_attribute(".", "#[derive(::serde::Serialize, ::serde::Deserialize)]")
            // proto3 JSON: lowerCamelCase names, every field optional on input.
            .message_attribute(".", "#[serde(default, rename_all = \"camelCase\")]")
            .service_generator(Box::new(service::Generator::default()));
        config.compile_fds(files)?;
        Ok(())
    }
}
