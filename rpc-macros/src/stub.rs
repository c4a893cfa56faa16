//! The client stub `<Trait>Client`: one typed method per trait method over a `Client`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Method, Service, is_byte_vec};
use crate::wire_types;

/// The stub struct, its `FromClient` impl and its inherent methods.
pub(crate) fn generate(service: &Service) -> TokenStream {
    let vis = service.vis();
    let trait_ident = service.ident();
    let client = service.client_ident();
    let descriptor = service.descriptor_ident();
    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| stub_method(service, index, method));
    let has_default = service.methods.iter().enumerate().map(|(index, method)| {
        let output = &method.output;
        quote! {
            #index => (&::rpc_core::__private::DefaultProbe::<#output>::new())
                .fallback()
                .is_some(),
        }
    });
    let doc = format!(
        "Client stub of [`{trait_ident}`]: each method encodes its arguments, calls a provider \
         and decodes the result.\n\nBuild one with [`{client}::builder`]; per-call options \
         ([`{client}::with_timeout`], [`{client}::with_attachment`]) return a modified copy."
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            client: ::rpc_core::Client,
        }

        impl ::rpc_core::client::FromClient for #client {
            fn from_client(client: ::rpc_core::Client) -> Self {
                Self { client }
            }

            fn descriptor() -> ::core::option::Option<&'static ::rpc_core::ServiceDescriptor> {
                ::core::option::Option::Some(&#descriptor)
            }

            fn has_default(method: usize) -> bool {
                #[allow(unused_imports)]
                use ::rpc_core::__private::{ViaDefault as _, WithoutDefault as _};
                match method {
                    #(#has_default)*
                    _ => false,
                }
            }
        }

        #[allow(dead_code)]
        impl #client {
            /// Starts building a client for this service, with its name and version preset.
            #vis fn builder() -> ::rpc_core::ClientBuilder<Self> {
                ::rpc_core::ClientBuilder::new(#descriptor.name).version(#descriptor.version)
            }

            /// Wraps an untyped client (which must be built for this service).
            #vis fn new(client: ::rpc_core::Client) -> Self {
                Self { client }
            }

            /// The untyped client underneath.
            #vis fn client(&self) -> &::rpc_core::Client {
                &self.client
            }

            /// A copy whose calls use `timeout`, overriding the method's and the client's default.
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { client: self.client.with_timeout(timeout) }
            }

            /// A copy whose calls carry the attachment `key = value`.
            #vis fn with_attachment(
                &self,
                key: impl ::core::convert::Into<::std::string::String>,
                value: impl ::core::convert::Into<::std::string::String>,
            ) -> Self {
                Self { client: self.client.with_attachment(key, value) }
            }

            #(#methods)*
        }
    }
}

fn stub_method(service: &Service, index: usize, method: &Method) -> TokenStream {
    let vis = service.vis();
    let descriptor = service.descriptor_ident();
    let ident = &method.ident;
    let params = method.args.iter().map(|arg| {
        let (ident, ty) = (&arg.ident, &arg.ty);
        quote!(#ident: #ty)
    });
    // Each reference carries its argument's span, so a type that is not `Serialize` is
    // reported at the argument rather than at the attribute.
    // A `Vec<u8>` goes as a byte string (see `model::is_byte_vec`).
    let arg_ref = |arg: &crate::model::Arg| {
        let ident = &arg.ident;
        match is_byte_vec(&arg.ty) {
            true => quote_spanned!(arg.ty.span()=> &::rpc_core::__private::ByteStr(&#ident)),
            false => quote_spanned!(arg.ty.span()=> &#ident),
        }
    };
    let refs = method.args.iter().map(arg_ref);
    let docs = if method.docs.is_empty() {
        let doc = format!(
            "Calls `{}` on a provider of [`{}`].",
            method.wire_name,
            service.ident()
        );
        quote!(#[doc = #doc])
    } else {
        let docs = &method.docs;
        quote!(#(#docs)*)
    };
    // The consistent-hash key: the argument named by `hash_arg`, else the first one.
    let key = match method.hash_arg_index() {
        Some(position) => arg_ref(&method.args[position]),
        None => quote!(&()),
    };
    // The service's format, or a stand-in when a type cannot cross the wire (`wire_types`
    // reports that type once, at the type).
    let format = wire_types::format_of(service, method);
    let call = |function: &str, extra: TokenStream| {
        let function = format_ident!("{}", function);
        quote_spanned! {method.ident.span()=>
            #format.#function(
                &self.client,
                &#descriptor.methods[#index],
                &(#(#refs,)*),
                #key,
                #extra
            ).await
        }
    };
    if method.options.oneway {
        let call = call("call_oneway", quote!());
        quote! {
            #docs
            ///
            /// One-way: returns once the request is handed to the transport.
            #vis async fn #ident(&self, #(#params),*)
                -> ::core::result::Result<(), ::rpc_core::Error>
            {
                #call
            }
        }
    } else {
        let output = &method.output;
        // A `Vec<u8>` result comes back as a byte string (see `model::is_byte_vec`).
        let (decoded, unwrap) = match is_byte_vec(output) {
            true => (
                quote!(::rpc_core::__private::ByteBuf),
                quote!(.map(::rpc_core::__private::ByteBuf::into_inner)),
            ),
            false => (quote!(#output), quote!()),
        };
        // What failsafe gives the caller: the return type's Default, if it has one.
        let fallback = quote! {{
            #[allow(unused_imports)]
            use ::rpc_core::__private::{ViaDefault as _, WithoutDefault as _};
            (&::rpc_core::__private::DefaultProbe::<#decoded>::new()).fallback()
        }};
        let call = call("call", fallback);
        quote! {
            #docs
            #vis async fn #ident(&self, #(#params),*)
                -> ::core::result::Result<#output, ::rpc_core::Error>
            {
                #call #unwrap
            }
        }
    }
}
