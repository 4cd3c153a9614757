struct Model;

#[tracealloc::profile]
impl Model {
    fn load(&self) -> Vec<u8> {
        vec![0u8; 16]
    }
}

fn main() {
    assert_eq!(Model.load().len(), 16);
}
