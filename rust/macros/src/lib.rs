//! The exporter behind `%%rust_async`.
//!
//! The Python side writes the user's cell, verbatim, inside
//! `#[ipy_rustasync::cell(module = "...", line_offset = N)] mod cell { ... }`.
//! Keeping the text verbatim inside one inline module means every token keeps its
//! real position: rustc's errors, even those about generated glue (an argument type
//! PyO3 cannot convert, a future that is not `Send`), point at the user's own line,
//! and the line the editor shows is the line in `src/lib.rs` minus `N` (0 for a
//! `%%rust_async` cell, whose `src/lib.rs` numbers its lines as the editor does).
//!
//! From the module this macro emits the module itself, headed by the cell's own
//! printing macros (`printing`), then one `#[pyfunction]`
//! wrapper per top-level plain-`pub` function (async ones return an awaitable, see
//! the bridge crate), and the `#[pymodule]` that registers them along with the user's
//! own `#[pyfunction]`s and `#[pyclass]`es and an `__ira_exports__` table the Python
//! side binds names from.
//!
//! Its modules, in the order a cell goes through them:
//!
//! * `parse`: reads what the cell wrote (the attribute's arguments,
//!   `#[rust_async(...)]`, doc comments, Python names, parameter and return types);
//! * `check`: refuses what cannot be exported, with the message the user sees at
//!   the offending tokens;
//! * `export`: generates each export's wrapper, registration and table row;
//! * `printing`: the `print!`/`println!`/`eprint!`/`eprintln!`/`dbg!`/`file!` that
//!   shadow the standard ones inside the cell (its output goes to Python's streams).
//!
//! [`expand`] here puts them together: the module, the errors and the `#[pymodule]`.
//! Compile-fail messages are also tested as rustc prints them, in `rust/macros-tests`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::{Item, ItemMod};

mod check;
mod export;
mod methods;
mod parse;
mod printing;

use export::Export;
use parse::CellArgs;

/// Exports a cell module's public functions to Python. See the crate docs.
#[proc_macro_attribute]
pub fn cell(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(args as CellArgs);
    let module = syn::parse_macro_input!(input as ItemMod);
    expand(args, module).into()
}

