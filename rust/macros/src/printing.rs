//! The cell's own `print!`, `println!`, `eprint!`, `eprintln!`, `dbg!` and `file!`,
//! defined at the top of the cell's module so they shadow the standard ones there.
//!
//! A `macro_rules!` is in scope, textually, from its definition to the end of the
//! module it is defined in, inline submodules included, and there it takes
//! precedence over the standard library's prelude macros. So the cell's code (and
//! the macros of other crates it invokes, which name `println!` without a path)
//! prints through the bridge (`rust/bridge/src/output.rs`) to Python's `sys.stdout`
//! and `sys.stderr`, in order with Python's own output. Each macro formats once and
//! hands the whole text to one call, so a line is never split. Code outside the
//! cell (a crate's own functions) and explicit paths (`std::println!`) still write
//! to the file descriptors.
//!
//! `dbg!` names the cell's line (`[cell line 11:5] x = 3`) through the bridge's
//! cell-line offset, and `file!()` is `"cell"`.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

/// The macro definitions, as items of the cell's module. `line_offset` (the cell
/// attribute's) is subtracted from `line!()` in what `dbg!` shows: compiled in, not
/// read from the bridge, which cells on the shared runtime library share.
pub(crate) fn macros(line_offset: &impl quote::ToTokens) -> TokenStream2 {
    quote! {
        #[allow(unused_macros)]
        macro_rules! print {
            ($($arg:tt)*) => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Out,
                    ::core::format_args!($($arg)*),
                    false,
                )
            };
        }
        #[allow(unused_macros)]
        macro_rules! println {
            () => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Out,
                    ::core::format_args!(""),
                    true,
                )
            };
            ($($arg:tt)*) => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Out,
                    ::core::format_args!($($arg)*),
                    true,
                )
            };
        }
        #[allow(unused_macros)]
        macro_rules! eprint {
            ($($arg:tt)*) => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Err,
                    ::core::format_args!($($arg)*),
                    false,
                )
            };
        }
        #[allow(unused_macros)]
        macro_rules! eprintln {
            () => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Err,
                    ::core::format_args!(""),
                    true,
                )
            };
            ($($arg:tt)*) => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Err,
                    ::core::format_args!($($arg)*),
                    true,
                )
            };
        }
        #[allow(unused_macros)]
        macro_rules! dbg {
            () => {
                ::ipy_rustasync::__private::print(
                    ::ipy_rustasync::__private::Stream::Err,
                    ::core::format_args!(
                        "[cell line {}:{}]",
                        ::core::line!().saturating_sub(#line_offset),
                        ::core::column!(),
                    ),
                    true,
                )
            };
            ($val:expr $(,)?) => {
                match $val {
                    tmp => {
                        ::ipy_rustasync::__private::print(
                            ::ipy_rustasync::__private::Stream::Err,
                            ::core::format_args!(
                                "[cell line {}:{}] {} = {:#?}",
                                ::core::line!().saturating_sub(#line_offset),
                                ::core::column!(),
                                ::core::stringify!($val),
                                &tmp,
                            ),
                            true,
                        );
                        tmp
                    }
                }
            };
            ($($val:expr),+ $(,)?) => {
                ($(dbg!($val)),+,)
            };
        }
        #[allow(unused_macros)]
        macro_rules! file {
            () => {
                "cell"
            };
        }
    }
}
