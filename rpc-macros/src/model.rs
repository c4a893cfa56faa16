//! The parsed form of a `#[service]` trait, and every check made on it.
//!
//! Parsing happens once, here; the generators (`trait_def`, `descriptor`, `stub`,
//! `skeleton`) only read the model and never fail.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, Ident, ItemTrait, Lit, LitInt, LitStr, Pat,
    PathArguments, ReturnType, TraitItem, TraitItemFn, Type, Visibility,
};

/// Names the generated `<Trait>Client` defines itself; a method with one of them would clash.
const CLIENT_METHODS: &[&str] = &[
    "builder",
    "new",
    "client",
    "with_timeout",
    "with_attachment",
];

/// The names `#[rpc(cluster = "...")]` takes: those `rpc_core::ClusterMode::from_str`
/// knows, in its order (`rpc-core/tests/macro_errors.rs` checks that they agree).
const CLUSTER_MODES: &[&str] = &[
    "failover",
    "failfast",
    "forking",
    "broadcast",
    "failsafe",
    "failback",
    "available",
];

/// The names `#[rpc(loadbalance = "...")]` takes: `rpc_core::client::loadbalance::NAMES`
/// (`rpc-core/tests/macro_errors.rs` checks that they agree).
const LOAD_BALANCERS: &[&str] = &[
    "random",
    "roundrobin",
    "leastactive",
    "consistenthash",
    "p2c",
    "shortestresponse",
];

/// A `#[service]` trait.
pub(crate) struct Service {
    /// The trait as written, minus the `#[rpc(...)]` attributes.
    pub(crate) item: ItemTrait,
    /// Name callers use (`name = "..."`, default: the trait name).
    pub(crate) name: String,
    /// Version (`version = "..."`, default: empty).
    pub(crate) version: String,
    /// The format (`format = path`, default: `rpc_core::format::Serde`).
    pub(crate) format: Option<syn::Path>,
    /// The methods, in declaration order.
    pub(crate) methods: Vec<Method>,
    /// Mistakes that leave the generated API intact (an unknown cluster mode, load
    /// balancer or `hash_arg`): reported next to the generated code, so that uses of the
    /// client and server do not fail too.
    pub(crate) recoverable: Option<syn::Error>,
}

/// One method of the trait.
pub(crate) struct Method {
    /// The Rust name.
    pub(crate) ident: Ident,
    /// The name on the wire (the Rust name without `r#`).
    pub(crate) wire_name: String,
    /// The method's `///` docs, copied onto the client stub.
    pub(crate) docs: Vec<Attribute>,
    /// The first argument is `&Context` (its type's span): the handler receives the request
    /// context.
    pub(crate) context: Option<Span>,
    /// The arguments that travel on the wire (the `&Context` argument excluded).
    pub(crate) args: Vec<Arg>,
    /// The declared return type, `()` when there is none.
    pub(crate) output: Type,
    /// Options from `#[rpc(...)]`.
    pub(crate) options: MethodOptions,
}

/// One wire argument: `ident: ty`.
pub(crate) struct Arg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

/// Whether `ty` is spelled `Vec<u8>` (bare, or as `std::vec::Vec<u8>` / `alloc::vec::Vec<u8>`).
///
/// serde writes a `Vec<u8>` one element at a time; the stub and skeleton carry such
/// arguments and results as byte strings instead (`rpc_core::__private::{ByteStr, ByteBuf}`),
/// which is the same bytes on the wire at a fraction of the cost. The macro sees only
/// tokens, so a type alias for `Vec<u8>` keeps the element-wise path.
pub(crate) fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let segments = &path.path.segments;
    let Some(last) = segments.last() else {
        return false;
    };
    let prefix_ok = segments.iter().take(segments.len() - 1).all(|segment| {
        ["std", "alloc", "vec"]
            .iter()
            .any(|name| segment.ident == name)
    });
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    let is_u8 = |arg: &syn::GenericArgument| {
        matches!(arg, syn::GenericArgument::Type(Type::Path(inner))
            if inner.qself.is_none() && inner.path.is_ident("u8"))
    };
    last.ident == "Vec" && prefix_ok && args.args.len() == 1 && args.args.iter().all(is_u8)
}

