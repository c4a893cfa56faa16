//! A compile-time check that every argument and result type can cross the wire.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::Service;

/// Asserts once per type that the service's format carries it both ways (for the serde
/// format: `Serialize + DeserializeOwned`), spanned at the type as written, so a missing
/// derive is reported at `value: Opaque` rather than at the attribute.
///
/// The stub and skeleton would reject such a type anyway, but only inside generated code.
pub(crate) fn generate(service: &Service) -> TokenStream {
    let format = service.format();
    let checks = service.methods.iter().flat_map(|method| {
        let args = method.args.iter().map(|arg| &arg.ty);
        args.chain(std::iter::once(&method.output))
            .map(|ty| quote_spanned!(ty.span()=> wire_type::<#ty>();))
    });
    quote! {
        const _: () = {
            fn wire_type<T>()
            where
                #format: ::rpc_core::format::Encode<T> + ::rpc_core::format::Decode<T>,
            {
            }

            #[allow(dead_code)]
            fn check() {
                #(#checks)*
            }
        };
    }
}
