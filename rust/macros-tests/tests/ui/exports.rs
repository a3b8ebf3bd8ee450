// What the generated module cannot register: a second item of one Python name, a
// module of the cell's own. (A #[pyfunction] that is not `pub` is registered: PyO3's
// guides write them so. tests/test_bridge.py builds one.)
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

    #[pymodule]
    fn mine(_m: &Bound<'_, PyModule>) -> PyResult<()> {
        Ok(())
    }
}

fn main() {}
