//! PyO3's own items in a cell, made to run through the bridge: an async
//! `#[pyfunction]`, the async methods of a `#[pymethods]` block, and the runtime
//! context around the synchronous ones.
//!
//! PyO3 alone accepts `async fn` only with its `experimental-async` feature, whose
//! coroutine polls on the loop's thread without a tokio runtime. Here the user's
//! async function stays as written (a plain `async fn`, or a method in an `impl`
//! block of its own) and a generated synchronous `#[pyfunction]` or method of the
//! same Python name returns the bridge's coroutine, exactly as for a `pub async fn`:
//! on tokio by default, `#[rust_async(inline)]` to opt in, the same cancellation,
//! errors and panics. A method's receiver is borrowed when it is called (see the
//! bridge's `receiver.rs`), so a `&mut self` call while another still runs raises.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    parse_quote, Attribute, Block, FnArg, Ident, ImplItem, ImplItemFn, ItemFn, ItemImpl, Pat,
    Signature, Type,
};

use crate::export::{self, Coroutine, Export};
use crate::parse::{self, FnOptions};

/// The attributes PyO3 reads on a function or method (and `rust_async`, which we
/// read): the wrapper keeps them, the user's own function loses them.
fn is_pyo3_attr(attr: &Attribute) -> bool {
    let Some(last) = attr.path().segments.last() else {
        return false;
    };
    [
        "pyfunction",
        "pyo3",
        "staticmethod",
        "classmethod",
        "rust_async",
    ]
    .iter()
    .any(|name| last.ident == name)
}

/// The user's function without the attributes PyO3 (or we) read, on it and on its
/// parameters: its wrapper carries them instead.
fn strip_pyo3_attrs(attrs: &mut Vec<Attribute>, sig: &mut Signature) {
    attrs.retain(|attr| !is_pyo3_attr(attr));
    for arg in sig.inputs.iter_mut() {
        if let FnArg::Typed(typed) = arg {
            typed.attrs.retain(|attr| !is_pyo3_attr(attr));
        }
    }
}

/// What a wrapper keeps of the user's attributes: PyO3's (its options, `#[staticmethod]`),
/// the docstring and `cfg`s; not `#[rust_async]`, which only the exporter reads.
fn wrapper_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|a| {
            is_pyo3_attr(a) && !a.path().is_ident("rust_async")
                || a.path().is_ident("doc")
                || a.path().is_ident("cfg")
        })
        .collect()
}

/// A parameter of an async `#[pyfunction]` or method, past the receiver.
struct AsyncParam<'a> {
    /// The name the wrapper binds it to (the user's, so keywords and
    /// `#[pyo3(signature = ...)]` keep working).
    local: Ident,
    ty: &'a Type,
    /// `#[pyo3(cancel_handle)]`, or a `CancelHandle` by its type.
    cancel_handle: bool,
}

fn async_params<'a>(inputs: impl Iterator<Item = &'a FnArg>) -> syn::Result<Vec<AsyncParam<'a>>> {
    let mut params = Vec::new();
    for (index, arg) in inputs.enumerate() {
        let FnArg::Typed(typed) = arg else {
            continue;
        };
        let local = match &*typed.pat {
            Pat::Ident(p) => p.ident.clone(),
            _ => format_ident!("arg{}", index),
        };
        if parse::is_python_token(&typed.ty) {
            return Err(syn::Error::new(
                typed.ty.span(),
                "an `async fn` cannot take `Python<'_>`: its future may run on a tokio worker, \
                 which is not attached to the interpreter; call `Python::attach(|py| ...)` where it needs one",
            ));
        }
        let cancel_handle = parse::is_cancel_handle(&typed.ty)
            || typed.attrs.iter().any(|attr| {
                attr.path().is_ident("pyo3")
                    && attr
                        .parse_args::<Ident>()
                        .is_ok_and(|option| option == "cancel_handle")
            });
        params.push(AsyncParam {
            local,
            ty: &typed.ty,
            cancel_handle,
        });
    }
    Ok(params)
}

/// What the wrapper needs from the parameters: its own parameters, the arguments it
/// passes to the user's function, their Python names, and the cancel handle's local.
struct Passed<'a> {
    wrapper_params: Vec<TokenStream2>,
    call_args: Vec<TokenStream2>,
    py_names: Vec<String>,
    cancel_handle: Option<&'a Ident>,
    with_caller: bool,
    /// Some argument is lent to the function (see `Coroutine::lends`).
    lends: bool,
}

