//! What cannot be exported, refused with the sentence the user reads.
//!
//! Each error carries the span of the tokens at fault, so rustc shows it on the
//! cell's own line. A function's checks run in a fixed order and the first failure
//! is the one reported, as a user fixing one thing at a time expects.

use proc_macro2::Span;
use quote::format_ident;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, Type, Visibility};

use crate::parse::{self, FnOptions};

/// How a top-level `fn` of the cell is exported, once its checks have passed.
pub(crate) enum FnExport<'a> {
    /// Not at all: it is not `pub`, or it is a test.
    Private,
    /// The user's own `#[pyfunction]`, registered as it is.
    PyFunction,
    /// A plain `pub fn`, which gets a generated wrapper.
    Plain(PlainFn<'a>),
}

/// A plain `pub fn` that passed every check, read into what its wrapper needs.
pub(crate) struct PlainFn<'a> {
    pub(crate) options: FnOptions,
    pub(crate) params: Vec<Param<'a>>,
    /// It returns a `Stream` (see [`parse::returns_stream`]).
    pub(crate) stream: bool,
}

/// A parameter of an exported function.
pub(crate) enum Param<'a> {
    /// A `CancelHandle`: made by the bridge, not a Python argument.
    CancelHandle {
        /// The name the wrapper binds it to.
        local: Ident,
    },
    /// `py: Python<'_>`: the token, passed by the wrapper as PyO3 passes it.
    Token,
    /// An argument from Python.
    Python {
        /// Its Python name (PyO3 uses it in `TypeError`s).
        name: String,
        /// The name the wrapper binds it to.
        local: Ident,
        /// Its type as the user declared it.
        ty: &'a Type,
    },
}

const OWN_PYMODULE: &str =
    "a cell cannot define its own #[pymodule]: ipy-rustasync generates the module; \
     write plain `pub fn`s, #[pyfunction]s or #[pyclass]es instead";

/// A `#[pymodule]` in the cell (a function or a module).
pub(crate) fn own_pymodule(span: Span) -> syn::Error {
    syn::Error::new(span, OWN_PYMODULE)
}

/// A `#[pyclass]` must be `pub` for the module to register it.
pub(crate) fn class_is_pub(ident: &Ident, vis: &Visibility) -> Option<syn::Error> {
    (!parse::is_plain_pub(vis)).then(|| {
        syn::Error::new(
            ident.span(),
            format!("#[pyclass] `{ident}` must be `pub` for the cell to export it"),
        )
    })
}

/// Whether and how `func` is exported, or why it cannot be.
pub(crate) fn function(func: &ItemFn) -> syn::Result<FnExport<'_>> {
    let sig = &func.sig;
    let ident = &sig.ident;
    if parse::has_attr(&func.attrs, "pymodule") {
        return Err(own_pymodule(ident.span()));
    }
    if let Some(attr) = func.attrs.iter().find(|a| is_tokio_main(a)) {
        return Err(syn::Error::new(
            attr.span(),
            format!(
                "`#[tokio::main]` is not needed here: a cell's functions already run on a tokio runtime; \
                 write `pub async fn {ident}(...)` without it and `await {ident}()` in Python"
            ),
        ));
    }
    if parse::has_attr(&func.attrs, "pyfunction") {
        if !parse::is_plain_pub(&func.vis) {
            return Err(syn::Error::new(
                ident.span(),
                format!("#[pyfunction] `{ident}` must be `pub` for the cell to export it"),
            ));
        }
        return Ok(FnExport::PyFunction);
    }
    if !parse::is_plain_pub(&func.vis) {
        if let Some(attr) = parse::rust_async_attr(&func.attrs) {
            return Err(syn::Error::new(
                attr.span(),
                format!("`#[rust_async]` only applies to exported functions, and `{ident}` is not `pub`"),
            ));
        }
        return Ok(FnExport::Private);
    }
    if parse::is_test(&func.attrs) {
        return Ok(FnExport::Private);
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
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
    let is_async = sig.asyncness.is_some();
    let options = FnOptions::parse(&func.attrs, is_async)?;
    let params = params(func)?;
    let stream = parse::returns_stream(&sig.output);
    if stream && is_async {
        return Err(syn::Error::new(
            sig.asyncness.span(),
            format!("`{ident}` returns a stream: make it a plain `pub fn` (Python awaits the items one by one with `async for`)"),
        ));
    }
    Ok(FnExport::Plain(PlainFn {
        options,
        params,
        stream,
    }))
}

