//! The exporter behind `%%rust_async`.
//!
//! The Python side writes the user's cell, verbatim, inside
//! `#[ipy_rustasync::cell(module = "...", line_offset = N)] mod cell { ... }`.
//! Keeping the text verbatim inside one inline module means every token keeps its
//! real position: rustc's errors, even those about generated glue (an argument type
//! PyO3 cannot convert, a future that is not `Send`), point at the user's own line,
//! and the line in the cell is the line in `src/lib.rs` minus `N`.
//!
//! From the module this macro emits the module itself, then one `#[pyfunction]`
//! wrapper per top-level plain-`pub` function (async ones return an awaitable, see
//! the bridge crate), and the `#[pymodule]` that registers them along with the user's
//! own `#[pyfunction]`s and `#[pyclass]`es and an `__ira_exports__` table the Python
//! side binds names from.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, Item, ItemFn, ItemMod, LitInt, LitStr, Pat,
    PathArguments, ReturnType, Token, Type, Visibility,
};

struct CellArgs {
    module: LitStr,
    line_offset: LitInt,
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

/// Exports a cell module's public functions to Python. See the crate docs.
#[proc_macro_attribute]
pub fn cell(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(args as CellArgs);
    let module = syn::parse_macro_input!(input as ItemMod);
    expand(args, module).into()
}

/// What one exported item contributes.
struct Export {
    python_name: String,
    kind: &'static str,
    signature: String,
    wrapper: TokenStream2,
    register: TokenStream2,
    span: Span,
}

fn expand(args: CellArgs, module: ItemMod) -> TokenStream2 {
    let mod_ident = &module.ident;
    let items: &[Item] = module
        .content
        .as_ref()
        .map(|(_, items)| items.as_slice())
        .unwrap_or(&[]);
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut exports: Vec<Export> = Vec::new();

    for item in items {
        match item {
            Item::Fn(func) => match export_fn(mod_ident, func) {
                Ok(Some(export)) => exports.push(export),
                Ok(None) => {}
                Err(err) => errors.push(err),
            },
            Item::Struct(s) if has_attr(&s.attrs, "pyclass") => exports.push(export_class(
                mod_ident,
                &s.ident,
                &s.vis,
                &s.attrs,
                &mut errors,
            )),
            Item::Enum(e) if has_attr(&e.attrs, "pyclass") => exports.push(export_class(
                mod_ident,
                &e.ident,
                &e.vis,
                &e.attrs,
                &mut errors,
            )),
            Item::Macro(m)
                if m.mac
                    .path
                    .segments
                    .last()
                    .is_some_and(|seg| seg.ident == "create_exception") =>
            {
                match export_exception(mod_ident, m) {
                    Ok(export) => exports.push(export),
                    Err(err) => errors.push(err),
                }
            }
            Item::Mod(m) if has_attr(&m.attrs, "pymodule") => errors.push(syn::Error::new(
                m.ident.span(),
                "a cell cannot define its own #[pymodule]: ipy-rustasync generates the module; \
                 write plain `pub fn`s, #[pyfunction]s or #[pyclass]es instead",
            )),
            _ => {}
        }
    }

    let mut seen: Vec<&Export> = Vec::new();
    for export in &exports {
        if let Some(first) = seen.iter().find(|e| e.python_name == export.python_name) {
            let mut err = syn::Error::new(
                export.span,
                format!(
                    "two exported items are both named `{}` in Python",
                    export.python_name
                ),
            );
            err.combine(syn::Error::new(first.span, "first defined here"));
            errors.push(err);
        } else {
            seen.push(export);
        }
    }

    let registers = exports.iter().map(|e| &e.register);
    let table = exports.iter().map(|e| {
        let (name, kind, signature) = (&e.python_name, e.kind, &e.signature);
        quote! { (#name, #kind, #signature) }
    });
    let errors = errors.iter().map(syn::Error::to_compile_error);
    let module_name = &args.module;
    let line_offset = &args.line_offset;
    // The wrappers go inside the cell's module, where every name the user's
    // signatures mention resolves as they wrote it (their `use` lines included).
    let mut module = strip_module(module);
    if let Some((_, items)) = module.content.as_mut() {
        items.extend(exports.iter().map(|e| Item::Verbatim(e.wrapper.clone())));
    }

    quote! {
        #module
        #(#errors)*

        // `gil_used`: no free-threaded interpreter has run the bridge's tests, so a
        // cell does not claim it can run without the GIL (the interpreter then
        // re-enables the GIL, with a warning, when the module is imported).
        #[::pyo3::pymodule(gil_used = true)]
        #[pyo3(name = #module_name)]
        fn __ira_pymodule(__ira_m: &::pyo3::Bound<'_, ::pyo3::types::PyModule>) -> ::pyo3::PyResult<()> {
            use ::pyo3::types::PyModuleMethods as _;
            ::ipy_rustasync::__private::init_module(__ira_m, #line_offset)?;
            #(#registers)*
            let exports: ::std::vec::Vec<(&str, &str, &str)> = ::std::vec![#(#table),*];
            __ira_m.add("__ira_exports__", exports)?;
            ::std::result::Result::Ok(())
        }
    }
}

/// The module as the user wrote it, minus the attributes only the exporter reads.
fn strip_module(mut module: ItemMod) -> ItemMod {
    if let Some((_, items)) = module.content.as_mut() {
        for item in items {
            if let Item::Fn(func) = item {
                func.attrs
                    .retain(|attr| !attr.path().is_ident("rust_async"));
            }
        }
    }
    module
}

fn has_attr(attrs: &[Attribute], name: &str) -> bool {
    attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|seg| seg.ident == name)
    })
}

/// The Python name PyO3 gives a `#[pyfunction]`: `#[pyo3(name = "...")]` or
/// `#[pyfunction(name = "...")]`, if the user set one.
fn pyo3_name(attrs: &[Attribute]) -> Option<String> {
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

fn is_plain_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

/// `#[cfg(...)]` attributes, repeated on the wrapper and its registration so they
/// come and go together with the function.
fn cfg_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

fn doc_text(attrs: &[Attribute]) -> String {
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

fn export_class(
    mod_ident: &Ident,
    ident: &Ident,
    vis: &Visibility,
    attrs: &[Attribute],
    errors: &mut Vec<syn::Error>,
) -> Export {
    if !is_plain_pub(vis) {
        errors.push(syn::Error::new(
            ident.span(),
            format!("#[pyclass] `{ident}` must be `pub` for the cell to export it"),
        ));
    }
    let cfgs = cfg_attrs(attrs);
    Export {
        python_name: ident.to_string(),
        kind: "class",
        signature: format!("class {ident}"),
        wrapper: TokenStream2::new(),
        register: quote_spanned! {ident.span()=> #(#cfgs)* __ira_m.add_class::<self::#mod_ident::#ident>()?; },
        span: ident.span(),
    }
}

/// `pyo3::create_exception!(module, Name, Base)` in a cell: the class is added to
/// the module and bound in the notebook like a function, so Python can catch it.
fn export_exception(mod_ident: &Ident, item: &syn::ItemMacro) -> syn::Result<Export> {
    let args = item
        .mac
        .parse_body_with(syn::punctuated::Punctuated::<syn::Expr, Token![,]>::parse_terminated)?;
    let name = match args.iter().nth(1) {
        Some(syn::Expr::Path(p)) if p.path.get_ident().is_some() => p.path.get_ident().cloned(),
        _ => None,
    }
    .ok_or_else(|| {
        syn::Error::new(
            item.mac.span(),
            "expected `create_exception!(module, Name, Base)`",
        )
    })?;
    let cfgs = cfg_attrs(&item.attrs);
    let python_name = name.to_string();
    Ok(Export {
        python_name: python_name.clone(),
        kind: "exception",
        signature: format!("exception {python_name}"),
        wrapper: TokenStream2::new(),
        register: quote_spanned! {name.span()=>
            #(#cfgs)* __ira_m.add(#python_name, __ira_m.py().get_type::<self::#mod_ident::#name>())?;
        },
        span: name.span(),
    })
}

fn export_fn(mod_ident: &Ident, func: &ItemFn) -> syn::Result<Option<Export>> {
    let sig = &func.sig;
    let ident = &sig.ident;
    if has_attr(&func.attrs, "pymodule") {
        return Err(syn::Error::new(
            ident.span(),
            "a cell cannot define its own #[pymodule]: ipy-rustasync generates the module; \
             write plain `pub fn`s, #[pyfunction]s or #[pyclass]es instead",
        ));
    }
    let cfgs = cfg_attrs(&func.attrs);
    if has_attr(&func.attrs, "pyfunction") {
        if !is_plain_pub(&func.vis) {
            return Err(syn::Error::new(
                ident.span(),
                format!("#[pyfunction] `{ident}` must be `pub` for the cell to export it"),
            ));
        }
        return Ok(Some(Export {
            python_name: pyo3_name(&func.attrs)
                .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_owned()),
            kind: "pyfunction",
            signature: tidy(&sig.to_token_stream().to_string()),
            wrapper: TokenStream2::new(),
            register: quote_spanned! {ident.span()=>
                #(#cfgs)* __ira_m.add_function(::pyo3::wrap_pyfunction!(self::#mod_ident::#ident, __ira_m)?)?;
            },
            span: ident.span(),
        }));
    }
    if !is_plain_pub(&func.vis) {
        if let Some(attr) = func.attrs.iter().find(|a| a.path().is_ident("rust_async")) {
            return Err(syn::Error::new(
                attr.span(),
                format!("`#[rust_async]` only applies to exported functions, and `{ident}` is not `pub`"),
            ));
        }
    }
    if !is_plain_pub(&func.vis)
        || func.attrs.iter().any(|a| a.path().is_ident("test"))
        || has_attr(&func.attrs, "test")
    {
        return Ok(None);
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            format!("`{ident}` is an `unsafe fn`: Python callers cannot uphold its safety contract, so it is not exported; make it safe or not `pub`"),
        ));
    }
    if let Some(param) = sig.generics.type_params().next() {
        return Err(syn::Error::new(
            param.span(),
            format!("`{ident}` is generic: Python has no types to instantiate it with, so it cannot be exported; make it non-generic or not `pub`"),
        ));
    }
    if let Some(param) = sig.generics.const_params().next() {
        return Err(syn::Error::new(
            param.span(),
            format!("`{ident}` has a const parameter, so it cannot be exported; make it non-generic or not `pub`"),
        ));
    }

    let python_name = ident.to_string().trim_start_matches("r#").to_owned();
    let wrapper_ident = format_ident!("__ira_fn_{}", python_name);
    let is_async = sig.asyncness.is_some();
    let options = FnOptions::parse(&func.attrs, is_async)?;
    let mut params = Vec::new(); // wrapper parameters: `name: OwnedType`
    let mut call_args = Vec::new(); // how the wrapper passes each to the user's fn
    let mut py_names = Vec::new();
    let mut py_idents: Vec<Ident> = Vec::new();
    let mut cancel_handle: Option<Ident> = None;
    for (index, arg) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = arg else {
            return Err(syn::Error::new(
                arg.span(),
                "`self` is not allowed in a top-level function",
            ));
        };
        let name = match &*typed.pat {
            Pat::Ident(p) => p.ident.to_string().trim_start_matches("r#").to_owned(),
            _ => format!("arg{index}"),
        };
        // The wrapper's parameters carry the Python names: PyO3 uses them in
        // `TypeError`s ("add() missing 1 required positional argument: 'b'").
        let local = match &*typed.pat {
            Pat::Ident(p) => p.ident.clone(),
            _ => format_ident!("arg{}", index),
        };
        if is_cancel_handle(&typed.ty) {
            if !is_async {
                return Err(syn::Error::new(
                    typed.ty.span(),
                    "a `CancelHandle` parameter only makes sense on a `pub async fn`",
                ));
            }
            if cancel_handle.is_some() {
                return Err(syn::Error::new(
                    typed.ty.span(),
                    "one `CancelHandle` parameter is enough",
                ));
            }
            // Not a Python parameter: the bridge makes it and keeps the other end.
            cancel_handle = Some(local.clone());
            call_args.push(quote! { #local });
            continue;
        }
        let (owned, pass) = owned_type(&typed.ty, &local)?;
        params.push(quote_spanned! {typed.ty.span()=> #local: #owned });
        call_args.push(pass);
        py_idents.push(local);
        py_names.push(name);
    }
    let text_signature = format!("({})", py_names.join(", "));
    let signature = tidy(&sig.to_token_stream().to_string());
    let user_doc = doc_text(&func.attrs);
    let doc = if user_doc.is_empty() {
        signature.clone()
    } else {
        format!("{signature}\n\n{user_doc}")
    };
    let unit = returns_unit(&sig.output);
    // The wrapper lives inside the cell's module (see `expand`), so `self::` is the cell.
    let call = quote! { self::#ident(#(#call_args),*) };
    let call = if is_async {
        quote! { #call.await }
    } else {
        call
    };
    let call = match unit {
        Unit::Plain => quote! { { #call; ::ipy_rustasync::__private::NoneValue } },
        Unit::InResult => quote! { #call.map(|()| ::ipy_rustasync::__private::NoneValue) },
        Unit::No => call,
    };
    let convert = quote! {
        #[allow(unused_imports)]
        use ::ipy_rustasync::__private::{DisplayErrKind as _, PlainKind as _, PyErrKind as _};
        let __ira_probe = ::ipy_rustasync::__private::probe(&__ira_out);
        let __ira_tag = (&&&__ira_probe).ira_kind();
    };
    let inline = options.inline;
    let stream = returns_stream(&sig.output);
    let with_caller = sig.inputs.iter().any(|arg| {
        matches!(arg, FnArg::Typed(t) if last_ident_is(&t.ty, &["AsyncCallable", "PyAwaitable"]))
    });
    let (make_handle, token) = match &cancel_handle {
        Some(handle) => (
            quote! { let (#handle, __ira_token) = ::ipy_rustasync::CancelHandle::new(); },
            quote! { ::std::option::Option::Some(__ira_token) },
        ),
        None => (quote! {}, quote! { ::std::option::Option::None }),
    };
    if stream && is_async {
        return Err(syn::Error::new(
            sig.asyncness.span(),
            format!("`{ident}` returns a stream: make it a plain `pub fn` (Python awaits the items one by one with `async for`)"),
        ));
    }
    // The body keeps the user's span on the call so type errors point at the cell.
    let body = if stream {
        quote_spanned! {sig.span()=>
            ::ipy_rustasync::__private::call_sync(__ira_py, move || {
                let __ira_stream = #call;
                let __ira_items = ::ipy_rustasync::futures::StreamExt::map(__ira_stream, |__ira_out| {
                    #convert
                    let output: ::ipy_rustasync::__private::Output =
                        ::std::boxed::Box::new(move |__ira_py: ::pyo3::Python<'_>| __ira_tag.convert(__ira_py, __ira_out));
                    output
                });
                ::ipy_rustasync::__private::new_stream(__ira_py, #python_name, __ira_items).map(|s| s.into_any())
            })
        }
    } else if is_async {
        quote_spanned! {sig.span()=>
            #make_handle
            ::ipy_rustasync::__private::new_coroutine(__ira_py, #python_name, #inline, #token, #with_caller, async move {
                let __ira_out = #call;
                #convert
                let output: ::ipy_rustasync::__private::Output =
                    ::std::boxed::Box::new(move |__ira_py: ::pyo3::Python<'_>| __ira_tag.convert(__ira_py, __ira_out));
                output
            }).map(|awaitable| awaitable.into_any())
        }
    } else {
        quote_spanned! {sig.span()=>
            ::ipy_rustasync::__private::call_sync(__ira_py, move || {
                let __ira_out = #call;
                #convert
                __ira_tag.convert(__ira_py, __ira_out)
            })
        }
    };
    let wrapper = quote! {
        #(#cfgs)*
        #[::pyo3::pyfunction]
        #[pyo3(name = #python_name, signature = (#(#py_idents),*), text_signature = #text_signature)]
        #[doc = #doc]
        #[allow(non_snake_case, clippy::too_many_arguments)]
        pub(crate) fn #wrapper_ident(__ira_py: ::pyo3::Python<'_>, #(#params),*) -> ::pyo3::PyResult<::pyo3::Py<::pyo3::PyAny>> {
            #body
        }
    };
    // A coroutine function is wrapped so that `inspect` and asyncio recognise it.
    let register = if is_async {
        quote! {
            #(#cfgs)* ::ipy_rustasync::__private::add_async_function(
                __ira_m,
                ::pyo3::wrap_pyfunction!(self::#mod_ident::#wrapper_ident, __ira_m)?.into_any(),
                &[#(#py_names),*],
            )?;
        }
    } else {
        quote! {
            #(#cfgs)* __ira_m.add_function(::pyo3::wrap_pyfunction!(self::#mod_ident::#wrapper_ident, __ira_m)?)?;
        }
    };
    Ok(Some(Export {
        python_name,
        kind: if stream {
            "stream"
        } else if is_async {
            "async"
        } else {
            "sync"
        },
        signature,
        wrapper,
        register,
        span: ident.span(),
    }))
}

/// What `#[rust_async(...)]` on an exported function asks for.
#[derive(Default)]
struct FnOptions {
    /// Poll the future on the awaiting thread first; see the bridge's `awaitable`.
    inline: bool,
}

impl FnOptions {
    fn parse(attrs: &[Attribute], is_async: bool) -> syn::Result<Self> {
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

/// The owned type Python hands the wrapper for a parameter of type `ty`, and the
/// expression that passes it on: `&str` arrives as `String` and is lent as `&s`,
/// `&[T]` as `Vec<T>`, any other `&T` as `T`. Owning the values is what lets an async
/// function's future outlive the Python call that created it.
fn owned_type(ty: &Type, local: &Ident) -> syn::Result<(TokenStream2, TokenStream2)> {
    match ty {
        Type::Reference(reference) => {
            let owned = match &*reference.elem {
                Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => {
                    quote_spanned! {ty.span()=> ::std::string::String }
                }
                Type::Slice(slice) => {
                    let elem = &slice.elem;
                    quote_spanned! {ty.span()=> ::std::vec::Vec<#elem> }
                }
                other => {
                    if let Type::Reference(_) = other {
                        return Err(syn::Error::new(ty.span(), "references to references cannot come from Python"));
                    }
                    other.to_token_stream()
                }
            };
            let pass = if reference.mutability.is_some() {
                quote! { &mut #local }
            } else {
                quote! { &#local }
            };
            let owned_with_mut = owned;
            Ok((owned_with_mut, pass))
        }
        Type::ImplTrait(_) => Err(syn::Error::new(
            ty.span(),
            "`impl Trait` parameters cannot be exported: Python values need one concrete type to convert into",
        )),
        _ => Ok((ty.to_token_stream(), quote! { #local })),
    }
}

/// A parameter of type `CancelHandle` (any path ending so): filled in by the bridge.
fn is_cancel_handle(ty: &Type) -> bool {
    last_ident_is(ty, &["CancelHandle"])
}

/// Whether `ty` is a plain path whose last segment is one of `names`.
fn last_ident_is(ty: &Type, names: &[&str]) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|seg| names.iter().any(|n| seg.ident == n)))
}

/// Whether the function returns a `Stream`: `impl Stream<Item = T> (+ Send ...)` or a
/// `BoxStream<'static, T>`. Python gets an async iterator over its items.
fn returns_stream(output: &ReturnType) -> bool {
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

enum Unit {
    No,
    Plain,
    InResult,
}

/// Whether the return type is `()` (Python: `None`) or `...Result<(), E>`. PyO3 alone
/// would turn `()` into an empty tuple.
fn returns_unit(output: &ReturnType) -> Unit {
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

/// Token-stream text (`Vec < i64 >`) to how people write Rust (`Vec<i64>`).
fn tidy(text: &str) -> String {
    let mut out = text.to_owned();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        (" ::", "::"),
        ("& ", "&"),
        (" : ", ": "),
        (" ;", ";"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        ("' ", "'"),
    ] {
        while out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out.replace("->", " -> ")
        .replace("  ", " ")
        .replace(">-> ", "> -> ")
}
