// Functions Python cannot call: each is refused at the tokens that make it so.
#[ipy_rustasync::cell(module = "ui")]
mod cell {
    pub fn twice<T: Clone>(x: T) -> (T, T) {
        (x.clone(), x)
    }

    pub fn first<const N: usize>(values: [u8; N]) -> u8 {
        values[0]
    }

    pub unsafe fn peek(address: usize) -> u8 {
        *(address as *const u8)
    }
}

fn main() {}
