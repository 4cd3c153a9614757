//! The workloads of `benches/common` under `TraceAlloc`, counting only.
mod common;

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

fn main() {
    common::main(common::Mode {
        name: "counting".into(),
        snapshot: None,
    });
}
