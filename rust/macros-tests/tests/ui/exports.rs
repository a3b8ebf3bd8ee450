// What the generated module cannot register: a second item of one Python name, a
// module of the cell's own, a #[pyfunction] that is not `pub`.
#[ipy_rustasync::cell(module = "ui")]
mod cell {
    use pyo3::prelude::*;

    pub fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[pyfunction]
    #[pyo3(name = "add")]
    pub fn plus(a: i64, b: i64) -> i64 {
        a + b
    }

    #[pyfunction]
    fn hidden() -> i64 {
        1
    }

    #[pymodule]
    fn mine(_m: &Bound<'_, PyModule>) -> PyResult<()> {
        Ok(())
    }
}

fn main() {}