/// The cell's module with the wrappers inside it, a `compile_error!` per problem
/// found, and the `#[pymodule]`.
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
            Item::Fn(func) if methods::is_async_pyfunction(func) => {
                match methods::async_pyfunction(mod_ident, func) {
                    Ok(export) => exports.push(export),
                    Err(err) => errors.push(err),
                }
            }
            Item::Fn(func) => match export::function(mod_ident, func) {
                Ok(Some(export)) => exports.push(export),
                Ok(None) => {}
                Err(err) => errors.push(err),
            },
            Item::Struct(s) if parse::has_attr(&s.attrs, "pyclass") => {
                errors.extend(check::class_is_pub(&s.ident, &s.vis));
                exports.push(export::class(mod_ident, &s.ident, &s.attrs));
            }
            Item::Enum(e) if parse::has_attr(&e.attrs, "pyclass") => {
                errors.extend(check::class_is_pub(&e.ident, &e.vis));
                exports.push(export::class(mod_ident, &e.ident, &e.attrs));
            }
            Item::Macro(m)
                if m.mac
                    .path
                    .segments
                    .last()
                    .is_some_and(|seg| seg.ident == "create_exception") =>
            {
                match export::exception(mod_ident, m) {
                    Ok(export) => exports.push(export),
                    Err(err) => errors.push(err),
                }
            }
            Item::Mod(m) if parse::has_attr(&m.attrs, "pymodule") => {
                errors.push(check::own_pymodule(m.ident.span()));
            }
            _ => {}
        }
    }
    errors.extend(check::unique_names(
        exports.iter().map(|e| (e.python_name.as_str(), e.span)),
    ));
    // A second export of one name is an error already; its wrapper could only add
    // errors about the glue (a `self::f` that resolves to the other `f`, which may not
    // be a future), so it is left out.
    let mut seen = std::collections::HashSet::new();
    for export in &mut exports {
        if !seen.insert(export.python_name.clone()) {
            export.wrapper = TokenStream2::new();
            export.register = TokenStream2::new();
        }
    }

    let registers = exports.iter().map(|e| &e.register);
    let table = exports.iter().map(|e| {
        let (name, kind, signature) = (&e.python_name, e.kind, &e.signature);
        quote! { (#name, #kind, #signature) }
    });
    let mut module = module;
    errors.extend(methods::rewrite(&mut module, &args.module.value()));
    let errors = errors.iter().map(syn::Error::to_compile_error);
    // A dotted module (an exported package's submodule, `shop.orders`) is what the
    // cell's classes name as their `__module__`; the `#[pymodule]`, whose name makes
    // the `PyInit_` symbol, takes it with `_`.
    let module_name = syn::LitStr::new(&args.module.value().replace('.', "_"), args.module.span());
    let line_offset = &args.line_offset;
    // The wrappers go inside the cell's module, where every name the user's
    // signatures mention resolves as they wrote it (their `use` lines included).
    let module = export::module_with(
        module,
        printing::macros(line_offset),
        exports.iter().map(|e| e.wrapper.clone()),
    );

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
            ::ipy_rustasync::__private::init_module(__ira_m)?;
            #(#registers)*
            let exports: ::std::vec::Vec<(&str, &str, &str)> = ::std::vec![#(#table),*];
            __ira_m.add("__ira_exports__", exports)?;
            ::std::result::Result::Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(args: &str, module: &str) -> String {
        let args: CellArgs = syn::parse_str(args).expect("cell arguments");
        let module: ItemMod = syn::parse_str(module).expect("a module");
        expand(args, module).to_string()
    }

    /// `tokens`, printed as the expansion prints them.
    fn printed(tokens: TokenStream2) -> String {
        tokens.to_string()
    }

    const CELL: &str = r#"
        mod cell {
            use std::collections::HashMap;
            /// Adds.
            pub fn add(a: i64, b: i64) -> i64 { a + b }
            pub async fn tick() -> u8 { 1 }
            fn helper() {}
            #[pyclass]
            pub struct Point { x: i64 }
            pyo3::create_exception!(cell, NotFound, pyo3::exceptions::PyKeyError);
        }
    "#;

    #[test]
    fn a_cell_becomes_its_module_with_the_wrappers_and_a_pymodule() {
        let out = expanded(r#"module = "ira_abc", line_offset = 9"#, CELL);
        // The module first, headed by the printing macros, then the user's items
        // as written, the wrappers inside it.
        let prelude =
            printing::macros(&syn::LitInt::new("9", proc_macro2::Span::call_site())).to_string();
        assert!(out.starts_with(&format!(
            "mod cell {{ {prelude} use std :: collections :: HashMap ;"
        )));
        for wrapper in ["fn __ira_fn_add", "fn __ira_fn_tick"] {
            let at = out.find(wrapper).expect(wrapper);
            assert!(at < out.find("fn __ira_pymodule").unwrap_or(0));
        }
        assert!(!out.contains("__ira_fn_helper"));
        assert!(out.contains(&printed(quote! {
            #[::pyo3::pymodule(gil_used = true)]
            #[pyo3(name = "ira_abc")]
            fn __ira_pymodule(__ira_m: &::pyo3::Bound<'_, ::pyo3::types::PyModule>) -> ::pyo3::PyResult<()>
        })));
        assert!(out.contains(&printed(quote! {
            ::ipy_rustasync::__private::init_module(__ira_m)?;
        })));
        assert!(!out.contains("compile_error"));
    }

    #[test]
    fn a_dotted_module_names_the_classes_and_its_pymodule_takes_underscores() {
        let out = expanded(r#"module = "shop.orders""#, CELL);
        assert!(out.contains(&printed(quote! { #[pyclass(module = "shop.orders")] })));
        assert!(out.contains(&printed(quote! { #[pyo3(name = "shop_orders")] })));
    }

    #[test]
    fn the_exports_table_lists_every_export_in_order() {
        let out = expanded(r#"module = "m""#, CELL);
        assert!(out.contains(&printed(quote! {
            let exports: ::std::vec::Vec<(&str, &str, &str)> = ::std::vec![
                ("add", "sync", "fn add(a: i64, b: i64) -> i64"),
                ("tick", "async", "async fn tick() -> u8"),
                ("Point", "class", "class Point"),
                ("NotFound", "exception", "exception NotFound")
            ];
            __ira_m.add("__ira_exports__", exports)?;
        })));
        // The registrations run in the same order.
        let order: Vec<usize> = [
            "__ira_fn_add , __ira_m",
            "__ira_fn_tick , __ira_m",
            "add_class :: < self :: cell :: Point >",
            "get_type :: < self :: cell :: NotFound >",
        ]
        .iter()
        .map(|needle| out.find(needle).expect(needle))
        .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{order:?}");
    }

    #[test]
    fn every_refusal_is_a_compile_error_and_the_rest_still_expands() {
        let out = expanded(
            r#"module = "m""#,
            r#"
            mod cell {
                pub fn twice<T>(x: T) -> T { x }
                pub fn add(a: i64) -> i64 { a }
                #[pyfunction]
                #[pyo3(name = "add")]
                pub fn other(a: i64) -> i64 { a }
                #[pyclass]
                struct Hidden;
                #[pymodule]
                mod inner {}
            }
            "#,
        );
        let errors = out.matches("compile_error").count();
        assert_eq!(errors, 5, "{out}");
        for message in [
            "`twice` is generic",
            "#[pyclass] `Hidden` must be `pub`",
            "a cell cannot define its own #[pymodule]",
            "two exported items are both named `add` in Python",
            "first defined here",
        ] {
            assert!(out.contains(message), "{message}");
        }
        assert!(out.contains("fn __ira_fn_add"));
    }

    #[test]
    fn a_second_export_of_one_name_gets_no_wrapper_of_its_own() {
        let out = expanded(
            r#"module = "m""#,
            "mod cell { pub fn f() -> u8 { 1 } pub async fn f() -> u8 { 2 } }",
        );
        assert!(out.contains("two exported items are both named `f` in Python"));
        assert_eq!(out.matches("fn __ira_fn_f").count(), 1, "{out}");
        assert_eq!(out.matches("wrap_pyfunction").count(), 1, "{out}");
        assert!(!out.contains("new_coroutine"), "{out}");
    }

    #[test]
    fn an_empty_cell_still_makes_a_module() {
        let out = expanded(r#"module = "m""#, "mod cell {}");
        assert!(out.contains("fn __ira_pymodule"));
        assert!(out.contains(&printed(
            quote! { ::std::vec::Vec<(&str, &str, &str)> = ::std::vec![]; }
        )));
    }
}

/// The macro's own share of a cell's build, printed (not asserted):
/// `cargo test -p ipy-rustasync-macros --lib -- --ignored --nocapture expansion_time`
/// (built unoptimized, as cells build it). `benchmarks/glue_cost.py` measures the
/// whole build.
#[cfg(test)]
mod expansion_time {
    use super::*;

    #[test]
    #[ignore = "a measurement, not a check"]
    fn expansion_time() {
        for (kind, function) in [
            ("fn", "fn f{k}(x: i64) -> i64 { x + {k} }"),
            (
                "#[pyfunction] pub fn",
                "#[pyfunction] pub fn f{k}(x: i64) -> i64 { x + {k} }",
            ),
            ("pub fn", "pub fn f{k}(x: i64) -> i64 { x + {k} }"),
            (
                "pub async fn",
                "pub async fn f{k}(x: i64) -> i64 { x + {k} }",
            ),
        ] {
            let functions: String = (0..1000)
                .map(|k| function.replace("{k}", &k.to_string()))
                .collect();
            let source = format!("mod cell {{ {functions} }}");
            let start = std::time::Instant::now();
            let args: CellArgs = syn::parse_str(r#"module = "m", line_offset = 3"#).expect("args");
            let module: ItemMod = syn::parse_str(&source).expect("a module");
            let parsed = start.elapsed();
            let text = expand(args, module).to_string();
            let expanded = start.elapsed() - parsed;
            eprintln!(
                "1,000 x {kind}: parse {parsed:.0?}, expand {expanded:.0?}, {} KB of tokens out",
                text.len() / 1000
            );
        }
    }
}
