pub async fn both() -> u8 {
    let (a, b) = tokio::join!(async { 1u8 }, 2u8);
    a + b
}
