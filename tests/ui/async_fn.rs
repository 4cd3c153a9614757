#[tracealloc::profile]
async fn load() -> Vec<u8> {
    vec![0u8; 16]
}

fn main() {
    drop(load());
}
