struct Opaque;

pub fn show() -> String {
    format!("{}", Opaque)
}