/// Per-method options from `#[rpc(...)]`; see the crate docs for their meaning.
#[derive(Default)]
pub(crate) struct MethodOptions {
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) retries: Option<u32>,
    pub(crate) forks: Option<u32>,
    pub(crate) oneway: bool,
    pub(crate) idempotent: bool,
    pub(crate) cluster: Option<String>,
    pub(crate) loadbalance: Option<String>,
    /// The argument named by `hash_arg`, as written (for a well-placed error).
    pub(crate) hash_arg: Option<LitStr>,
    pub(crate) tps: Option<u32>,
    pub(crate) tps_wait_ms: Option<u64>,
    pub(crate) executes: Option<u32>,
    pub(crate) actives: Option<u32>,
    /// The name on the wire (`name = "SayHello"`), when not the Rust name.
    pub(crate) name: Option<String>,
}

impl Service {
    /// Parses the attribute arguments and the trait, reporting every problem found.
    pub(crate) fn parse(attr: TokenStream, item: &mut ItemTrait) -> syn::Result<Service> {
        let mut errors = Errors::default();
        let mut recoverable = Errors::default();
        let args = errors.take(parse_service_args(attr)).unwrap_or_default();
        errors.take(check_trait(item));

        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            match trait_item {
                TraitItem::Fn(method) => {
                    if let Some(method) = errors.take(Method::parse(method, &mut recoverable)) {
                        methods.push(method);
                    }
                }
                other => errors.push(syn::Error::new_spanned(
                    &*other,
                    "a #[service] trait holds only `async fn` methods; move this item to \
                     another trait or an inherent impl",
                )),
            }
        }
        check_method_names(item, &methods, &mut errors);
        if let Some(mut error) = errors.error {
            if let Some(more) = recoverable.error {
                error.combine(more);
            }
            return Err(error);
        }

        Ok(Service {
            name: args.name.unwrap_or_else(|| item.ident.unraw().to_string()),
            version: args.version.unwrap_or_default(),
            format: args.format,
            item: item.clone(),
            methods,
            recoverable: recoverable.error,
        })
    }

    /// The trait's identifier.
    pub(crate) fn ident(&self) -> &Ident {
        &self.item.ident
    }

    /// The trait's visibility, given to every generated item.
    pub(crate) fn vis(&self) -> &Visibility {
        &self.item.vis
    }

    /// `GREETER_DESCRIPTOR` for `Greeter`.
    pub(crate) fn descriptor_ident(&self) -> Ident {
        let name = screaming_snake(&self.ident().unraw().to_string());
        format_ident!("{}_DESCRIPTOR", name)
    }

    /// `GreeterClient` for `Greeter`.
    pub(crate) fn client_ident(&self) -> Ident {
        format_ident!("{}Client", self.ident().unraw())
    }

    /// `GreeterServer` for `Greeter`.
    pub(crate) fn server_ident(&self) -> Ident {
        format_ident!("{}Server", self.ident().unraw())
    }

    /// `__rpc_wire_Greeter` for `Greeter`: the hidden module of helpers that pick the
    /// format and check the types (`wire_types`).
    pub(crate) fn wire_module(&self) -> Ident {
        format_ident!("__rpc_wire_{}", self.ident().unraw())
    }

    /// The format that turns the service's types into bytes. Every `#[service]` trait
    /// uses serde types; a service generated from a `.proto` file names its own.
    pub(crate) fn format(&self) -> TokenStream {
        match &self.format {
            Some(path) => path.to_token_stream(),
            None => quote::quote!(::rpc_core::format::Serde),
        }
    }
}

