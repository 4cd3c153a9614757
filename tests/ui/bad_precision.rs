#[tracealloc::profile(precision = 12)]
fn load() -> Vec<u8> {
    vec![0u8; 16]
}

fn main() {
    assert_eq!(load().len(), 16);
}