fn passed<'a>(params: &'a [AsyncParam<'a>]) -> Passed<'a> {
    let mut out = Passed {
        wrapper_params: Vec::new(),
        call_args: Vec::new(),
        py_names: Vec::new(),
        cancel_handle: None,
        with_caller: false,
        lends: false,
    };
    for param in params {
        let local = &param.local;
        if param.cancel_handle {
            out.cancel_handle = Some(local);
            out.call_args.push(quote! { #local });
            continue;
        }
        let (binding, owned, pass) = export::owned_type(param.ty, local);
        let ty = param.ty;
        out.wrapper_params
            .push(quote_spanned! {ty.span()=> #binding: #owned });
        out.call_args.push(pass);
        out.py_names.push(parse::python_name(local));
        out.with_caller |= parse::is_python_awaitable(ty);
        out.lends |= matches!(ty, Type::Reference(_));
    }
    out
}

/// `#[pyo3(name = "...")]` for a wrapper whose Rust name differs from the Python one,
/// unless the user named it already.
fn name_attr(attrs: &[Attribute], ident: &Ident) -> (String, TokenStream2) {
    match parse::pyo3_name(attrs) {
        Some(name) => (name, TokenStream2::new()),
        None => {
            let name = parse::python_name(ident);
            (name.clone(), quote! { #[pyo3(name = #name)] })
        }
    }
}

/// An async `#[pyfunction]`: the wrapper PyO3 exports, and its registration as a
/// coroutine function. The user's function itself loses its PyO3 attributes in
/// [`strip_async_pyfunction`].
pub(crate) fn async_pyfunction(mod_ident: &Ident, func: &ItemFn) -> syn::Result<Export> {
    let sig = &func.sig;
    let ident = &sig.ident;
    let options = FnOptions::parse(&func.attrs, true)?;
    let params = async_params(sig.inputs.iter())?;
    let Passed {
        wrapper_params,
        call_args,
        py_names,
        cancel_handle,
        with_caller,
        lends,
    } = passed(&params);
    let (python_name, name_attr) = name_attr(&func.attrs, ident);
    let wrapper_ident = format_ident!("__ira_afn_{}", python_name);
    let kept = wrapper_attrs(&func.attrs);
    let body = Coroutine {
        python_name: &python_name,
        inline: options.inline,
        cancel_handle,
        with_caller,
        on_start: None,
        lends,
    }
    .body(
        quote! { self::#ident(#(#call_args),*) },
        &sig.output,
        sig.span(),
    );
    let cfgs = parse::cfg_attrs(&func.attrs);
    let wrapper = quote! {
        #(#kept)*
        #name_attr
        #[allow(non_snake_case, clippy::too_many_arguments)]
        pub(crate) fn #wrapper_ident(__ira_py: ::pyo3::Python<'_>, #(#wrapper_params),*) -> ::pyo3::PyResult<::pyo3::Py<::pyo3::PyAny>> {
            #body
        }
    };
    let register = quote! {
        #(#cfgs)* ::ipy_rustasync::__private::add_async_function(
            __ira_m,
            ::pyo3::wrap_pyfunction!(self::#mod_ident::#wrapper_ident, __ira_m)?.into_any(),
            &[#(#py_names),*],
        )?;
    };
    Ok(Export {
        python_name,
        kind: "async",
        signature: export::signature_text(sig),
        wrapper,
        register,
        span: ident.span(),
    })
}

/// The user's async `#[pyfunction]` as a plain `async fn` (its wrapper is the
/// `#[pyfunction]` now).
pub(crate) fn strip_async_pyfunction(func: &mut ItemFn) {
    strip_pyo3_attrs(&mut func.attrs, &mut func.sig);
}

/// Whether `func` is an async `#[pyfunction]`.
pub(crate) fn is_async_pyfunction(func: &ItemFn) -> bool {
    func.sig.asyncness.is_some() && parse::has_attr(&func.attrs, "pyfunction")
}

/// A synchronous PyO3 function or method body, run inside the cell's tokio runtime
/// context (so `tokio::spawn` works there as in a `pub fn`), its panic raised as
/// `RustPanic` where it returns a `PyResult` (elsewhere PyO3's `PanicException`, the
/// only error its type allows). Same value, same `return` and `?` (the closure
/// returns what the body did). The bridge's `pyo3_body` takes the body as a
/// `&mut dyn FnMut` (compiled once, not once per function, as `call_sync`): the body
/// sits in an `Option` it is taken from, its value in another.
pub(crate) fn in_runtime(block: &Block) -> Block {
    parse_quote! {{
        let mut __ira_body = ::std::option::Option::Some(move || #block);
        let mut __ira_value = ::std::option::Option::None;
        let __ira_ran = ::ipy_rustasync::__private::pyo3_body(&mut || {
            if let ::std::option::Option::Some(body) = __ira_body.take() {
                // A body that changes what it captured is an FnMut to call.
                #[allow(unused_mut)]
                let mut body = body;
                __ira_value = ::std::option::Option::Some(body());
            }
        });
        let __ira_target = ::ipy_rustasync::__private::PanicTarget::of(&__ira_value);
        match (__ira_ran, __ira_value) {
            (::std::result::Result::Ok(()), ::std::option::Option::Some(value)) => value,
            (::std::result::Result::Err(panicked), _) => {
                #[allow(unused_imports)]
                use ::ipy_rustasync::__private::{PanicAsErr as _, PanicResume as _};
                (&&__ira_target).on_panic(panicked)
            }
            (::std::result::Result::Ok(()), ::std::option::Option::None) => {
                ::std::unreachable!("pyo3_body runs the body once when it returns Ok")
            }
        }
    }}
}

/// Rewrites a `#[pymethods]` block: each async method is moved, as written, into an
/// `impl` block of its own (returned) and replaced by a synchronous wrapper of the
/// same Python name that returns the bridge's coroutine; synchronous methods run in
/// the runtime's context. Errors are for what an async method cannot take.
pub(crate) fn split_pymethods(block: &mut ItemImpl) -> (Option<ItemImpl>, Vec<syn::Error>) {
    let mut errors = Vec::new();
    let mut moved: Vec<ImplItem> = Vec::new();
    let class = class_name(&block.self_ty);
    for item in block.items.iter_mut() {
        let ImplItem::Fn(method) = item else {
            continue;
        };
        if method.sig.asyncness.is_none() {
            if !matches!(
                method.sig.ident.to_string().as_str(),
                "__traverse__" | "__clear__"
            ) {
                method.block = in_runtime(&method.block);
            }
            continue;
        }
        match async_method(&class, method) {
            Ok(wrapper) => {
                let mut original = std::mem::replace(method, wrapper);
                strip_pyo3_attrs(&mut original.attrs, &mut original.sig);
                moved.push(ImplItem::Fn(original));
            }
            Err(err) => errors.push(err),
        }
    }
    if moved.is_empty() {
        return (None, errors);
    }
    let mut plain = block.clone();
    plain.attrs.retain(|attr| attr.path().is_ident("cfg"));
    plain.items = moved;
    (Some(plain), errors)
}

/// The class's name as written (`Counter`), for messages: "Counter.bump()".
fn class_name(self_ty: &Type) -> String {
    match self_ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map_or_else(|| "object".to_owned(), |seg| seg.ident.to_string()),
        _ => "object".to_owned(),
    }
}

/// How an async method is called on its object.
enum Receiver {
    /// `&self`: a shared borrow for the life of the call.
    Shared,
    /// `&mut self`: an exclusive one.
    Exclusive,
    /// `slf: Py<Self>`: the object itself, no borrow.
    Owned,
    /// None (`#[staticmethod]`).
    Static,
}

fn receiver(method: &ImplItemFn) -> syn::Result<Receiver> {
    const ONLY: &str = "an async method takes `&self`, `&mut self` or `slf: Py<Self>` \
        (its future may outlive the call, on another thread), or is a `#[staticmethod]`";
    if parse::has_attr(&method.attrs, "staticmethod") {
        return Ok(Receiver::Static);
    }
    match method.sig.inputs.first() {
        Some(FnArg::Receiver(r)) => match &r.kind {
            syn::ReceiverKind::Reference(_, _, None) => Ok(Receiver::Shared),
            syn::ReceiverKind::Reference(_, _, Some(_)) => Ok(Receiver::Exclusive),
            _ => Err(syn::Error::new(r.span(), ONLY)),
        },
        // PyO3 takes a method's first parameter as its receiver, whatever its name.
        Some(FnArg::Typed(typed)) => match &*typed.ty {
            Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Py") => {
                Ok(Receiver::Owned)
            }
            _ => Err(syn::Error::new(typed.ty.span(), ONLY)),
        },
        None => Err(syn::Error::new(method.sig.span(), ONLY)),
    }
}

/// The synchronous wrapper that replaces an async method in its `#[pymethods]`.
fn async_method(class: &str, method: &ImplItemFn) -> syn::Result<ImplItemFn> {
    let sig = &method.sig;
    let ident = &sig.ident;
    if parse::has_attr(&method.attrs, "classmethod") {
        return Err(syn::Error::new(
            ident.span(),
            "an async `#[classmethod]` is not supported: make it a `#[staticmethod]` or take `&self`",
        ));
    }
    let receiver = receiver(method)?;
    let options = FnOptions::parse(&method.attrs, true)?;
    let inputs = sig
        .inputs
        .iter()
        .skip(usize::from(!matches!(receiver, Receiver::Static)));
    let params = async_params(inputs)?;
    let Passed {
        wrapper_params,
        call_args,
        py_names: _,
        cancel_handle,
        with_caller,
        lends,
    } = passed(&params);
    let (python_name, name_attr) = name_attr(&method.attrs, ident);
    let qualified = format!("{class}.{python_name}");
    let wrapper_ident = format_ident!("__ira_async_{}", ident);
    let kept = wrapper_attrs(&method.attrs);
    let span = sig.span();
    let (slf_param, setup, this) = match receiver {
        Receiver::Shared | Receiver::Exclusive => (
            quote! { __ira_slf: ::pyo3::Bound<'_, Self>, },
            quote! {
                let __ira_py = __ira_slf.py();
                let __ira_object = __ira_slf.unbind();
            },
            if matches!(receiver, Receiver::Shared) {
                quote! { &*__ira_this, }
            } else {
                quote! { &mut *__ira_this, }
            },
        ),
        Receiver::Owned => (
            quote! { __ira_this: ::pyo3::Py<Self>, __ira_py: ::pyo3::Python<'_>, },
            TokenStream2::new(),
            quote! { __ira_this, },
        ),
        Receiver::Static => (
            quote! { __ira_py: ::pyo3::Python<'_>, },
            TokenStream2::new(),
            TokenStream2::new(),
        ),
    };
    // The borrow is taken when the call starts, as PyO3 does, so coroutines made
    // first and awaited one after another each get the object in turn.
    let on_start = match receiver {
        Receiver::Shared => Some(quote! {
            let __ira_this = ::ipy_rustasync::__private::shared(__ira_object.bind(__ira_py), #qualified)?;
        }),
        Receiver::Exclusive => Some(quote! {
            let mut __ira_this = ::ipy_rustasync::__private::exclusive(__ira_object.bind(__ira_py), #qualified)?;
        }),
        Receiver::Owned | Receiver::Static => None,
    };
    let body = Coroutine {
        python_name: &qualified,
        inline: options.inline,
        cancel_handle,
        with_caller,
        on_start,
        lends,
    }
    .body(
        quote! { Self::#ident(#this #(#call_args),*) },
        &sig.output,
        span,
    );
    Ok(parse_quote! {
        #(#kept)*
        #name_attr
        #[allow(non_snake_case, clippy::too_many_arguments)]
        fn #wrapper_ident(#slf_param #(#wrapper_params),*) -> ::pyo3::PyResult<::pyo3::Py<::pyo3::PyAny>> {
            #setup
            #body
        }
    })
}

/// Rewrites the cell's module for PyO3's own items (after the exports were read
/// from it as written): async `#[pyfunction]`s lose their PyO3 attributes (their
/// wrappers are exported instead), synchronous ones run in the runtime's context,
/// and each `#[pymethods]` block is split (see [`split_pymethods`]).
pub(crate) fn rewrite(module: &mut syn::ItemMod, python_module: &str) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    let importable = importable_module(python_module);
    let Some((_, items)) = module.content.as_mut() else {
        return errors;
    };
    let mut added = Vec::new();
    for item in items.iter_mut() {
        match item {
            syn::Item::Fn(func) if is_async_pyfunction(func) => strip_async_pyfunction(func),
            syn::Item::Fn(func) if parse::has_attr(&func.attrs, "pyfunction") => {
                *func.block = in_runtime(&func.block);
            }
            syn::Item::Struct(syn::ItemStruct { attrs, .. })
            | syn::Item::Enum(syn::ItemEnum { attrs, .. })
                if parse::has_attr(attrs, "pyclass") =>
            {
                with_module(attrs, &importable);
            }
            syn::Item::Impl(block) if parse::has_attr(&block.attrs, "pymethods") => {
                let (plain, errs) = split_pymethods(block);
                added.extend(plain.map(syn::Item::Impl));
                errors.extend(errs);
            }
            _ => {}
        }
    }
    items.extend(added);
    errors
}

/// The name other processes import a cell's module by: a built cell's hashed name
/// (`ira_` and 16 hex digits) lives under `ipy_rustasync.built` (the package's
/// `built/`, which loads it from the cache), an exported project's module under
/// its own name.
fn importable_module(module: &str) -> String {
    let hashed = module
        .strip_prefix("ira_")
        .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed {
        format!("ipy_rustasync.built.{module}")
    } else {
        module.to_owned()
    }
}

/// A `#[pyclass]` without `module = ...` gets the cell's, so its `__module__` (and
/// `pickle`'s messages and lookups) name the cell's module instead of `builtins`.
fn with_module(attrs: &mut [Attribute], module: &str) {
    for attr in attrs.iter_mut() {
        if attr
            .path()
            .segments
            .last()
            .is_none_or(|seg| seg.ident != "pyclass")
        {
            continue;
        }
        let path = attr.path().clone();
        match &attr.meta {
            syn::Meta::Path(_) => *attr = parse_quote! { #[#path(module = #module)] },
            syn::Meta::List(list) => {
                let names_module = list.tokens.clone().into_iter().any(
                    |token| matches!(token, proc_macro2::TokenTree::Ident(ident) if ident == "module"),
                );
                if !names_module {
                    let tokens = &list.tokens;
                    *attr = parse_quote! { #[#path(#tokens, module = #module)] };
                }
            }
            syn::Meta::NameValue(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn printed(tokens: impl ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    fn split(block: ItemImpl) -> (ItemImpl, Option<ItemImpl>, Vec<String>) {
        let mut block = block;
        let (plain, errors) = split_pymethods(&mut block);
        (
            block,
            plain,
            errors.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn an_async_method_moves_to_a_plain_impl_and_a_wrapper_takes_its_python_name() {
        let (pymethods, plain, errors) = split(parse_quote! {
            #[pymethods]
            impl Counter {
                fn get(&self) -> u64 { self.n }
                /// Adds.
                async fn bump(&mut self, by: u64) -> u64 { self.n += by; self.n }
            }
        });
        assert!(errors.is_empty(), "{errors:?}");
        let plain = plain.expect("the async method moved out");
        assert!(plain.attrs.is_empty(), "the plain impl is not #[pymethods]");
        assert_eq!(plain.items.len(), 1);
        assert!(printed(&plain).contains("async fn bump (& mut self , by : u64)"));
        let wrapper = printed(&pymethods.items[1]);
        assert!(wrapper.contains("# [pyo3 (name = \"bump\")]"), "{wrapper}");
        assert!(
            wrapper.contains(
                "fn __ira_async_bump (__ira_slf : :: pyo3 :: Bound < '_ , Self > , by : u64)"
            ),
            "{wrapper}"
        );
        assert!(
            wrapper.contains("exclusive (__ira_object . bind (__ira_py) , \"Counter.bump\") ?"),
            "{wrapper}"
        );
        assert!(wrapper.contains("new_deferred_coroutine"), "{wrapper}");
        assert!(
            wrapper.contains("# [doc = r\" Adds.\"]"),
            "the docstring stays with the Python method: {wrapper}"
        );
        // The sync method stays, its body in the runtime's context.
        assert!(printed(&pymethods.items[0]).contains("pyo3_body (& mut | |"));
    }

    #[test]
    fn receivers_pick_the_borrow_and_a_name_given_is_kept() {
        let (pymethods, _, errors) = split(parse_quote! {
            #[pymethods]
            impl C {
                async fn read(&self) -> u8 { 1 }
                async fn owned(slf: Py<Self>) -> u8 { 1 }
                #[staticmethod]
                async fn stat(x: u8) -> u8 { x }
                #[pyo3(name = "other")]
                async fn named(&self) -> u8 { 1 }
            }
        });
        assert!(errors.is_empty(), "{errors:?}");
        let printed: Vec<String> = pymethods.items.iter().map(printed).collect();
        assert!(
            printed[0].contains("shared (__ira_object"),
            "{}",
            printed[0]
        );
        assert!(printed[1]
            .contains("__ira_this : :: pyo3 :: Py < Self > , __ira_py : :: pyo3 :: Python < '_ >"));
        assert!(
            printed[1].contains("new_coroutine (__ira_py"),
            "no borrow to defer: {}",
            printed[1]
        );
        assert!(printed[2].contains("# [staticmethod]") && printed[2].contains("Self :: stat (x)"));
        assert!(printed[3].contains("# [pyo3 (name = \"other\")]"));
        assert_eq!(printed[3].matches("name =").count(), 1, "{}", printed[3]);
    }

    #[test]
    fn receivers_an_async_call_cannot_hold_are_refused() {
        for method in [
            quote! { async fn by_value(self) -> u8 { 1 } },
            quote! { async fn guard(slf: PyRef<'_, Self>) -> u8 { 1 } },
            quote! { #[classmethod] async fn class(cls: &Bound<'_, PyType>) -> u8 { 1 } },
        ] {
            let (_, _, errors) = split(parse_quote! { #[pymethods] impl C { #method } });
            assert_eq!(errors.len(), 1, "{method}");
            assert!(errors[0].contains("async"), "{}", errors[0]);
        }
    }

    #[test]
    fn an_async_pyfunction_is_wrapped_and_registered_as_a_coroutine_function() {
        let func: ItemFn = parse_quote! {
            #[pyfunction]
            #[pyo3(signature = (seconds, result = None))]
            async fn sleep(seconds: f64, result: Option<Py<PyAny>>) -> Option<Py<PyAny>> { result }
        };
        assert!(is_async_pyfunction(&func));
        let export = async_pyfunction(&parse_quote!(cell), &func).expect("exported");
        assert_eq!(
            (export.python_name.as_str(), export.kind),
            ("sleep", "async")
        );
        let wrapper = export.wrapper.to_string();
        assert!(wrapper.contains("# [pyfunction] # [pyo3 (signature = (seconds , result = None))] # [pyo3 (name = \"sleep\")]"), "{wrapper}");
        assert!(
            wrapper.contains("let __ira_future = self :: sleep (seconds , result) ;"),
            "{wrapper}"
        );
        assert!(export.register.to_string().contains("add_async_function"));
        let mut stripped = func.clone();
        strip_async_pyfunction(&mut stripped);
        assert!(stripped.attrs.is_empty());
    }

    #[test]
    fn a_cancel_handle_parameter_is_made_by_the_bridge_not_passed_by_python() {
        let func: ItemFn = parse_quote! {
            #[pyfunction]
            async fn c(#[pyo3(cancel_handle)] cancel: ipy_rustasync::CancelHandle, x: u8) -> u8 { x }
        };
        let wrapper = async_pyfunction(&parse_quote!(cell), &func)
            .expect("exported")
            .wrapper
            .to_string();
        assert!(
            wrapper.contains("__ira_py : :: pyo3 :: Python < '_ > , x : u8)"),
            "{wrapper}"
        );
        assert!(
            wrapper.contains(
                "let (cancel , __ira_token) = :: ipy_rustasync :: CancelHandle :: new ()"
            ),
            "{wrapper}"
        );
        let mut stripped = func;
        strip_async_pyfunction(&mut stripped);
        assert!(
            !printed(&stripped).contains("pyo3"),
            "a plain fn cannot keep PyO3's parameter attribute"
        );
    }

    #[test]
    fn classes_name_the_module_other_processes_import() {
        assert_eq!(
            importable_module("ira_0123456789abcdef"),
            "ipy_rustasync.built.ira_0123456789abcdef"
        );
        assert_eq!(importable_module("my_project"), "my_project");
        assert_eq!(importable_module("ira_short"), "ira_short");
        let mut attrs: Vec<Attribute> = vec![parse_quote!(#[pyclass])];
        with_module(&mut attrs, "m");
        assert_eq!(printed(&attrs[0]), "# [pyclass (module = \"m\")]");
        let mut attrs: Vec<Attribute> = vec![parse_quote!(#[pyo3::pyclass(frozen)])];
        with_module(&mut attrs, "m");
        assert_eq!(
            printed(&attrs[0]),
            "# [pyo3 :: pyclass (frozen , module = \"m\")]"
        );
        let mut attrs: Vec<Attribute> = vec![parse_quote!(#[pyclass(module = "mine")])];
        with_module(&mut attrs, "m");
        assert_eq!(printed(&attrs[0]), "# [pyclass (module = \"mine\")]");
    }
}