impl Method {
    /// Position of the argument whose value keys consistent hashing: the one `hash_arg`
    /// names, else the first; `None` without arguments.
    pub(crate) fn hash_arg_index(&self) -> Option<usize> {
        match &self.options.hash_arg {
            Some(name) => self
                .args
                .iter()
                .position(|arg| arg.ident.unraw() == name.value()),
            None => (!self.args.is_empty()).then_some(0),
        }
    }
}

/// Removes the `#[rpc(...)]` attributes from every method, so the trait can be emitted
/// unchanged next to the errors when parsing fails.
pub(crate) fn strip_rpc_attrs(item: &mut ItemTrait) {
    for trait_item in &mut item.items {
        if let TraitItem::Fn(method) = trait_item {
            method.attrs.retain(|attr| !attr.path().is_ident("rpc"));
        }
    }
}

#[derive(Default)]
struct ServiceArgs {
    name: Option<String>,
    version: Option<String>,
    format: Option<syn::Path>,
}

fn parse_service_args(attr: TokenStream) -> syn::Result<ServiceArgs> {
    let mut args = ServiceArgs::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            set_once(&meta, &mut args.name, |meta| {
                let name = string_value(meta, "name = \"demo.Greeter\"")?;
                if name.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(
                        &name,
                        "the service name is empty; write `name = \"demo.Greeter\"` or leave \
                         `name` out to use the trait name",
                    ));
                }
                Ok(name.value())
            })
        } else if meta.path.is_ident("version") {
            set_once(&meta, &mut args.version, |meta| {
                Ok(string_value(meta, "version = \"1.0.0\"")?.value())
            })
        } else if meta.path.is_ident("format") {
            set_once(&meta, &mut args.format, |meta| {
                meta.value()?.parse::<syn::Path>().map_err(|error| {
                    syn::Error::new(
                        error.span(),
                        "expected `format = path`, e.g. `format = rpc_core::format::Prost`",
                    )
                })
            })
        } else {
            Err(syn::Error::new_spanned(
                &meta.path,
                format!(
                    "unknown #[service] option `{}`; expected `name = \"...\"`, `version = \"...\"` or `format = path`",
                    meta.path.to_token_stream()
                ),
            ))
        }
    });
    parser.parse2(attr)?;
    Ok(args)
}

fn check_trait(item: &ItemTrait) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Some(unsafety) = &item.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "a #[service] trait cannot be `unsafe`; remove `unsafe`",
        ));
    }
    if let Some(auto) = &item.auto_token {
        errors.push(syn::Error::new_spanned(
            auto,
            "a #[service] trait cannot be an auto trait; remove `auto`",
        ));
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a #[service] trait cannot be generic; use concrete types in its methods",
        ));
    }
    if item.items.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.ident,
            "a #[service] trait needs at least one `async fn` method",
        ));
    }
    errors.finish()
}

fn check_method_names(item: &ItemTrait, methods: &[Method], errors: &mut Errors) {
    let client = format_ident!("{}Client", item.ident.unraw());
    for (i, method) in methods.iter().enumerate() {
        if methods[..i]
            .iter()
            .any(|earlier| earlier.wire_name == method.wire_name)
        {
            errors.push(syn::Error::new_spanned(
                &method.ident,
                format!(
                    "duplicate method `{}`: every method of a service needs its own name; \
                     rename one of them",
                    method.wire_name
                ),
            ));
        }
        let rust_name = method.ident.unraw().to_string();
        if CLIENT_METHODS.contains(&rust_name.as_str()) {
            errors.push(syn::Error::new_spanned(
                &method.ident,
                format!(
                    "method `{rust_name}` clashes with the generated `{client}::{rust_name}`; \
                     rename the method"
                ),
            ));
        }
    }
}