/// `#[tokio::main]` (or `#[tokio::main(...)]`), which would start a second runtime
/// inside the cell's and turn an `async fn` into a blocking one.
fn is_tokio_main(attr: &syn::Attribute) -> bool {
    let segments: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segments == ["tokio", "main"]
}

/// The parameters, each checked: no `self`, at most one `CancelHandle` and only on
/// an `async fn`, and a type Python can hand over (see [`python_type`]).
fn params(func: &ItemFn) -> syn::Result<Vec<Param<'_>>> {
    let is_async = func.sig.asyncness.is_some();
    let mut params = Vec::new();
    let mut cancel_handle = false;
    for (index, arg) in func.sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = arg else {
            return Err(syn::Error::new(
                arg.span(),
                "`self` is not allowed in a top-level function",
            ));
        };
        // The wrapper's parameters carry the Python names: PyO3 uses them in
        // `TypeError`s ("add() missing 1 required positional argument: 'b'").
        let (name, local) = match &*typed.pat {
            Pat::Ident(p) => (parse::python_name(&p.ident), p.ident.clone()),
            _ => (format!("arg{index}"), format_ident!("arg{}", index)),
        };
        if parse::is_cancel_handle(&typed.ty) {
            if !is_async {
                return Err(syn::Error::new(
                    typed.ty.span(),
                    "a `CancelHandle` parameter only makes sense on a `pub async fn`",
                ));
            }
            if cancel_handle {
                return Err(syn::Error::new(
                    typed.ty.span(),
                    "one `CancelHandle` parameter is enough",
                ));
            }
            cancel_handle = true;
            params.push(Param::CancelHandle { local });
            continue;
        }
        if parse::is_python_token(&typed.ty) {
            if is_async {
                return Err(syn::Error::new(
                    typed.ty.span(),
                    "an `async fn` cannot take `Python<'_>`: its future may run on a tokio worker, \
                     which is not attached to the interpreter; call `Python::attach(|py| ...)` where it needs one",
                ));
            }
            params.push(Param::Token);
            continue;
        }
        python_type(&typed.ty)?;
        params.push(Param::Python {
            name,
            local,
            ty: &typed.ty,
        });
    }
    Ok(params)
}

/// A parameter type Python can hand over: one concrete type (no `impl Trait`), and
/// at most one reference deep (the wrapper owns the value and lends it).
fn python_type(ty: &Type) -> syn::Result<()> {
    match ty {
        Type::Reference(reference) if matches!(*reference.elem, Type::Reference(_)) => Err(
            syn::Error::new(ty.span(), "references to references cannot come from Python"),
        ),
        Type::ImplTrait(_) => Err(syn::Error::new(
            ty.span(),
            "`impl Trait` parameters cannot be exported: Python values need one concrete type to convert into",
        )),
        _ => Ok(()),
    }
}

