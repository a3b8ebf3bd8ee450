pub fn v() -> Vec<u8> { Vec::<u16>::new() }