impl Method {
    /// Parses one method; mistakes that leave the generated API intact go to
    /// `recoverable`, with the option concerned left at its default.
    fn parse(method: &mut TraitItemFn, recoverable: &mut Errors) -> syn::Result<Method> {
        let mut errors = Errors::default();
        let mut options = errors.take(MethodOptions::parse(&method.attrs, recoverable));
        method.attrs.retain(|attr| !attr.path().is_ident("rpc"));
        let sig = &method.sig;
        let name = sig.ident.unraw().to_string();

        if let Some(body) = &method.default {
            errors.push(syn::Error::new_spanned(
                body,
                "a #[service] method cannot have a default body; end the declaration with `;` \
                 and implement it in the `impl` for your type",
            ));
        }
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new_spanned(
                sig.fn_token,
                format!("a #[service] method must be async; write `async fn {name}(&self, ...)`"),
            ));
        }
        if let Some(constness) = &sig.constness {
            errors.push(syn::Error::new_spanned(
                constness,
                "a #[service] method cannot be `const`; remove `const`",
            ));
        }
        if let Some(unsafety) = &sig.unsafety {
            errors.push(syn::Error::new_spanned(
                unsafety,
                "a #[service] method cannot be `unsafe`; remove `unsafe`",
            ));
        }
        if let Some(abi) = &sig.abi {
            errors.push(syn::Error::new_spanned(
                abi,
                "a #[service] method cannot have an ABI; remove `extern`",
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.push(syn::Error::new_spanned(
                &sig.generics,
                "a #[service] method cannot be generic; use concrete, serializable types",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(syn::Error::new_spanned(
                variadic,
                "a #[service] method cannot be variadic",
            ));
        }

        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(receiver)) => {
                if receiver.reference.is_none() || receiver.colon_token.is_some() {
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        "a #[service] method takes `&self`; write `&self` (the server shares \
                         one instance between concurrent calls)",
                    ));
                } else if receiver.mutability.is_some() {
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        "a #[service] method takes `&self`, not `&mut self`: the server calls it \
                         concurrently; write `&self` and keep mutable state behind a `Mutex` or \
                         an atomic",
                    ));
                }
            }
            _ => errors.push(syn::Error::new_spanned(
                &sig.ident,
                format!(
                    "a #[service] method takes `&self` first; write `async fn {name}(&self, ...)`"
                ),
            )),
        }

        let mut context = None;
        let mut args = Vec::new();
        for (position, input) in inputs.enumerate() {
            let FnArg::Typed(typed) = input else {
                continue; // a second receiver: rustc reports it
            };
            if is_context(&typed.pat, &typed.ty) {
                if position == 0 {
                    context = Some(typed.ty.span());
                } else {
                    errors.push(syn::Error::new_spanned(
                        &typed.ty,
                        "`&Context` must be the first argument after `&self`; move it there",
                    ));
                }
                continue;
            }
            let ident = match &*typed.pat {
                Pat::Ident(pat)
                    if pat.by_ref.is_none() && pat.mutability.is_none() && pat.subpat.is_none() =>
                {
                    Some(pat.ident.clone())
                }
                pat => {
                    errors.push(syn::Error::new_spanned(
                        pat,
                        "a #[service] argument must be a plain name (`name: Type`); its name \
                         goes into the service descriptor",
                    ));
                    None
                }
            };
            if let Err(mut error) = check_owned(&typed.ty, "argument") {
                if position == 0
                    && shared_path_ref(&typed.ty).is_some_and(|path| !path.is_ident("str"))
                {
                    // Maybe the context under another name (`use rpc_core::Context as Ctx`).
                    error = syn::Error::new_spanned(
                        &typed.ty,
                        format!(
                            "{error} (if this is the request context, `rpc_core::Context`, name \
                             the argument `cx` or write its type as `&Context`)"
                        ),
                    );
                }
                errors.push(error);
            }
            if let Some(ident) = ident {
                args.push(Arg {
                    ident,
                    ty: (*typed.ty).clone(),
                });
            }
        }

        let output = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => {
                if let Err(error) = check_owned(ty, "return type") {
                    errors.push(error);
                }
                (**ty).clone()
            }
        };

        if let Some(options) = &options
            && options.oneway
            && !is_unit(&output)
        {
            errors.push(syn::Error::new_spanned(
                &sig.output,
                format!(
                    "a `oneway` method returns nothing to its caller; remove `{}` or remove \
                     `oneway`",
                    sig.output.to_token_stream()
                ),
            ));
        }
        let hash_arg = options.as_mut().and_then(|o| {
            o.hash_arg
                .take_if(|lit| !args.iter().any(|arg| arg.ident.unraw() == lit.value()))
        });
        if let Some(lit) = hash_arg {
            let names: Vec<String> = args
                .iter()
                .map(|arg| format!("`{}`", arg.ident.unraw()))
                .collect();
            let expected = if names.is_empty() {
                format!("`{name}` has no arguments to hash; remove `hash_arg`")
            } else {
                format!("expected one of {}", names.join(", "))
            };
            recoverable.push(syn::Error::new_spanned(
                &lit,
                format!(
                    "`hash_arg = \"{}\"` names no argument of `{name}`; {expected}",
                    lit.value()
                ),
            ));
        }
        errors.finish()?;

        let docs = method
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
            .cloned()
            .collect();
        let options = options.unwrap_or_default();
        Ok(Method {
            ident: sig.ident.clone(),
            wire_name: options.name.clone().unwrap_or(name),
            docs,
            context,
            args,
            output,
            options,
        })
    }
}

