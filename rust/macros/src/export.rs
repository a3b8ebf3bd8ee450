//! What each export contributes to the expansion: the `#[pyfunction]` wrapper of a
//! plain `pub fn` (placed inside the cell's module), the line of the `#[pymodule]`
//! that registers it, and its row of the `__ira_exports__` table. A user's own
//! `#[pyfunction]` gets no wrapper but a registering helper inside the cell's module,
//! where it is visible even when it is not `pub` (`fn f` as PyO3's guides write it).

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Item, ItemFn, ItemMacro, ItemMod, ReturnType, Signature, Type};

use crate::check::{self, FnExport, Param, PlainFn};
use crate::parse::{self, Unit};

/// What one exported item contributes.
pub(crate) struct Export {
    /// The name Python binds it to.
    pub(crate) python_name: String,
    /// `async`, `stream`, `sync`, `pyfunction`, `class` or `exception` (the Python
    /// side reads these).
    pub(crate) kind: &'static str,
    /// The Rust signature as the user wrote it, for the table (and the docstring).
    pub(crate) signature: String,
    /// Code that goes inside the cell's module (empty for what PyO3 wraps itself).
    pub(crate) wrapper: TokenStream2,
    /// The statement that adds it to the module in the `#[pymodule]`.
    pub(crate) register: TokenStream2,
    /// Where it is defined, for errors about it.
    pub(crate) span: Span,
}

/// The cell's module as the user wrote it, minus the attributes only the exporter
/// reads, headed by `prelude` (the printing macros, which must come before the
/// code that uses them), with the conversion's traits ([`kinds`]) and `extra` items
/// (the wrappers) appended.
pub(crate) fn module_with(
    mut module: ItemMod,
    prelude: TokenStream2,
    extra: impl Iterator<Item = TokenStream2>,
) -> ItemMod {
    if let Some((_, items)) = module.content.as_mut() {
        for item in items.iter_mut() {
            if let Item::Fn(func) = item {
                func.attrs
                    .retain(|attr| !attr.path().is_ident("rust_async"));
            }
        }
        items.insert(0, Item::Verbatim(prelude));
        items.push(Item::Verbatim(kinds()));
        items.extend(extra.map(Item::Verbatim));
    }
    module
}

