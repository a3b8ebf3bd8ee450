//! Reading what the cell wrote: the `cell` attribute's arguments, the attributes on
//! an item (`#[rust_async(...)]`, `#[pyo3(name = ...)]`, `#[cfg]`, doc comments), and
//! what a signature's types say (a `CancelHandle`, a Python callable, a stream, a
//! unit return). Nothing here generates code or decides what is exportable.

use proc_macro2::{Span, TokenStream as TokenStream2};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, GenericArgument, Ident, ItemMacro, LitInt, LitStr, PathArguments, ReturnType, Token,
    Type, Visibility,
};

/// The arguments of `#[ipy_rustasync::cell(module = "...", line_offset = N)]`.
pub(crate) struct CellArgs {
    /// The Python module's name.
    pub(crate) module: LitStr,
    /// The line of `src/lib.rs` just before the cell's first line (0 if not given).
    pub(crate) line_offset: LitInt,
}

impl Parse for CellArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut module = None;
        let mut line_offset = None;
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "module" => module = Some(input.parse()?),
                "line_offset" => line_offset = Some(input.parse()?),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        "expected `module` or `line_offset`",
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(CellArgs {
            module: module.ok_or_else(|| input.error("missing `module = \"...\"`"))?,
            line_offset: line_offset.unwrap_or_else(|| LitInt::new("0", Span::call_site())),
        })
    }
}

/// What `#[rust_async(...)]` on an exported function asks for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct FnOptions {
    /// Poll the future on the awaiting thread first; see the bridge's `awaitable`.
    pub(crate) inline: bool,
}

impl FnOptions {
    /// The options of every `#[rust_async(...)]` in `attrs`; an unknown option, or
    /// `inline` on a function that is not `async`, is an error at the option.
    pub(crate) fn parse(attrs: &[Attribute], is_async: bool) -> syn::Result<Self> {
        let mut options = FnOptions::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("rust_async")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("inline") {
                    if !is_async {
                        return Err(meta.error(
                            "`#[rust_async(inline)]` is for `async fn`s: a plain `fn` already runs on the caller's thread",
                        ));
                    }
                    options.inline = true;
                    Ok(())
                } else {
                    Err(meta.error("unknown `rust_async` option: the one option is `inline`"))
                }
            })?;
        }
        Ok(options)
    }
}

/// Whether an attribute whose path ends in `name` is among `attrs` (`#[pyclass]`
/// and `#[pyo3::pyclass]` alike).
pub(crate) fn has_attr(attrs: &[Attribute], name: &str) -> bool {
    attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|seg| seg.ident == name)
    })
}

/// Whether `#[rust_async(...)]` is among `attrs` (the attribute only the exporter
/// reads, and removes).
pub(crate) fn rust_async_attr(attrs: &[Attribute]) -> Option<&Attribute> {
    attrs.iter().find(|a| a.path().is_ident("rust_async"))
}

/// Whether `attrs` mark a test (`#[test]`, `#[tokio::test]`): never exported.
pub(crate) fn is_test(attrs: &[Attribute]) -> bool {
    has_attr(attrs, "test")
}

/// The Python name PyO3 gives a `#[pyfunction]`: `#[pyo3(name = "...")]` or
/// `#[pyfunction(name = "...")]`, if the user set one.
pub(crate) fn pyo3_name(attrs: &[Attribute]) -> Option<String> {
    let mut name = None;
    for attr in attrs {
        let is_pyo3 = attr
            .path()
            .segments
            .last()
            .is_some_and(|seg| seg.ident == "pyo3" || seg.ident == "pyfunction");
        if !is_pyo3 || !matches!(attr.meta, syn::Meta::List(_)) {
            continue;
        }
        // Other options are skipped whatever their shape; PyO3 itself reports bad ones.
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                name = Some(lit.value());
            } else if meta.input.peek(Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let skipped;
                syn::parenthesized!(skipped in meta.input);
                let _: TokenStream2 = skipped.parse()?;
            }
            Ok(())
        });
    }
    name
}