impl MethodOptions {
    fn parse(attrs: &[Attribute], recoverable: &mut Errors) -> syn::Result<MethodOptions> {
        let mut timeout_ms = None;
        let mut retries = None;
        let mut forks = None;
        let mut oneway = None;
        let mut idempotent = None;
        let mut cluster = None;
        let mut loadbalance = None;
        let mut hash_arg = None;
        let mut tps = None;
        let mut tps_wait_ms: Option<(u64, syn::LitInt)> = None;
        let mut executes = None;
        let mut actives = None;
        let mut name = None;
        let mut errors = Errors::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("rpc")) {
            if let syn::Meta::Path(path) = &attr.meta {
                errors.push(syn::Error::new_spanned(
                    path,
                    "`#[rpc]` needs options; write e.g. `#[rpc(timeout_ms = 200)]` or remove it",
                ));
                continue;
            }
            errors.take(attr.parse_nested_meta(|meta| {
                let key = meta.path.get_ident().map(Ident::to_string);
                match key.as_deref() {
                    Some("timeout_ms") => set_once(&meta, &mut timeout_ms, |meta| {
                        positive_int(
                            meta,
                            "timeout_ms = 200",
                            "`timeout_ms` must be at least 1; leave it out to use the client's \
                             default timeout",
                        )
                    }),
                    Some("retries") => set_once(&meta, &mut retries, |meta| {
                        int_value(meta, "retries = 2")?.base10_parse::<u32>()
                    }),
                    Some("forks") => set_once(&meta, &mut forks, |meta| {
                        positive_int(
                            meta,
                            "forks = 2",
                            "`forks` must be at least 1; it is how many providers a forking call \
                             goes to at once",
                        )
                    }),
                    Some("oneway") => set_once(&meta, &mut oneway, |meta| flag(meta, "oneway")),
                    Some("idempotent") => {
                        set_once(&meta, &mut idempotent, |meta| flag(meta, "idempotent"))
                    }
                    Some("cluster") => set_once(&meta, &mut cluster, |meta| {
                        let lit = string_value(meta, "cluster = \"failfast\"")?;
                        Ok(recoverable.take(known_name(&lit, "cluster mode", CLUSTER_MODES)))
                    }),
                    Some("loadbalance") => set_once(&meta, &mut loadbalance, |meta| {
                        let lit = string_value(meta, "loadbalance = \"random\"")?;
                        Ok(recoverable.take(known_name(&lit, "load balancer", LOAD_BALANCERS)))
                    }),
                    Some("hash_arg") => set_once(&meta, &mut hash_arg, |meta| {
                        string_value(meta, "hash_arg = \"<argument name>\"")
                    }),
                    Some("tps") => set_once(&meta, &mut tps, |meta| {
                        positive_int(
                            meta,
                            "tps = 100",
                            "`tps = 0` would refuse every call; give the permits per second \
                             (at least 1), or leave it out for no rate limit",
                        )
                    }),
                    Some("tps_wait_ms") => set_once(&meta, &mut tps_wait_ms, |meta| {
                        let lit = int_value(meta, "tps_wait_ms = 100")?;
                        Ok((lit.base10_parse::<u64>()?, lit))
                    }),
                    Some("executes") => set_once(&meta, &mut executes, |meta| {
                        positive_int(
                            meta,
                            "executes = 8",
                            "`executes = 0` would refuse every call; give the most calls that \
                             may run at once (at least 1), or leave it out for no limit",
                        )
                    }),
                    Some("actives") => set_once(&meta, &mut actives, |meta| {
                        positive_int(
                            meta,
                            "actives = 8",
                            "`actives = 0` would refuse every call; give the most calls in \
                             flight to one provider (at least 1), or leave it out for no limit",
                        )
                    }),
                    Some("name") => set_once(&meta, &mut name, |meta| {
                        let lit = string_value(meta, "name = \"SayHello\"")?;
                        if lit.value().trim().is_empty() {
                            return Err(syn::Error::new_spanned(
                                &lit,
                                "the method name is empty; write `name = \"SayHello\"` or leave \
                                 `name` out to use the Rust name",
                            ));
                        }
                        Ok(lit.value())
                    }),
                    _ => Err(syn::Error::new_spanned(
                        &meta.path,
                        format!(
                            "unknown #[rpc] option `{}`; expected one of `timeout_ms = <int>`, \
                             `retries = <int>`, `forks = <int>`, `oneway`, `idempotent`, \
                             `cluster = \"...\"`, \
                             `loadbalance = \"...\"`, `hash_arg = \"<argument>\"`, \
                             `tps = <int>`, `tps_wait_ms = <int>`, `executes = <int>`, \
                             `actives = <int>`, `name = \"...\"`",
                            meta.path.to_token_stream()
                        ),
                    )),
                }
            }));
        }
        if let (Some((_, lit)), None) = (&tps_wait_ms, tps) {
            errors.push(syn::Error::new_spanned(
                lit,
                "`tps_wait_ms` is how long a call may wait for a rate-limit permit; it needs \
                 `tps = <permits per second>` beside it",
            ));
        }
        errors.finish()?;
        Ok(MethodOptions {
            tps,
            tps_wait_ms: tps_wait_ms.map(|(value, _)| value),
            executes,
            actives,
            timeout_ms,
            retries,
            forks,
            oneway: oneway.is_some(),
            idempotent: idempotent.is_some(),
            cluster: cluster.flatten(),
            loadbalance: loadbalance.flatten(),
            hash_arg,
            name,
        })
    }
}

