pub fn w(a: u8) -> u8 { let unused_here = 1; a }