/// The Python name of a Rust identifier: a raw identifier (`r#type`) without `r#`.
pub(crate) fn python_name(ident: &Ident) -> String {
    ident.to_string().trim_start_matches("r#").to_owned()
}

/// Whether the visibility is plain `pub` (not `pub(crate)` or private): what
/// marks a function for export.
pub(crate) fn is_plain_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

/// `#[cfg(...)]` attributes, repeated on the wrapper and its registration so they
/// come and go together with the function.
pub(crate) fn cfg_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

/// The text of the `///` comments, one line each, without the space after `///`.
pub(crate) fn doc_text(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').map(str::to_owned).unwrap_or(line))
        .collect();
    lines.join("\n").trim().to_owned()
}

/// The class name in `create_exception!(module, Name, Base)`.
pub(crate) fn exception_name(item: &ItemMacro) -> syn::Result<Ident> {
    let args = item
        .mac
        .parse_body_with(syn::punctuated::Punctuated::<syn::Expr, Token![,]>::parse_terminated)?;
    match args.iter().nth(1) {
        Some(syn::Expr::Path(p)) => p.path.get_ident().cloned(),
        _ => None,
    }
    .ok_or_else(|| {
        syn::Error::new(
            item.mac.span(),
            "expected `create_exception!(module, Name, Base)`",
        )
    })
}

/// A parameter of type `CancelHandle` (any path ending so): filled in by the bridge.
pub(crate) fn is_cancel_handle(ty: &Type) -> bool {
    last_ident_is(ty, &["CancelHandle"])
}

/// Whether a parameter is a Python async callable or awaitable, which the bridge
/// awaits on the caller's loop (so it must know where the call came from).
pub(crate) fn is_python_awaitable(ty: &Type) -> bool {
    last_ident_is(ty, &["AsyncCallable", "PyAwaitable"])
}

/// A `Python<'_>` parameter: the interpreter token, which PyO3 passes itself.
pub(crate) fn is_python_token(ty: &Type) -> bool {
    last_ident_is(ty, &["Python"])
}

/// An `Option<T>` parameter: optional in Python when it is among the last ones.
pub(crate) fn is_option(ty: &Type) -> bool {
    last_ident_is(ty, &["Option"])
}

/// Whether `ty` is a plain path whose last segment is one of `names`.
fn last_ident_is(ty: &Type, names: &[&str]) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|seg| names.iter().any(|n| seg.ident == n)))
}

/// Whether the function returns a `Stream`: `impl Stream<Item = T> (+ Send ...)` or a
/// `BoxStream<'static, T>`. Python gets an async iterator over its items.
pub(crate) fn returns_stream(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    match &**ty {
        Type::ImplTrait(it) => it.bounds.iter().any(|bound| {
            matches!(bound, syn::TypeParamBound::Trait(t)
                if t.path.segments.last().is_some_and(|seg| seg.ident == "Stream"))
        }),
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|seg| seg.ident == "BoxStream"),
        _ => false,
    }
}

/// Whether a function returns `()`, which Python must see as `None` (PyO3 alone
/// would make it an empty tuple).
#[derive(Debug, PartialEq)]
pub(crate) enum Unit {
    /// It returns something else.
    No,
    /// `()`, or no return type.
    Plain,
    /// `...Result<(), E>`.
    InResult,
}

