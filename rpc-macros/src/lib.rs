//! `#[service]` (placeholder until the generator lands).
use proc_macro::TokenStream;

/// Turns a trait into a service.
#[proc_macro_attribute]
pub fn service(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
