pub fn moved(words: Vec<String>) -> usize {
    let kept = words;
    let first = &kept[0];
    drop(kept);
    first.len() + words.len()
}
