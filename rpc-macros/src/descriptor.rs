//! The `static <TRAIT>_DESCRIPTOR: ServiceDescriptor`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;

use crate::model::{Method, Service};

/// The service descriptor: name, version and every method's options, in declaration order.
pub(crate) fn generate(service: &Service) -> TokenStream {
    let vis = service.vis();
    let ident = service.descriptor_ident();
    let name = &service.name;
    let version = &service.version;
    let methods = service.methods.iter().map(method);
    let format = service.format();
    let doc = format!(
        "Descriptor of the [`{}`] service: its name on the wire (`{name}`), version and \
         per-method options.",
        service.ident()
    );
    quote! {
        #[doc = #doc]
        #vis static #ident: ::rpc_core::ServiceDescriptor = ::rpc_core::ServiceDescriptor {
            name: #name,
            version: #version,
            methods: &[#(#methods),*],
            codecs: <#format as ::rpc_core::format::Format>::CODECS,
        };
    }
}

fn method(method: &Method) -> TokenStream {
    let name = &method.wire_name;
    let args = method.args.iter().map(|arg| arg.ident.unraw().to_string());
    let options = &method.options;
    let timeout_ms = option(options.timeout_ms);
    let retries = option(options.retries);
    let forks = option(options.forks);
    let oneway = options.oneway;
    let idempotent = options.idempotent;
    let cluster = option(options.cluster.as_deref());
    let loadbalance = option(options.loadbalance.as_deref());
    let hash_arg = option(options.hash_arg.as_ref().map(|lit| lit.value()));
    let tps = option(options.tps);
    let tps_wait_ms = option(options.tps_wait_ms);
    let executes = option(options.executes);
    let actives = option(options.actives);
    quote! {
        ::rpc_core::MethodDescriptor {
            name: #name,
            args: &[#(#args),*],
            timeout_ms: #timeout_ms,
            retries: #retries,
            forks: #forks,
            oneway: #oneway,
            idempotent: #idempotent,
            cluster: #cluster,
            loadbalance: #loadbalance,
            hash_arg: #hash_arg,
            tps: #tps,
            tps_wait_ms: #tps_wait_ms,
            executes: #executes,
            actives: #actives,
        }
    }
}

fn option(value: Option<impl ToTokens>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}