/// Two exports with one Python name: an error at the second, noting the first.
pub(crate) fn unique_names<'a>(exports: impl Iterator<Item = (&'a str, Span)>) -> Vec<syn::Error> {
    let mut seen: Vec<(&str, Span)> = Vec::new();
    let mut errors = Vec::new();
    for (name, span) in exports {
        if let Some((_, first)) = seen.iter().find(|(seen_name, _)| *seen_name == name) {
            let mut err = syn::Error::new(
                span,
                format!("two exported items are both named `{name}` in Python"),
            );
            err.combine(syn::Error::new(*first, "first defined here"));
            errors.push(err);
        } else {
            seen.push((name, span));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(source: &str) -> ItemFn {
        syn::parse_str(source).expect("a function")
    }

    /// The message of the error `source` is refused with, and where it points
    /// (line, column) in `source`.
    fn refusal(source: &str) -> (String, (usize, usize)) {
        let func = parsed(source);
        let Err(err) = function(&func) else {
            panic!("accepted: {source}");
        };
        let start = err.span().start();
        (err.to_string(), (start.line, start.column))
    }

    fn plain(func: &ItemFn) -> PlainFn<'_> {
        match function(func) {
            Ok(FnExport::Plain(plain)) => plain,
            Ok(_) => panic!("not a plain export"),
            Err(err) => panic!("refused: {err}"),
        }
    }

    #[test]
    fn private_functions_and_tests_are_left_alone() {
        for source in [
            "fn helper() {}",
            "pub(crate) fn helper() {}",
            "pub(super) async fn helper() {}",
            "#[test] pub fn checks() {}",
            "#[tokio::test] pub async fn checks() {}",
        ] {
            assert!(
                matches!(function(&parsed(source)), Ok(FnExport::Private)),
                "{source}"
            );
        }
    }

    #[test]
    fn a_users_own_pyfunction_is_registered_as_it_is() {
        let func = parsed("#[pyfunction] pub fn f<T>(x: T) {}");
        assert!(matches!(function(&func), Ok(FnExport::PyFunction)));
        assert_eq!(
            refusal("#[pyo3::pyfunction]\nfn hidden() {}"),
            (
                "#[pyfunction] `hidden` must be `pub` for the cell to export it".into(),
                (2, 3)
            )
        );
    }

    #[test]
    fn a_pymodule_is_refused_at_its_name() {
        assert_eq!(
            refusal("#[pymodule]\npub fn mine(m: &Bound<'_, PyModule>) {}"),
            (OWN_PYMODULE.into(), (2, 7))
        );
    }

    #[test]
    fn rust_async_on_a_private_function_is_refused_at_the_attribute() {
        assert_eq!(
            refusal("#[rust_async(inline)]\nasync fn f() {}"),
            (
                "`#[rust_async]` only applies to exported functions, and `f` is not `pub`".into(),
                (1, 0)
            )
        );
    }

    #[test]
    fn unsafe_generic_and_const_generic_functions_are_refused_where_they_say_so() {
        let (message, at) = refusal("pub unsafe fn f() {}");
        assert!(message.starts_with("`f` is an `unsafe fn`"), "{message}");
        assert_eq!(at, (1, 4));
        let (message, at) = refusal("pub fn f<'a, T: Clone>(x: &'a T) {}");
        assert!(message.starts_with("`f` is generic"), "{message}");
        assert_eq!(at, (1, 13));
        let (message, at) = refusal("pub fn f<const N: usize>() {}");
        assert!(
            message.starts_with("`f` has a const parameter"),
            "{message}"
        );
        assert_eq!(at, (1, 9));
        // The first check that fails is the one reported.
        let (message, _) = refusal("pub unsafe fn f<T>(x: &&T) {}");
        assert!(message.starts_with("`f` is an `unsafe fn`"), "{message}");
    }

    #[test]
    fn lifetimes_alone_do_not_make_a_function_generic() {
        let func = parsed("pub fn first<'a>(words: &'a [String]) -> usize { words.len() }");
        assert_eq!(plain(&func).params.len(), 1);
    }

    #[test]
    fn parameter_types_python_cannot_hand_over_are_refused_at_the_type() {
        assert_eq!(
            refusal("pub fn f(a: i64,\n  b: &&str) {}"),
            (
                "references to references cannot come from Python".into(),
                (2, 5)
            )
        );
        let (message, at) = refusal("pub fn f(a: impl Into<String>) {}");
        assert!(message.starts_with("`impl Trait` parameters cannot be exported"));
        assert_eq!(at, (1, 12));
        assert_eq!(
            refusal("pub fn f(self) {}"),
            (
                "`self` is not allowed in a top-level function".into(),
                (1, 9)
            )
        );
    }

    #[test]
    fn a_cancel_handle_is_one_parameter_of_an_async_fn() {
        assert_eq!(
            refusal("pub fn f(cancel: CancelHandle) {}"),
            (
                "a `CancelHandle` parameter only makes sense on a `pub async fn`".into(),
                (1, 17)
            )
        );
        assert_eq!(
            refusal("pub async fn f(a: CancelHandle, b: ipy_rustasync::CancelHandle) {}"),
            ("one `CancelHandle` parameter is enough".into(), (1, 35))
        );
    }

    #[test]
    fn a_stream_is_returned_by_a_plain_fn() {
        let (message, at) = refusal("pub async fn f() -> impl Stream<Item = u8> {}");
        assert!(message.starts_with("`f` returns a stream: make it a plain `pub fn`"));
        assert_eq!(at, (1, 4));
        let func = parsed("pub fn f() -> BoxStream<'static, u8> {}");
        assert!(plain(&func).stream);
    }

    #[test]
    fn tokio_main_is_refused_with_what_to_write_instead() {
        let (message, _) = refusal("#[tokio::main]\npub async fn main() {}");
        assert!(
            message.starts_with("`#[tokio::main]` is not needed here"),
            "{message}"
        );
        assert!(message.contains("write `pub async fn main(...)` without it"));
    }

    #[test]
    fn a_python_token_is_passed_to_a_sync_fn_and_refused_on_an_async_one() {
        let func = parsed("pub fn f(py: Python<'_>, x: u8) {}");
        assert!(matches!(plain(&func).params[0], Param::Token));
        let (message, _) = refusal("pub async fn f(py: Python<'_>) {}");
        assert!(
            message.starts_with("an `async fn` cannot take `Python<'_>`"),
            "{message}"
        );
    }

    #[test]
    fn rust_async_options_are_checked_with_the_function() {
        let (message, _) = refusal("#[rust_async(inline)] pub fn f() {}");
        assert!(message.starts_with("`#[rust_async(inline)]` is for `async fn`s"));
        let func = parsed("#[rust_async(inline)] pub async fn f() {}");
        assert!(plain(&func).options.inline);
    }

    #[test]
    fn parameters_carry_their_python_names_and_a_cancel_handle_is_not_one() {
        let func = parsed(
            "pub async fn f(r#type: i64, (a, b): (i64, i64), cancel: CancelHandle, s: &str) {}",
        );
        let described: Vec<String> = plain(&func)
            .params
            .iter()
            .map(|param| match param {
                Param::CancelHandle { local } => format!("cancel handle {local}"),
                Param::Token => "token".to_owned(),
                Param::Python { name, local, ty } => {
                    format!("{name} as {local}: {}", quote::quote!(#ty))
                }
            })
            .collect();
        assert_eq!(
            described,
            [
                "type as r#type: i64",
                "arg1 as arg1: (i64 , i64)",
                "cancel handle cancel",
                "s as s: & str",
            ]
        );
    }

    #[test]
    fn a_pyclass_must_be_pub() {
        let item: syn::ItemStruct = syn::parse_str("struct Point { x: i64 }").unwrap();
        let err = class_is_pub(&item.ident, &item.vis).expect("refused");
        assert_eq!(
            err.to_string(),
            "#[pyclass] `Point` must be `pub` for the cell to export it"
        );
        let item: syn::ItemStruct = syn::parse_str("pub struct Point { x: i64 }").unwrap();
        assert!(class_is_pub(&item.ident, &item.vis).is_none());
    }

    #[test]
    fn a_repeated_python_name_is_an_error_at_each_repeat_naming_the_first() {
        let items: syn::File =
            syn::parse_str("fn add() {}\nfn sub() {}\nfn add() {}\nfn add() {}").unwrap();
        let names: Vec<(String, Span)> = items
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Fn(f) => Some((f.sig.ident.to_string(), f.sig.ident.span())),
                _ => None,
            })
            .collect();
        let errors = unique_names(names.iter().map(|(n, s)| (n.as_str(), *s)));
        assert_eq!(errors.len(), 2);
        for (err, line) in errors.into_iter().zip([3, 4]) {
            let parts: Vec<(String, usize)> = err
                .into_iter()
                .map(|e| (e.to_string(), e.span().start().line))
                .collect();
            assert_eq!(
                parts,
                [
                    (
                        "two exported items are both named `add` in Python".into(),
                        line
                    ),
                    ("first defined here".into(), 1),
                ]
            );
        }
    }
}
