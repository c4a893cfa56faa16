//! The server skeleton `<Trait>Server<T>`: decodes, calls the implementation, encodes.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};

use crate::model::{Method, Service, is_byte_vec};
use crate::wire_types;

/// The skeleton struct, its constructors and its `Skeleton` impl.
pub(crate) fn generate(service: &Service) -> TokenStream {
    let vis = service.vis();
    let trait_ident = service.ident();
    let server = service.server_ident();
    let descriptor = service.descriptor_ident();
    let uses_context = service
        .methods
        .iter()
        .any(|method| method.context.is_some());
    let cx = if uses_context {
        format_ident!("cx")
    } else {
        format_ident!("_cx")
    };
    let arms = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| arm(service, index, method));
    let server_name = server.to_string();
    let doc = format!(
        "Server skeleton of [`{trait_ident}`]: serves an implementation `T` through \
         [`rpc_core::Skeleton`]; pass it to `ServerBuilder::add_service`."
    );
    quote! {
        #[doc = #doc]
        #vis struct #server<T> {
            inner: ::std::sync::Arc<T>,
        }

        #[allow(dead_code)]
        impl<T: #trait_ident> #server<T> {
            /// Serves `inner`.
            #vis fn new(inner: T) -> Self {
                Self::from_arc(::std::sync::Arc::new(inner))
            }

            /// Serves an implementation that is shared with other code.
            #vis fn from_arc(inner: ::std::sync::Arc<T>) -> Self {
                Self { inner }
            }
        }

        impl<T> ::core::clone::Clone for #server<T> {
            fn clone(&self) -> Self {
                Self { inner: ::std::sync::Arc::clone(&self.inner) }
            }
        }

        impl<T> ::core::fmt::Debug for #server<T> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#server_name)
                    .field("service", &#descriptor.name)
                    .finish_non_exhaustive()
            }
        }

        impl<T: #trait_ident> ::rpc_core::Skeleton for #server<T> {
            fn descriptor(&self) -> &'static ::rpc_core::ServiceDescriptor {
                &#descriptor
            }

            fn call(
                &self,
                method: usize,
                #cx: ::rpc_core::Context,
                codec: ::rpc_core::Codec,
                args: ::rpc_core::__private::Bytes,
            ) -> ::rpc_core::__private::BoxFuture<
                'static,
                ::rpc_core::Result<::rpc_core::Response>,
            > {
                let inner = ::std::sync::Arc::clone(&self.inner);
                match method {
                    #(#arms)*
                    _ => ::std::boxed::Box::pin(::core::future::ready(::core::result::Result::Err(
                        ::rpc_core::Error::MethodNotFound {
                            service: ::std::borrow::ToOwned::to_owned(#descriptor.name),
                            method: ::std::format!("#{}", method),
                        },
                    ))),
                }
            }
        }
    }
}

fn arm(service: &Service, index: usize, method: &Method) -> TokenStream {
    let trait_ident = service.ident();
    let ident = &method.ident;
    // A `Vec<u8>` comes and goes as a byte string (see `model::is_byte_vec`).
    let types = method.args.iter().map(|arg| match is_byte_vec(&arg.ty) {
        true => quote!(::rpc_core::__private::ByteBuf),
        false => arg.ty.to_token_stream(),
    });
    let bindings: Vec<_> = (0..method.args.len())
        .map(|i| format_ident!("arg{}", i))
        .collect();
    let values =
        method
            .args
            .iter()
            .zip(&bindings)
            .map(|(arg, binding)| match is_byte_vec(&arg.ty) {
                true => quote!(#binding.into_inner()),
                false => quote!(#binding),
            });
    let ret = match is_byte_vec(&method.output) {
        true => quote!(&::rpc_core::__private::ByteStr(&ret)),
        false => quote!(&ret),
    };
    // Spanned at the context's type: a type that is not `rpc_core::Context` fails there.
    let cx = method.context.map(|span| quote_spanned!(span=> &cx,));
    // The service's format, or a stand-in when a type cannot cross the wire (`wire_types`
    // reports that type once, at the type).
    let format = wire_types::format_of(service, method);
    let decode = quote_spanned! {method.ident.span()=>
        format.decode_args::<(#(#types,)*)>(codec, &args)?
    };
    let encode = quote_spanned! {method.ident.span()=>
        format.encode_result(codec, #ret)?
    };
    // Only a handler given the context can have set attachments for the caller.
    let reply = match method.context {
        Some(_) => quote! { cx.take_reply_attachments() },
        None => quote! { ::rpc_core::Attachments::new() },
    };
    quote! {
        #index => ::std::boxed::Box::pin(async move {
            let format = #format;
            let (#(#bindings,)*) = #decode;
            let ret = <T as #trait_ident>::#ident(&inner, #cx #(#values),*).await;
            let body = #encode;
            ::core::result::Result::Ok(::rpc_core::Response {
                codec,
                body,
                attachments: #reply,
            })
        }),
    }
}
