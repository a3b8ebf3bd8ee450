pub fn label(n: u32) -> u32 {
    String::from(
        "not a number",
    )
}
