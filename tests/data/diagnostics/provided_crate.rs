pub fn r() -> u32 { tokio::nope::thing() }