/// Whether the return type is `()` (Python: `None`) or `...Result<(), E>`.
pub(crate) fn returns_unit(output: &ReturnType) -> Unit {
    let ty = match output {
        ReturnType::Default => return Unit::Plain,
        ReturnType::Type(_, ty) => ty,
    };
    if is_unit(ty) {
        return Unit::Plain;
    }
    if let Type::Path(path) = &**ty {
        if let Some(last) = path.path.segments.last() {
            if last.ident.to_string().ends_with("Result") {
                if let PathArguments::AngleBracketed(args) = &last.arguments {
                    if let Some(GenericArgument::Type(first)) = args.args.first() {
                        if is_unit(first) {
                            return Unit::InResult;
                        }
                    }
                }
            }
        }
    }
    Unit::No
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::{parse_quote, ItemFn};

    fn attrs_of(func: ItemFn) -> Vec<Attribute> {
        func.attrs
    }

    #[test]
    fn cell_args_read_module_and_line_offset_in_any_order() {
        let args: CellArgs = syn::parse_str(r#"line_offset = 7, module = "ira_abc""#).unwrap();
        assert_eq!(args.module.value(), "ira_abc");
        assert_eq!(args.line_offset.base10_parse::<u32>().unwrap(), 7);
        let args: CellArgs = syn::parse_str(r#"module = "m","#).unwrap();
        assert_eq!(args.line_offset.base10_parse::<u32>().unwrap(), 0);
    }

    #[test]
    fn cell_args_refuse_an_unknown_key_and_a_missing_module() {
        let err = syn::parse_str::<CellArgs>(r#"module = "m", offset = 3"#)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "expected `module` or `line_offset`");
        let err = syn::parse_str::<CellArgs>("line_offset = 3").err().unwrap();
        assert_eq!(
            err.to_string(),
            "unexpected end of input, missing `module = \"...\"`"
        );
    }

    #[test]
    fn rust_async_inline_is_read_on_an_async_fn() {
        let attrs = attrs_of(parse_quote! { #[rust_async(inline)] pub async fn f() {} });
        assert_eq!(
            FnOptions::parse(&attrs, true).unwrap(),
            FnOptions { inline: true }
        );
        let attrs = attrs_of(parse_quote! { #[doc = "x"] pub async fn f() {} });
        assert_eq!(
            FnOptions::parse(&attrs, true).unwrap(),
            FnOptions::default()
        );
    }

    #[test]
    fn rust_async_refuses_inline_on_a_plain_fn_and_unknown_options() {
        let attrs = attrs_of(parse_quote! { #[rust_async(inline)] pub fn f() {} });
        let err = FnOptions::parse(&attrs, false).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("`#[rust_async(inline)]` is for `async fn`s"));
        let attrs = attrs_of(parse_quote! { #[rust_async(eager)] pub async fn f() {} });
        let err = FnOptions::parse(&attrs, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown `rust_async` option: the one option is `inline`"
        );
    }

    #[test]
    fn attributes_are_found_by_their_last_path_segment() {
        let attrs = attrs_of(parse_quote! { #[pyo3::pyfunction] #[tokio::test] fn f() {} });
        assert!(has_attr(&attrs, "pyfunction"));
        assert!(is_test(&attrs));
        assert!(!has_attr(&attrs, "pyclass"));
        assert!(rust_async_attr(&attrs).is_none());
        let attrs = attrs_of(parse_quote! { #[rust_async(inline)] fn f() {} });
        assert!(rust_async_attr(&attrs).is_some());
    }

    #[test]
    fn pyo3_name_is_read_from_either_attribute_past_other_options() {
        let attrs = attrs_of(parse_quote! {
            #[pyfunction(signature = (a, b = 2), text_signature = "(a, b)", name = "plus")]
            fn f() {}
        });
        assert_eq!(pyo3_name(&attrs).as_deref(), Some("plus"));
        let attrs = attrs_of(parse_quote! { #[pyfunction] #[pyo3(name = "minus")] fn f() {} });
        assert_eq!(pyo3_name(&attrs).as_deref(), Some("minus"));
        let attrs = attrs_of(parse_quote! { #[pyfunction] #[pyo3(pass_module)] fn f() {} });
        assert_eq!(pyo3_name(&attrs), None);
    }

    #[test]
    fn python_names_drop_the_raw_prefix() {
        let ident: Ident = syn::parse_str("r#type").unwrap();
        assert_eq!(python_name(&ident), "type");
        let ident: Ident = syn::parse_str("say_after").unwrap();
        assert_eq!(python_name(&ident), "say_after");
    }

    #[test]
    fn only_plain_pub_is_exported() {
        assert!(is_plain_pub(&parse_quote!(pub)));
        assert!(!is_plain_pub(&parse_quote!(pub(crate))));
        assert!(!is_plain_pub(&Visibility::Inherited));
    }

    #[test]
    fn cfg_attributes_are_kept_and_others_are_not() {
        let attrs = attrs_of(parse_quote! {
            #[cfg(unix)] #[inline] #[cfg(feature = "x")] fn f() {}
        });
        assert_eq!(cfg_attrs(&attrs).len(), 2);
    }

    #[test]
    fn doc_text_joins_the_lines_without_their_leading_space() {
        let attrs = attrs_of(parse_quote! {
            /// Says hello.
            ///
            ///   Indented stays indented.
            #[doc = "last"]
            fn f() {}
        });
        assert_eq!(
            doc_text(&attrs),
            "Says hello.\n\n  Indented stays indented.\nlast"
        );
        assert_eq!(doc_text(&[]), "");
    }

    #[test]
    fn exception_name_is_the_second_argument() {
        let item: ItemMacro = parse_quote! { pyo3::create_exception!(cell, NotFound, PyKeyError); };
        assert_eq!(exception_name(&item).unwrap(), "NotFound");
        let item: ItemMacro = parse_quote! { create_exception!(cell, "NotFound", PyKeyError); };
        assert_eq!(
            exception_name(&item).unwrap_err().to_string(),
            "expected `create_exception!(module, Name, Base)`"
        );
    }

    #[test]
    fn cancel_handles_and_python_awaitables_are_recognised_by_their_type_name() {
        assert!(is_cancel_handle(&parse_quote!(ipy_rustasync::CancelHandle)));
        assert!(is_cancel_handle(&parse_quote!(CancelHandle)));
        assert!(!is_cancel_handle(&parse_quote!(&CancelHandle)));
        assert!(!is_cancel_handle(&parse_quote!(<T as X>::CancelHandle)));
        assert!(!is_cancel_handle(&parse_quote!(CancelHandles)));
        assert!(is_python_awaitable(&parse_quote!(
            ipy_rustasync::AsyncCallable
        )));
        assert!(is_python_awaitable(&parse_quote!(PyAwaitable)));
        assert!(!is_python_awaitable(&parse_quote!(Py<PyAny>)));
    }

    #[test]
    fn streams_are_impl_stream_or_box_stream() {
        let sig = |f: ItemFn| f.sig.output;
        assert!(returns_stream(&sig(parse_quote! {
            fn f() -> impl futures::Stream<Item = u32> + Send + 'static {}
        })));
        assert!(returns_stream(&sig(parse_quote! {
            fn f() -> BoxStream<'static, u32> {}
        })));
        assert!(!returns_stream(&sig(
            parse_quote! { fn f() -> impl Iterator<Item = u32> {} }
        )));
        assert!(!returns_stream(&sig(parse_quote! { fn f() {} })));
    }

    #[test]
    fn unit_returns_are_found_bare_and_in_a_result() {
        let sig = |f: ItemFn| f.sig.output;
        assert_eq!(returns_unit(&sig(parse_quote! { fn f() {} })), Unit::Plain);
        assert_eq!(
            returns_unit(&sig(parse_quote! { fn f() -> () {} })),
            Unit::Plain
        );
        assert_eq!(
            returns_unit(&sig(parse_quote! { fn f() -> Result<(), String> {} })),
            Unit::InResult
        );
        assert_eq!(
            returns_unit(&sig(parse_quote! { fn f() -> pyo3::PyResult<()> {} })),
            Unit::InResult
        );
        assert_eq!(
            returns_unit(&sig(parse_quote! { fn f() -> Result<i64, ()> {} })),
            Unit::No
        );
        assert_eq!(
            returns_unit(&sig(parse_quote! { fn f() -> (i64,) {} })),
            Unit::No
        );
    }
}
