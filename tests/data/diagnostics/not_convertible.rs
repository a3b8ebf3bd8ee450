pub struct Point { x: i64 }
pub async fn norm(p: Point) -> i64 { p.x }
pub fn origin() -> Point { Point { x: 0 } }