/// An integer option that must not be 0; `zero` says why, at the literal.
fn positive_int<T>(meta: &ParseNestedMeta<'_>, example: &str, zero: &str) -> syn::Result<T>
where
    T: std::str::FromStr + PartialEq + Default,
    T::Err: std::fmt::Display,
{
    let lit = int_value(meta, example)?;
    let value: T = lit.base10_parse()?;
    if value == T::default() {
        return Err(syn::Error::new_spanned(lit, zero));
    }
    Ok(value)
}

/// `lit` when it is one of `names`; otherwise an error at `lit` listing them (the client
/// builder would refuse the name at run time).
fn known_name(lit: &LitStr, what: &str, names: &[&str]) -> syn::Result<String> {
    let value = lit.value();
    if names.contains(&value.as_str()) {
        return Ok(value);
    }
    let list: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
    let hint = closest(&value, names)
        .map(|name| format!(" did you mean \"{name}\"?"))
        .unwrap_or_default();
    Err(syn::Error::new_spanned(
        lit,
        format!(
            "unknown {what} {value:?};{hint} expected one of {}",
            list.join(", ")
        ),
    ))
}

/// The name in `names` that `value` was probably meant to be: the same but for case and
/// `_`/`-`, or at most two edits away.
fn closest<'a>(value: &str, names: &[&'a str]) -> Option<&'a str> {
    let squash = |text: &str| -> String {
        text.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let value = squash(value);
    names
        .iter()
        .map(|name| (edit_distance(&value, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Parses one option's value into `slot`, rejecting a second occurrence of the key.
fn set_once<T>(
    meta: &ParseNestedMeta<'_>,
    slot: &mut Option<T>,
    parse: impl FnOnce(&ParseNestedMeta<'_>) -> syn::Result<T>,
) -> syn::Result<()> {
    if slot.is_some() {
        let key = meta.path.to_token_stream();
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!("duplicate option `{key}`; give `{key}` once"),
        ));
    }
    *slot = Some(parse(meta)?);
    Ok(())
}

/// The literal after `key =`, as an expression so that `-1` or `x` get our message.
fn literal(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Expr> {
    let key = meta.path.to_token_stream();
    if !meta.input.peek(syn::Token![=]) {
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!("`{key}` needs a value; write `{example}`"),
        ));
    }
    meta.value()?.parse::<Expr>()
}

fn string_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    match literal(meta, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "`{}` takes a string literal; write `{example}`",
                meta.path.to_token_stream()
            ),
        )),
    }
}

