// Parameters Python cannot hand over.
#[ipy_rustasync::cell(module = "ui")]
mod cell {
    pub fn greet(name: impl Into<String>) -> String {
        name.into()
    }

    pub fn length(text: &&str) -> usize {
        text.len()
    }
}

fn main() {}
