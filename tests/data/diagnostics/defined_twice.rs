pub fn f() -> u8 { 1 }
pub async fn f() -> u8 { 2 }
