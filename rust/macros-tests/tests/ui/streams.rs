// A stream comes from a plain `pub fn`: Python awaits its items.
#[ipy_rustasync::cell(module = "ui")]
mod cell {
    use ipy_rustasync::futures::Stream;

    pub async fn count(n: u32) -> impl Stream<Item = u32> {
        ipy_rustasync::futures::stream::iter(0..n)
    }
}

fn main() {}