fn int_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitInt> {
    match literal(meta, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "`{}` takes a non-negative integer literal; write `{example}`",
                meta.path.to_token_stream()
            ),
        )),
    }
}

fn flag(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!("`{key}` is a flag and takes no value; write `#[rpc({key})]`"),
        ));
    }
    Ok(())
}

/// The request-context argument: a shared reference to a plain path that ends in
/// `Context` (`&Context`, `&rpc_core::Context`, `&::rpc_core::Context`), or to any plain
/// path when the argument is called `cx`, `ctx` or `context` (`cx: &Ctx` after
/// `use rpc_core::Context as Ctx`). Either way the skeleton passes a `&rpc_core::Context`
/// there, so a type that is not one is a type error at that type.
fn is_context(pat: &Pat, ty: &Type) -> bool {
    let Some(path) = shared_path_ref(ty) else {
        return false;
    };
    let named = |ident: &Ident| {
        let name = ident.unraw().to_string();
        matches!(name.trim_start_matches('_'), "cx" | "ctx" | "context")
    };
    path.segments
        .last()
        .is_some_and(|segment| segment.ident == "Context")
        || matches!(pat, Pat::Ident(pat) if named(&pat.ident))
}

/// `P` of `&P`, when `P` is a plain path (no `<...>` anywhere).
fn shared_path_ref(ty: &Type) -> Option<&syn::Path> {
    match ty {
        Type::Reference(reference) if reference.mutability.is_none() => plain_path(&reference.elem),
        Type::Group(group) => shared_path_ref(&group.elem),
        Type::Paren(paren) => shared_path_ref(&paren.elem),
        _ => None,
    }
}

fn plain_path(ty: &Type) -> Option<&syn::Path> {
    match ty {
        Type::Path(path)
            if path.qself.is_none()
                && path
                    .path
                    .segments
                    .iter()
                    .all(|segment| segment.arguments.is_none()) =>
        {
            Some(&path.path)
        }
        Type::Group(group) => plain_path(&group.elem),
        Type::Paren(paren) => plain_path(&paren.elem),
        _ => None,
    }
}

fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(tuple) => tuple.elems.is_empty(),
        Type::Paren(paren) => is_unit(&paren.elem),
        Type::Group(group) => is_unit(&group.elem),
        _ => false,
    }
}