/// A `#[pyclass]` struct or enum: registered by its type.
pub(crate) fn class(mod_ident: &Ident, ident: &Ident, attrs: &[Attribute]) -> Export {
    let cfgs = parse::cfg_attrs(attrs);
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
pub(crate) fn exception(mod_ident: &Ident, item: &ItemMacro) -> syn::Result<Export> {
    let name = parse::exception_name(item)?;
    let cfgs = parse::cfg_attrs(&item.attrs);
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

/// A top-level function: a user's `#[pyfunction]` as it is, a plain `pub fn` through
/// a generated wrapper, anything else not at all (`None`), or the reason it cannot be.
pub(crate) fn function(mod_ident: &Ident, func: &ItemFn) -> syn::Result<Option<Export>> {
    let ident = &func.sig.ident;
    let cfgs = parse::cfg_attrs(&func.attrs);
    match check::function(func)? {
        FnExport::Private => Ok(None),
        FnExport::PyFunction => {
            // PyO3 makes the function's definition a module with the function's own
            // visibility, so a private one is out of reach of the `#[pymodule]` outside
            // the cell's module: a helper inside it adds the function to the module.
            let helper = format_ident!("__ira_add_{}", ident);
            let add = quote_spanned! {ident.span()=>
                __ira_m.add_function(::pyo3::wrap_pyfunction!(self::#ident, __ira_m)?)
            };
            Ok(Some(Export {
                python_name: parse::pyo3_name(&func.attrs)
                    .unwrap_or_else(|| parse::python_name(ident)),
                kind: "pyfunction",
                signature: signature_text(&func.sig),
                wrapper: quote! {
                    #(#cfgs)*
                    #[doc(hidden)]
                    #[allow(non_snake_case)]
                    pub(crate) fn #helper(__ira_m: &::pyo3::Bound<'_, ::pyo3::types::PyModule>) -> ::pyo3::PyResult<()> {
                        use ::pyo3::types::PyModuleMethods as _;
                        #add
                    }
                },
                register: quote! { #(#cfgs)* self::#mod_ident::#helper(__ira_m)?; },
                span: ident.span(),
            }))
        }
        FnExport::Plain(plain) => Ok(Some(wrapped(mod_ident, func, plain))),
    }
}

/// A plain `pub fn`'s export: a `#[pyfunction]` wrapper that takes owned Python
/// arguments, calls the function and converts what it returns (an async one into
/// the bridge's coroutine, a stream into its async iterator).
fn wrapped(mod_ident: &Ident, func: &ItemFn, plain: PlainFn<'_>) -> Export {
    let sig = &func.sig;
    let ident = &sig.ident;
    let cfgs = parse::cfg_attrs(&func.attrs);
    let python_name = parse::python_name(ident);
    let wrapper_ident = format_ident!("__ira_fn_{}", python_name);
    let is_async = sig.asyncness.is_some();
    let PlainFn {
        options,
        params,
        stream,
    } = plain;

    let mut wrapper_params = Vec::new(); // `name: OwnedType`
    let mut call_args = Vec::new(); // how the wrapper passes each to the user's fn
    let mut arg_locals = Vec::new(); // the Python arguments' locals, in order
    let mut arg_bindings = Vec::new(); // how the call binds each (`mut values`)
    let mut py_names = Vec::new();
    let mut py_idents: Vec<(&Ident, bool)> = Vec::new();
    let mut cancel_handle: Option<&Ident> = None;
    for param in &params {
        match param {
            Param::CancelHandle { local } => {
                // Not a Python parameter: the bridge makes it and keeps the other end.
                cancel_handle = Some(local);
                call_args.push(quote! { #local });
            }
            Param::Token => call_args.push(quote! { __ira_py }),
            Param::Python { name, local, ty } => {
                let (binding, owned, pass) = owned_type(ty, local);
                // A sync call's `mut` goes where the call takes its arguments (below).
                let param = if is_async {
                    &binding
                } else {
                    &local.to_token_stream()
                };
                wrapper_params.push(quote_spanned! {ty.span()=> #param: #owned });
                call_args.push(pass);
                arg_locals.push(local);
                arg_bindings.push(binding);
                py_idents.push((local, parse::is_option(ty)));
                py_names.push(name.as_str());
            }
        }
    }
    // Trailing `Option<T>` parameters default to `None`, as a Python user expects
    // (and as PyO3 did implicitly before 0.23).
    let optional_from = py_idents
        .iter()
        .rposition(|(_, optional)| !optional)
        .map_or(0, |last_required| last_required + 1);
    // PyO3 derives `__text_signature__` from this (`(a, b=None)`), and with no
    // defaults to give, from the parameters alone: the attribute is left out then,
    // one thing fewer for PyO3's macro to read per function.
    let py_signature = (optional_from < py_idents.len()).then(|| {
        let params = py_idents.iter().enumerate().map(|(i, (local, _))| {
            if i >= optional_from {
                quote! { #local = None }
            } else {
                quote! { #local }
            }
        });
        quote! { , signature = (#(#params),*) }
    });
    let signature = signature_text(sig);
    let user_doc = parse::doc_text(&func.attrs);
    let doc = if user_doc.is_empty() {
        signature.clone()
    } else {
        format!("{signature}\n\n{user_doc}")
    };
    // The wrapper lives inside the cell's module (see `expand`), so `self::` is the cell.
    let called = quote! { self::#ident(#(#call_args),*) };
    let call = unit_as_none(called.clone(), &sig.output);
    let convert = convert();
    let with_caller = params
        .iter()
        .any(|param| matches!(param, Param::Python { ty, .. } if parse::is_python_awaitable(ty)));
    let coroutine = Coroutine {
        python_name: &python_name,
        inline: options.inline,
        cancel_handle,
        with_caller,
        on_start: None,
        lends: params.iter().any(|param| {
            matches!(
                param,
                Param::Python {
                    ty: Type::Reference(_),
                    ..
                }
            )
        }),
    };
    // A sync call runs through the bridge's `call_sync`, which takes it as a
    // `&mut dyn FnMut` (compiled once, not once per function): the arguments reach
    // the closure in an `Option` it takes them from, as it is called once.
    let (take_args, args) = if arg_locals.is_empty() {
        (TokenStream2::new(), TokenStream2::new())
    } else {
        (
            quote! { let (#(#arg_bindings,)*) = __ira_args.take().unwrap(); },
            quote! { let mut __ira_args = ::std::option::Option::Some((#(#arg_locals,)*)); },
        )
    };
    // The body keeps the user's span on the call so type errors point at the cell.
    let body = if stream {
        quote_spanned! {sig.span()=>
            #args
            ::ipy_rustasync::__private::call_sync(__ira_py, &mut || {
                #take_args
                let __ira_stream = #call;
                let __ira_items = ::ipy_rustasync::futures::StreamExt::map(__ira_stream, |__ira_out| {
                    #convert
                    __ira_tag.output(__ira_out)
                });
                ::ipy_rustasync::__private::new_stream(__ira_py, #python_name, __ira_items)
            })
        }
    } else if is_async {
        coroutine.body(called, &sig.output, sig.span())
    } else {
        quote_spanned! {sig.span()=>
            #args
            ::ipy_rustasync::__private::call_sync(__ira_py, &mut || {
                #take_args
                let __ira_out = #call;
                #convert
                __ira_tag.convert(__ira_py, __ira_out)
            })
        }
    };
    let wrapper = quote! {
        #(#cfgs)*
        #[::pyo3::pyfunction]
        #[pyo3(name = #python_name #py_signature)]
        #[doc = #doc]
        #[allow(non_snake_case, clippy::too_many_arguments)]
        pub(crate) fn #wrapper_ident(__ira_py: ::pyo3::Python<'_>, #(#wrapper_params),*) -> ::pyo3::PyResult<::pyo3::Py<::pyo3::PyAny>> {
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
    Export {
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
    }
}

/// `call` (the user's function called, and awaited if async) giving Python `None`
/// for `()` and `Ok(())` (PyO3 alone would make `()` an empty tuple).
pub(crate) fn unit_as_none(call: TokenStream2, output: &ReturnType) -> TokenStream2 {
    match parse::returns_unit(output) {
        Unit::Plain => quote! { { #call; ::ipy_rustasync::__private::NoneValue } },
        Unit::InResult => quote! { #call.map(|()| ::ipy_rustasync::__private::NoneValue) },
        Unit::No => call,
    }
}

/// Picks, at compile time, how `__ira_out` becomes Python (a value, `Err` as
/// `RustError`, `PyErr` raised as it is): `__ira_tag.convert(py, __ira_out)` now,
/// or `__ira_tag.output(__ira_out)` for the loop thread. The traits it picks with
/// are in scope through [`kinds`].
fn convert() -> TokenStream2 {
    quote! {
        let __ira_tag = (&&&::ipy_rustasync::__private::probe(&__ira_out)).ira_kind();
    }
}

/// The conversion's traits, imported once into the cell's module (unnamed, so they
/// cannot clash with the user's names) for every wrapper's [`convert`].
pub(crate) fn kinds() -> TokenStream2 {
    quote! {
        #[allow(unused_imports)]
        use ::ipy_rustasync::__private::{DisplayErrKind as _, IntoOutput as _, PlainKind as _, PyErrKind as _};
    }
}

/// What an async export's awaitable is made with: the bridge's coroutine, the same
/// for a `pub async fn`, an async `#[pyfunction]` and an async method.
pub(crate) struct Coroutine<'a> {
    /// The name in its messages and repr (`bump`, `Counter.bump`).
    pub(crate) python_name: &'a str,
    /// `#[rust_async(inline)]`.
    pub(crate) inline: bool,
    /// The local the user's `CancelHandle` parameter is bound to, if it has one.
    pub(crate) cancel_handle: Option<&'a Ident>,
    /// It takes a Python awaitable or async callable (see the bridge's `callback.rs`).
    pub(crate) with_caller: bool,
    /// Statements that run when the call starts, attached, before the future is
    /// made (a method's borrow of its object, `?` on failure): the coroutine is then
    /// the bridge's deferred one.
    pub(crate) on_start: Option<TokenStream2>,
    /// The call lends the function some of its arguments (`&str` from a `String`):
    /// the future must own them, in an `async` block around the call.
    pub(crate) lends: bool,
}

impl Coroutine<'_> {
    /// A wrapper's body, given `__ira_py`: the coroutine of the future `call` (the
    /// user's function called, not awaited) makes, its output converted as `output`
    /// (the declared return type) says.
    ///
    /// Without `on_start`, the future is made at once (an `async fn` runs nothing
    /// until polled) and handed to the bridge with the tag that converts what it
    /// ends with, so a cell compiles no `async` block of its own per function
    /// (unless the call `lends` arguments, which a block around it then owns).
    /// With it (a method borrowing its object), the future is made when the call
    /// starts, inside an `async` block that holds the borrow for the call's life.
    pub(crate) fn body(&self, call: TokenStream2, output: &ReturnType, span: Span) -> TokenStream2 {
        let Coroutine {
            python_name,
            inline,
            cancel_handle,
            with_caller,
            on_start,
            lends,
        } = self;
        let (make_handle, token) = match cancel_handle {
            Some(handle) => (
                quote! { let (#handle, __ira_token) = ::ipy_rustasync::CancelHandle::new(); },
                quote! { ::std::option::Option::Some(__ira_token) },
            ),
            None => (quote! {}, quote! { ::std::option::Option::None }),
        };
        let Some(on_start) = on_start else {
            let probed =
                quote! { (&&&::ipy_rustasync::__private::probe_output(&__ira_future)).ira_kind() };
            let kind = match parse::returns_unit(output) {
                Unit::Plain => quote! { ::ipy_rustasync::__private::NoneTag },
                Unit::InResult => quote! { ::ipy_rustasync::__private::UnitOk(#probed) },
                Unit::No => probed,
            };
            let future = if *lends {
                quote_spanned! {span=> async move { #call.await } }
            } else {
                call
            };
            return quote_spanned! {span=>
                #make_handle
                let __ira_future = #future;
                let __ira_kind = #kind;
                ::ipy_rustasync::__private::new_coroutine(
                    __ira_py, #python_name, #inline, #token, #with_caller, __ira_future, __ira_kind,
                )
            };
        };
        let call = unit_as_none(quote! { #call.await }, output);
        let convert = convert();
        let future = quote_spanned! {span=>
            async move {
                let __ira_out = #call;
                #convert
                __ira_tag.output(__ira_out)
            }
        };
        quote_spanned! {span=>
            #make_handle
            ::ipy_rustasync::__private::new_deferred_coroutine(
                __ira_py, #python_name, #inline, #token, #with_caller,
                move |__ira_py: ::pyo3::Python<'_>| {
                    #on_start
                    ::pyo3::PyResult::Ok(#future)
                },
            )
        }
    }
}

/// How the wrapper takes a parameter of type `ty` from Python and passes it on: its
/// binding, the owned type Python hands it, and the expression that passes it. `&str`
/// arrives as `String` and is lent as `&s`, `&[T]` as `Vec<T>`, any other `&T` as `T`;
/// a `&mut` is lent from a `mut` binding. Owning the values is what lets an async
/// function's future outlive the Python call that created it. (`check` has refused
/// the types this cannot handle.)
pub(crate) fn owned_type(ty: &Type, local: &Ident) -> (TokenStream2, TokenStream2, TokenStream2) {
    let Type::Reference(reference) = ty else {
        return (quote! { #local }, ty.to_token_stream(), quote! { #local });
    };
    let owned = match &*reference.elem {
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => {
            quote_spanned! {ty.span()=> ::std::string::String }
        }
        Type::Slice(slice) => {
            let elem = &slice.elem;
            quote_spanned! {ty.span()=> ::std::vec::Vec<#elem> }
        }
        other => other.to_token_stream(),
    };
    if reference.mutability.is_some() {
        (quote! { mut #local }, owned, quote! { &mut #local })
    } else {
        (quote! { #local }, owned, quote! { &#local })
    }
}

/// The signature as Rust code (without the body), for the exports table and the
/// head of the docstring: `async fn say_after(ms: u64, who: String) -> String`.
///
/// prettyplease formats it as rustfmt would, so a long signature breaks over lines
/// at its parameters. It replaced a hand-written tidy-up of the token text, which
/// depended on how the compiler spaced tokens (and broke lines mid-signature).
/// Cost: one small crate per cold cell build, compiled unoptimized like the other
/// build-time crates (`BUILD_TIME_CRATES` in ipy_rustasync/crate.py).
pub(crate) fn signature_text(sig: &Signature) -> String {
    // A signature parsed from the cell always parses again as a function; were it
    // not to, the token text would still do.
    let Ok(file) = syn::parse2::<syn::File>(quote! { #sig {} }) else {
        return sig.to_token_stream().to_string();
    };
    let text = prettyplease::unparse(&file);
    let text = text.trim_end();
    text.strip_suffix("{}")
        .unwrap_or(text)
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// Whether `needle`'s tokens appear, in order and together, in `haystack`.
    fn contains(haystack: &TokenStream2, needle: TokenStream2) -> bool {
        haystack.to_string().contains(&needle.to_string())
    }

    fn export_of(func: ItemFn) -> Export {
        let cell: Ident = parse_quote!(cell);
        match function(&cell, &func) {
            Ok(Some(export)) => export,
            Ok(None) => panic!("not exported"),
            Err(err) => panic!("refused: {err}"),
        }
    }

    fn signature_of(func: ItemFn) -> String {
        signature_text(&func.sig)
    }

    #[test]
    fn signatures_read_as_rust_code_on_one_line_when_short() {
        let cases: [(ItemFn, &str); 8] = [
            (
                parse_quote! { pub async fn say_after(ms: u64, who: String) -> String {} },
                "async fn say_after(ms: u64, who: String) -> String",
            ),
            (parse_quote! { pub fn unit() {} }, "fn unit()"),
            (
                parse_quote! { pub fn res(x: &str) -> Result<(), String> {} },
                "fn res(x: &str) -> Result<(), String>",
            ),
            (
                parse_quote! { pub fn life<'a>(x: &'a str) -> &'a str {} },
                "fn life<'a>(x: &'a str) -> &'a str",
            ),
            (
                parse_quote! { pub fn q(x: <Vec<u8> as IntoIterator>::Item) -> PyResult<Py<PyAny>> {} },
                "fn q(x: <Vec<u8> as IntoIterator>::Item) -> PyResult<Py<PyAny>>",
            ),
            (
                parse_quote! { pub fn ptr(x: *const u8, f: fn(i64) -> i64) {} },
                "fn ptr(x: *const u8, f: fn(i64) -> i64)",
            ),
            (
                parse_quote! { pub fn mutpat(mut x: i64, r#type: i64, _: i64) -> (i64,) {} },
                "fn mutpat(mut x: i64, r#type: i64, _: i64) -> (i64,)",
            ),
            (
                parse_quote! { pub fn stream(n: u32) -> impl futures::Stream<Item = u32> + Send + 'static {} },
                "fn stream(n: u32) -> impl futures::Stream<Item = u32> + Send + 'static",
            ),
        ];
        for (func, expected) in cases {
            assert_eq!(signature_of(func), expected);
        }
    }

    #[test]
    fn long_signatures_break_at_their_parameters_as_rustfmt_would() {
        let func: ItemFn = parse_quote! {
            pub async fn fetch_all(urls: Vec<String>, fetch: ipy_rustasync::AsyncCallable) -> PyResult<usize> {}
        };
        assert_eq!(
            signature_of(func),
            "async fn fetch_all(\n    urls: Vec<String>,\n    fetch: ipy_rustasync::AsyncCallable,\n) -> PyResult<usize>"
        );
        let func: ItemFn = parse_quote! { pub fn wh<T>(x: T) -> T where T: Clone {} };
        assert_eq!(
            signature_of(func),
            "fn wh<T>(x: T) -> T\nwhere\n    T: Clone,"
        );
    }

    #[test]
    fn parameters_arrive_owned_and_are_lent_as_declared() {
        let local: Ident = parse_quote!(x);
        let shown = |ty: Type| {
            let (binding, owned, pass) = owned_type(&ty, &local);
            format!("{binding}: {owned} -> {pass}")
        };
        assert_eq!(
            shown(parse_quote!(&str)),
            "x: :: std :: string :: String -> & x"
        );
        assert_eq!(
            shown(parse_quote!(&[u8])),
            "x: :: std :: vec :: Vec < u8 > -> & x"
        );
        assert_eq!(
            shown(parse_quote!(&mut Vec<u8>)),
            "mut x: Vec < u8 > -> & mut x"
        );
        assert_eq!(
            shown(parse_quote!(HashMap<String, i64>)),
            "x: HashMap < String , i64 > -> x"
        );
    }

    #[test]
    fn a_plain_fn_gets_a_sync_wrapper_named_and_documented_for_python() {
        let export = export_of(parse_quote! {
            /// Adds.
            #[cfg(unix)]
            pub fn add(a: i64, r#b: i64) -> i64 { a + b }
        });
        assert_eq!(export.python_name, "add");
        assert_eq!(export.kind, "sync");
        assert_eq!(export.signature, "fn add(a: i64, r#b: i64) -> i64");
        let doc = "fn add(a: i64, r#b: i64) -> i64\n\nAdds.";
        assert!(contains(
            &export.wrapper,
            quote! {
                #[cfg(unix)]
                #[::pyo3::pyfunction]
                #[pyo3(name = "add")]
                #[doc = #doc]
                #[allow(non_snake_case, clippy::too_many_arguments)]
                pub(crate) fn __ira_fn_add(__ira_py: ::pyo3::Python<'_>, a: i64, r#b: i64)
            }
        ));
        assert!(contains(
            &export.wrapper,
            quote! { ::ipy_rustasync::__private::call_sync }
        ));
        assert!(contains(
            &export.wrapper,
            quote! { let __ira_out = self::add(a, r#b); }
        ));
        assert!(contains(
            &export.register,
            quote! { #[cfg(unix)] __ira_m.add_function(::pyo3::wrap_pyfunction!(self::cell::__ira_fn_add, __ira_m)?)?; }
        ));
    }

    #[test]
    fn an_async_fn_becomes_a_coroutine_function_with_its_options() {
        let export = export_of(parse_quote! {
            #[rust_async(inline)]
            pub async fn work(n: u32, cancel: CancelHandle, f: AsyncCallable) -> u32 { n }
        });
        assert_eq!(export.kind, "async");
        assert!(contains(&export.wrapper, quote! { #[pyo3(name = "work")] }));
        let optional =
            export_of(parse_quote! { pub fn opt(a: u8, b: Option<u8>, c: Option<u8>) {} });
        assert!(contains(
            &optional.wrapper,
            quote! { #[pyo3(name = "opt", signature = (a, b = None, c = None))] }
        ));
        // The future is made at once and handed over with the tag that converts
        // what it ends with: no `async` block per function.
        assert!(contains(
            &export.wrapper,
            quote! {
                let (cancel, __ira_token) = ::ipy_rustasync::CancelHandle::new();
                let __ira_future = self::work(n, cancel, f);
                let __ira_kind = (&&&::ipy_rustasync::__private::probe_output(&__ira_future)).ira_kind();
                ::ipy_rustasync::__private::new_coroutine(
                    __ira_py, "work", true, ::std::option::Option::Some(__ira_token), true, __ira_future, __ira_kind,
                )
            }
        ));
        assert!(!export.wrapper.to_string().contains("async move"));
        assert!(contains(
            &export.register,
            quote! {
                ::ipy_rustasync::__private::add_async_function(
                    __ira_m,
                    ::pyo3::wrap_pyfunction!(self::cell::__ira_fn_work, __ira_m)?.into_any(),
                    &["n", "f"],
                )?;
            }
        ));
    }

    #[test]
    fn an_async_fn_without_options_is_spawned_and_has_no_cancel_handle() {
        let export = export_of(parse_quote! { pub async fn tick() -> u8 { 1 } });
        assert!(contains(
            &export.wrapper,
            quote! { __ira_py, "tick", false, ::std::option::Option::None, false, __ira_future, __ira_kind, }
        ));
        assert!(!export.wrapper.to_string().contains("CancelHandle"));
    }

    #[test]
    fn a_mutable_reference_is_lent_from_a_mutable_binding() {
        let export = export_of(parse_quote! {
            pub fn push(values: &mut Vec<u8>, r#in: &str) -> usize { values.len() }
        });
        assert!(contains(
            &export.wrapper,
            quote! { __ira_fn_push(__ira_py: ::pyo3::Python<'_>, values: Vec<u8>, r#in: ::std::string::String) }
        ));
        // The sync call takes its arguments, binding the lent one `mut`.
        assert!(contains(
            &export.wrapper,
            quote! {
                let mut __ira_args = ::std::option::Option::Some((values, r#in,));
                ::ipy_rustasync::__private::call_sync
            }
        ));
        assert!(contains(
            &export.wrapper,
            quote! {
                let (mut values, r#in,) = __ira_args.take().unwrap();
                let __ira_out = self::push(&mut values, &r#in);
            }
        ));
        // An async one's future owns them: the wrapper's parameter is `mut`.
        let export = export_of(parse_quote! {
            pub async fn push(values: &mut Vec<u8>) -> usize { values.len() }
        });
        assert!(contains(
            &export.wrapper,
            quote! { __ira_fn_push(__ira_py: ::pyo3::Python<'_>, mut values: Vec<u8>) }
        ));
    }

    #[test]
    fn unit_returns_become_none_for_python() {
        let export = export_of(parse_quote! { pub fn nothing() {} });
        assert!(contains(
            &export.wrapper,
            quote! { { self::nothing(); ::ipy_rustasync::__private::NoneValue } }
        ));
        // An async function's `()` is the bridge's tag for it.
        let export = export_of(parse_quote! { pub async fn unit() { } });
        assert!(contains(
            &export.wrapper,
            quote! { let __ira_kind = ::ipy_rustasync::__private::NoneTag; }
        ));
        let export =
            export_of(parse_quote! { pub async fn maybe() -> Result<(), String> { Ok(()) } });
        assert!(contains(
            &export.wrapper,
            quote! {
                let __ira_kind = ::ipy_rustasync::__private::UnitOk(
                    (&&&::ipy_rustasync::__private::probe_output(&__ira_future)).ira_kind()
                );
            }
        ));
        let export = export_of(parse_quote! { pub fn one() -> () {} });
        assert!(contains(
            &export.wrapper,
            quote! { { self::one(); ::ipy_rustasync::__private::NoneValue } }
        ));
    }

    #[test]
    fn a_stream_becomes_an_async_iterator() {
        let export = export_of(parse_quote! {
            pub fn count(n: u32) -> impl Stream<Item = u32> { futures::stream::iter(0..n) }
        });
        assert_eq!(export.kind, "stream");
        assert!(contains(
            &export.wrapper,
            quote! { ::ipy_rustasync::__private::new_stream(__ira_py, "count", __ira_items) }
        ));
    }

    #[test]
    fn a_users_pyfunction_keeps_its_own_name_and_wrapper() {
        let export = export_of(parse_quote! {
            #[pyfunction]
            #[pyo3(name = "plus")]
            pub fn add(a: i64, b: i64) -> i64 { a + b }
        });
        assert_eq!(
            (export.python_name.as_str(), export.kind),
            ("plus", "pyfunction")
        );
        assert_eq!(export.signature, "fn add(a: i64, b: i64) -> i64");
        // No wrapper of ours around it: PyO3's is used as it is, added by a helper.
        assert!(!export.wrapper.to_string().contains("pyo3 :: pyfunction"));
        assert!(contains(
            &export.register,
            quote! { self::cell::__ira_add_add(__ira_m)?; }
        ));
    }

    #[test]
    fn a_private_pyfunction_is_added_from_inside_the_cells_module() {
        // As PyO3's guide writes it: not `pub`, so only the cell's own module sees it.
        let export = export_of(parse_quote! {
            #[pyfunction]
            #[cfg(unix)]
            fn sum_as_string(a: usize, b: usize) -> PyResult<String> { Ok((a + b).to_string()) }
        });
        assert_eq!(
            (export.python_name.as_str(), export.kind),
            ("sum_as_string", "pyfunction")
        );
        assert!(contains(
            &export.wrapper,
            quote! {
                #[cfg(unix)]
                #[doc(hidden)]
                #[allow(non_snake_case)]
                pub(crate) fn __ira_add_sum_as_string(__ira_m: &::pyo3::Bound<'_, ::pyo3::types::PyModule>) -> ::pyo3::PyResult<()> {
                    use ::pyo3::types::PyModuleMethods as _;
                    __ira_m.add_function(::pyo3::wrap_pyfunction!(self::sum_as_string, __ira_m)?)
                }
            }
        ));
        assert!(contains(
            &export.register,
            quote! { #[cfg(unix)] self::cell::__ira_add_sum_as_string(__ira_m)?; }
        ));
    }

    #[test]
    fn classes_and_exceptions_are_registered_by_type() {
        let cell: Ident = parse_quote!(cell);
        let item: syn::ItemStruct =
            parse_quote! { #[pyclass] #[cfg(unix)] pub struct Point { x: i64 } };
        let export = class(&cell, &item.ident, &item.attrs);
        assert_eq!(
            (
                export.python_name.as_str(),
                export.kind,
                export.signature.as_str()
            ),
            ("Point", "class", "class Point")
        );
        assert!(contains(
            &export.register,
            quote! { #[cfg(unix)] __ira_m.add_class::<self::cell::Point>()?; }
        ));
        let item: ItemMacro = parse_quote! { pyo3::create_exception!(cell, NotFound, PyKeyError); };
        let export = exception(&cell, &item).expect("an exception");
        assert_eq!(
            (
                export.python_name.as_str(),
                export.kind,
                export.signature.as_str()
            ),
            ("NotFound", "exception", "exception NotFound")
        );
        assert!(contains(
            &export.register,
            quote! { __ira_m.add("NotFound", __ira_m.py().get_type::<self::cell::NotFound>())?; }
        ));
    }

    #[test]
    fn the_module_loses_only_rust_async_attributes_and_gains_the_prelude_and_wrappers() {
        let module: ItemMod = parse_quote! {
            mod cell {
                #[rust_async(inline)]
                #[inline]
                pub async fn f() {}
                #[rust_async]
                struct Kept;
            }
        };
        let module = module_with(
            module,
            quote! { macro_rules! m { () => {}; } },
            [quote! { fn __ira_fn_f() {} }].into_iter(),
        );
        let expected: ItemMod = parse_quote! {
            mod cell {
                macro_rules! m { () => {}; }
                #[inline]
                pub async fn f() {}
                #[rust_async]
                struct Kept;
                #[allow(unused_imports)]
                use ::ipy_rustasync::__private::{DisplayErrKind as _, IntoOutput as _, PlainKind as _, PyErrKind as _};
                fn __ira_fn_f() {}
            }
        };
        assert_eq!(
            module.to_token_stream().to_string(),
            expected.to_token_stream().to_string()
        );
    }
}
