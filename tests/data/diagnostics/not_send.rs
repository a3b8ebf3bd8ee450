pub async fn hold() -> u64 {
    let rc = std::rc::Rc::new(5u64);
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    *rc
}
