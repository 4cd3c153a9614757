//! The workloads of `benches/common` under the plain system allocator.
mod common;

fn main() {
    common::main(common::Mode {
        name: "system".into(),
        snapshot: None,
    });
}
