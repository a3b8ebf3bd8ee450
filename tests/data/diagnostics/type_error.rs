/// doc line
pub fn broken(a: i64) -> i64 {
    let s: String = a;
    a
}
