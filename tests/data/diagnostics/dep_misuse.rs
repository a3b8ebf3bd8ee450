//! ```cargo
//! [dependencies]
//! itoa = "1"
//! ```
pub fn fmt(text: &str) -> String {
    itoa::Buffer::new().format(text).to_owned()
}