/// Arguments and results cross the wire by value: no borrowed or opaque types.
fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    let owned = "types that cross the wire must be owned (serde `DeserializeOwned`)";
    match ty {
        Type::Reference(reference) => {
            let hint = match &*reference.elem {
                Type::Path(path) if path.path.is_ident("str") => "`String`".to_owned(),
                Type::Slice(slice) => format!("`Vec<{}>`", slice.elem.to_token_stream()),
                elem => format!("`{}`", elem.to_token_stream()),
            };
            Err(syn::Error::new_spanned(
                ty,
                format!("a #[service] {what} cannot be a reference: {owned}; use {hint} instead"),
            ))
        }
        Type::ImplTrait(_) => Err(syn::Error::new_spanned(
            ty,
            format!(
                "a #[service] {what} cannot be `impl Trait`; use a concrete, serializable type"
            ),
        )),
        Type::TraitObject(_) => Err(syn::Error::new_spanned(
            ty,
            format!(
                "a #[service] {what} cannot be a trait object; use a concrete, serializable type"
            ),
        )),
        Type::Ptr(_) | Type::BareFn(_) | Type::Never(_) => Err(syn::Error::new_spanned(
            ty,
            format!("a #[service] {what} must be a serializable data type"),
        )),
        Type::Infer(_) => Err(syn::Error::new_spanned(
            ty,
            format!("a #[service] {what} needs a written type"),
        )),
        Type::Paren(inner) => check_owned(&inner.elem, what),
        Type::Group(inner) => check_owned(&inner.elem, what),
        Type::Array(array) => check_owned(&array.elem, what),
        Type::Slice(slice) => check_owned(&slice.elem, what),
        Type::Tuple(tuple) => tuple
            .elems
            .iter()
            .try_for_each(|elem| check_owned(elem, what)),
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_owned(&qself.ty, what)?;
            }
            for segment in &path.path.segments {
                if let PathArguments::AngleBracketed(generics) = &segment.arguments {
                    for arg in &generics.args {
                        match arg {
                            GenericArgument::Type(ty) => check_owned(ty, what)?,
                            GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                                return Err(syn::Error::new_spanned(
                                    lifetime,
                                    format!(
                                        "a #[service] {what} cannot borrow: {owned}; use \
                                         `'static` or an owned type"
                                    ),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `HTTPGreeter2Service` -> `HTTP_GREETER2_SERVICE`.
fn screaming_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// Collects errors so one expansion reports every problem, not just the first.
#[derive(Default)]
struct Errors {
    error: Option<syn::Error>,
}

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.error {
            Some(existing) => existing.combine(error),
            None => self.error = Some(error),
        }
    }

    fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    fn finish(self) -> syn::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance, screaming_snake};

    #[test]
    fn misspelt_names_find_the_closest() {
        assert_eq!(edit_distance("roundrobin", "roundrobin"), 0);
        assert_eq!(edit_distance("failfst", "failfast"), 1);
        assert_eq!(edit_distance("", "p2c"), 3);
        let names = super::LOAD_BALANCERS;
        assert_eq!(closest("round_robin", names), Some("roundrobin"));
        assert_eq!(closest("LeastActive", names), Some("leastactive"));
        assert_eq!(closest("consistent-hash", names), Some("consistenthash"));
        assert_eq!(closest("no-such-mode", super::CLUSTER_MODES), None);
        assert_eq!(closest("failfst", super::CLUSTER_MODES), Some("failfast"));
    }

    #[test]
    fn screaming_snake_splits_words_and_acronyms() {
        assert_eq!(screaming_snake("Greeter"), "GREETER");
        assert_eq!(screaming_snake("OrderService"), "ORDER_SERVICE");
        assert_eq!(screaming_snake("HTTPGateway"), "HTTP_GATEWAY");
        assert_eq!(screaming_snake("Echo2Service"), "ECHO2_SERVICE");
    }
}
