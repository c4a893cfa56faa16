//! The `#[rpc_core::service]` trait of each proto service.

use std::collections::HashSet;
use std::fmt::Write;

use prost_build::{Service, ServiceGenerator};
use prost_types::FileDescriptorSet;

use crate::Error;

/// Refuses streaming methods before anything is generated.
pub(crate) fn check_unary(files: &FileDescriptorSet) -> Result<(), Error> {
    for file in &files.file {
        for service in &file.service {
            for method in &service.method {
                let direction = match (method.client_streaming(), method.server_streaming()) {
                    (false, false) => continue,
                    (true, false) => "requests",
                    (false, true) => "responses",
                    (true, true) => "both ways",
                };
                let service = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                return Err(Error::Streaming {
                    service,
                    method: method.name().to_owned(),
                    direction,
                });
            }
        }
    }
    Ok(())
}

/// Writes one trait per service into its package's file.
#[derive(Default)]
pub(crate) struct Generator {
    /// Messages (by full proto name) already given their `ProtoMessage` impl: a message
    /// used by several methods or services gets one.
    marked: HashSet<String>,
}

impl ServiceGenerator for Generator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let full_name = match service.package.as_str() {
            "" => service.proto_name.clone(),
            package => format!("{package}.{}", service.proto_name),
        };
        for method in &service.methods {
            for (proto, rust) in [
                (&method.input_proto_type, &method.input_type),
                (&method.output_proto_type, &method.output_type),
            ] {
                if self.marked.insert(proto.clone()) {
                    let _ = writeln!(buf, "impl ::rpc_core::format::ProtoMessage for {rust} {{}}");
                }
            }
        }
        write_docs(buf, &service.comments.leading, "");
        let _ = writeln!(
            buf,
            "#[::rpc_core::service(name = \"{full_name}\", format = ::rpc_core::format::Prost)]\n\
             pub trait {} {{",
            service.name
        );
        for method in &service.methods {
            write_docs(buf, &method.comments.leading, "    ");
            let _ = writeln!(
                buf,
                "    #[rpc(name = \"{}\")]\n    async fn {}(&self, cx: &::rpc_core::Context, \
                 request: {}) -> {};",
                method.proto_name, method.name, method.input_type, method.output_type
            );
        }
        buf.push_str("}\n");
    }
}

/// Proto comments as `///` docs (with any backticks or brackets left as written).
fn write_docs(buf: &mut String, comments: &[String], indent: &str) {
    for comment in comments {
        for line in comment.lines() {
            let _ = writeln!(buf, "{indent}///{line}");
        }
    }
}
