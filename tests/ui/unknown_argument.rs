#[tracealloc::profile(rss, memory = "heap")]
fn load() -> Vec<u8> {
    vec![0u8; 16]
}

fn main() {
    assert_eq!(load().len(), 16);
}
