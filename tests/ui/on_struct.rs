#[tracealloc::profile]
struct Model {
    weights: Vec<f32>,
}

fn main() {
    let m = Model { weights: Vec::new() };
    assert!(m.weights.is_empty());
}
