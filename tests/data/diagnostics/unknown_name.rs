pub fn total(values: Vec<u64>) -> u64 {
    let sum: u64 = values.iter().sum();
    sum + offest
}
