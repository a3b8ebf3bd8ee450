//! The macro's refusals as rustc shows them to the user: the message, and the cell
//! tokens it points at (`tests/ui/*.stderr`).

#[test]
fn refused_cells_read_as_the_user_sees_them() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
