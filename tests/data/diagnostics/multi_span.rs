pub fn pick(flag: bool) -> u32 {
    let value = if flag {
        1u32
    } else {
        "none"
    };
    value
}
