// `#[rust_async(...)]`: one option, on exported async functions.
#[ipy_rustasync::cell(module = "ui")]
mod cell {
    #[rust_async(inline)]
    pub fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[rust_async(eager)]
    pub async fn tick() -> u8 {
        1
    }

    #[rust_async(inline)]
    async fn hidden() -> u8 {
        2
    }
}

fn main() {}
