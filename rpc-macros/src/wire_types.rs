//! Which types may cross the wire: one compile error per type that cannot, at that type.
//!
//! Every argument and return type must be carried by the service's format both ways (for
//! the serde format: `Serialize + DeserializeOwned`). A type that is not would fail the
//! stub and the skeleton several times over, inside generated code, with the first error
//! at the attribute. Instead:
//!
//! - a hidden module per service (`__rpc_wire_Greeter`) picks, by autoref specialization
//!   on the concrete types of each method, the service's format when every type of the
//!   method can cross the wire and `Unwired` (a format that accepts anything and is never
//!   run) otherwise, so the stub and the skeleton compile either way;
//! - a check per distinct type, spanned at the type as written, reports the problem once
//!   through `#[diagnostic::on_unimplemented]`, in words: the type is not serializable, or
//!   a method returns `Result<T, rpc_core::Error>`, which the stub already returns.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Method, Service};

/// The hidden helper module and the checks.
pub(crate) fn generate(service: &Service) -> TokenStream {
    let module = service.wire_module();
    let format = service.format();
    let mut seen = HashSet::new();
    let checks = service.methods.iter().flat_map(|method| {
        let args = method.args.iter().map(|arg| (&arg.ty, "Arg"));
        args.chain(std::iter::once((&method.output, "Return")))
            .collect::<Vec<_>>()
    });
    let checks: Vec<TokenStream> = checks
        .filter(|(ty, role)| seen.insert((*role, ty.to_token_stream().to_string())))
        .map(|(ty, role)| {
            let role = format_ident!("{}", role);
            quote_spanned! {ty.span()=>
                (&&&#module::Probe::<#ty, #module::#role>::new()).check();
            }
        })
        .collect();
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, unreachable_pub, clippy::all)]
        mod #module {
            use ::core::marker::PhantomData;
            use ::rpc_core::format::{Decode, Encode};

            /// Roles of a checked type: argument, return type, a method's whole signature.
            pub(super) enum Arg {}
            pub(super) enum Return {}
            pub(super) enum Call {}

            /// A type and its role, for autoref specialization.
            pub(super) struct Probe<T, Role>(PhantomData<fn() -> (T, Role)>);

            impl<T, Role> Probe<T, Role> {
                pub(super) const fn new() -> Self {
                    Probe(PhantomData)
                }
            }

            #[diagnostic::on_unimplemented(
                message = "`{Self}` cannot cross the wire: it is not `serde::Serialize` + \
                           `serde::de::DeserializeOwned`",
                label = "#[service] arguments and return types must be serializable",
                note = "derive both (`#[derive(serde::Serialize, serde::Deserialize)]`) or use \
                        a type that has them"
            )]
            pub(super) trait Serializable {}

            #[diagnostic::on_unimplemented(
                message = "a #[service] method returns `{Self}`, not `Result<{Self}, \
                           rpc_core::Error>`: every call already returns \
                           `Result<_, rpc_core::Error>`",
                label = "write `{Self}` here",
                note = "callers get `Result<{Self}, rpc_core::Error>`; for errors of your own, \
                        return `Result<{Self}, YourError>` with a serializable `YourError`"
            )]
            pub(super) trait WithoutTransportError {}

            // Implemented, so that rustc does not suggest implementing them.
            #[diagnostic::do_not_recommend]
            impl Serializable for Unwired {}
            #[diagnostic::do_not_recommend]
            impl WithoutTransportError for Unwired {}

            /// First choice: a return type `Result<T, rpc_core::Error>` is refused as such.
            pub(super) trait ReturnsTransportError<T> {
                fn check(&self)
                where
                    T: WithoutTransportError;
            }

            impl<T> ReturnsTransportError<T>
                for &&Probe<::core::result::Result<T, ::rpc_core::Error>, Return>
            {
                fn check(&self)
                where
                    T: WithoutTransportError,
                {
                }
            }

            /// Second choice: the format carries the type both ways.
            pub(super) trait Carried {
                fn check(&self);
            }

            impl<T, Role> Carried for &Probe<T, Role>
            where
                #format: Encode<T> + Decode<T>,
            {
                fn check(&self) {}
            }

            /// Last choice: the type cannot cross the wire.
            pub(super) trait NotCarried<T> {
                fn check(&self)
                where
                    T: Serializable;
            }

            impl<T, Role> NotCarried<T> for Probe<T, Role> {
                fn check(&self)
                where
                    T: Serializable,
                {
                }
            }

            /// The format a method's stub and skeleton use.
            pub(super) struct Format<F>(PhantomData<fn() -> F>);

            impl<F> ::core::clone::Clone for Format<F> {
                fn clone(&self) -> Self {
                    *self
                }
            }

            impl<F> ::core::marker::Copy for Format<F> {}

            /// The service's format, for a method whose types all cross the wire (`W` is
            /// `((args..), output)`).
            pub(super) trait Encodes {
                fn format(&self) -> Format<#format>;
            }

            impl<W> Encodes for Probe<W, Call>
            where
                #format: ::rpc_core::format::Signature<W>,
            {
                fn format(&self) -> Format<#format> {
                    Format(PhantomData)
                }
            }

            /// Any other method: a type was reported already, nothing will run.
            pub(super) trait Unencodable {
                fn format(&self) -> Format<Unwired>;
            }

            impl<W> Unencodable for &Probe<W, Call> {
                fn format(&self) -> Format<Unwired> {
                    Format(PhantomData)
                }
            }

            /// The format of a crate that does not compile.
            pub(super) enum Unwired {}

            impl<T: ?Sized> Encode<T> for Unwired {
                fn encode(
                    _: ::rpc_core::Codec,
                    _: &T,
                    _: &mut ::rpc_core::__private::BytesMut,
                ) -> ::rpc_core::Result<()> {
                    ::core::unreachable!("a type of this service cannot cross the wire")
                }

                fn hash_key(_: &T) -> u64 {
                    ::core::unreachable!("a type of this service cannot cross the wire")
                }
            }

            impl<T> Decode<T> for Unwired {
                fn decode(_: ::rpc_core::Codec, _: &[u8]) -> ::rpc_core::Result<T> {
                    ::core::unreachable!("a type of this service cannot cross the wire")
                }
            }

            impl<F> Format<F> {
                pub(super) fn call<'a, A: ?Sized, K: ?Sized, R>(
                    self,
                    client: &'a ::rpc_core::Client,
                    method: &'static ::rpc_core::MethodDescriptor,
                    args: &'a A,
                    key: &'a K,
                    fallback: ::core::option::Option<fn() -> R>,
                ) -> impl ::core::future::Future<Output = ::rpc_core::Result<R>>
                + use<'a, F, A, K, R>
                where
                    F: Encode<A> + Encode<K> + Decode<R>,
                {
                    ::rpc_core::__private::call::<F, A, K, R>(client, method, args, key, fallback)
                }

                pub(super) fn call_oneway<'a, A: ?Sized, K: ?Sized>(
                    self,
                    client: &'a ::rpc_core::Client,
                    method: &'static ::rpc_core::MethodDescriptor,
                    args: &'a A,
                    key: &'a K,
                ) -> impl ::core::future::Future<Output = ::rpc_core::Result<()>>
                + use<'a, F, A, K>
                where
                    F: Encode<A> + Encode<K>,
                {
                    ::rpc_core::__private::call_oneway::<F, A, K>(client, method, args, key)
                }

                pub(super) fn decode_args<A>(
                    self,
                    codec: ::rpc_core::Codec,
                    body: &[u8],
                ) -> ::rpc_core::Result<A>
                where
                    F: Decode<A>,
                {
                    ::rpc_core::__private::decode_args::<F, A>(codec, body)
                }

                pub(super) fn encode_result<R>(
                    self,
                    codec: ::rpc_core::Codec,
                    value: &R,
                ) -> ::rpc_core::Result<::rpc_core::__private::Bytes>
                where
                    F: Encode<R>,
                {
                    ::rpc_core::__private::encode_result::<F, R>(codec, value)
                }
            }
        }

        const _: () = {
            #[allow(dead_code, clippy::all)]
            fn check() {
                #[allow(unused_imports)]
                use #module::{Carried as _, NotCarried as _, ReturnsTransportError as _};
                #(#checks)*
            }
        };
    }
}

/// An expression of type `Format<F>` for `method`: the service's format when every type
/// of the method crosses the wire, else `Unwired` (the check reported the type then).
pub(crate) fn format_of(service: &Service, method: &Method) -> TokenStream {
    let module = service.wire_module();
    let types = method.args.iter().map(|arg| &arg.ty);
    let output = &method.output;
    quote! {{
        #[allow(unused_imports)]
        use #module::{Encodes as _, Unencodable as _};
        (&#module::Probe::<((#(#types,)*), #output), #module::Call>::new()).format()
    }}
}
