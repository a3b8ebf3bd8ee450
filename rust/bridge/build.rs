//! PyO3's `Py_3_N` cfgs for the interpreter this build is for, so the bridge can call
//! C API functions that older interpreters lack (a build-time version gate; see
//! `capi::write_unraisable_finalizing`). A cell is built for one interpreter (its
//! cache key holds the interpreter), and PYO3_PYTHON names it to this script too.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
