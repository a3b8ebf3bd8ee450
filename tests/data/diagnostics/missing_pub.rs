mod helpers {
    fn double(x: u64) -> u64 { x * 2 }
}

pub fn twice(x: u64) -> u64 { helpers::double(x) }
