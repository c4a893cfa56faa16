//! The user's trait, rewritten so implementations can be spawned by the server.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{ReturnType, TraitItem, parse_quote};

use crate::model::Service;

/// The trait with `Send + Sync + 'static` supertraits and every `async fn m(..) -> R`
/// turned into `fn m(..) -> impl Future<Output = R> + Send`.
///
/// Implementations still write `async fn`; the explicit `Send` bound is what lets the
/// skeleton box and spawn the handler's future, which a plain `async fn` in a trait cannot
/// promise.
pub(crate) fn generate(service: &Service) -> TokenStream {
    let mut item = service.item.clone();
    item.colon_token.get_or_insert_with(Default::default);
    item.supertraits.push(parse_quote!(::core::marker::Send));
    item.supertraits.push(parse_quote!(::core::marker::Sync));
    item.supertraits.push(parse_quote!('static));
    for (trait_item, method) in item.items.iter_mut().zip(&service.methods) {
        if let TraitItem::Fn(function) = trait_item {
            let output = &method.output;
            function.sig.asyncness = None;
            function.sig.output = ReturnType::Type(
                Default::default(),
                Box::new(parse_quote!(
                    impl ::core::future::Future<Output = #output> + ::core::marker::Send
                )),
            );
        }
    }
    item.into_token_stream()
}
