//! Nothing to build: the tests are `tests/compile_fail.rs` and the cells in `tests/ui/`.
