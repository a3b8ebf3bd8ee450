// The attribute's arguments (written by the Python side; a typo there shows here).
#[ipy_rustasync::cell(module = "ui", offset = 3)]
mod first {}

#[ipy_rustasync::cell(line_offset = 3)]
mod second {}

fn main() {}
