pub fn roll() -> u32 { rand::random() }
