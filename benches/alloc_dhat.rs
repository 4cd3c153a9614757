//! The workloads of `benches/common` under `dhat` (a peer): `dhat::Alloc`
//! with a heap profiler running, as dhat's documentation sets it up.
mod common;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    // dhat writes its profile when the profiler drops: into the temp folder,
    // then removed (neither is timed).
    let out =
        std::env::temp_dir().join(format!("tracealloc-bench-dhat-{}.json", std::process::id()));
    let profiler = dhat::Profiler::builder().file_name(&out).build();
    common::main(common::Mode {
        name: "dhat".into(),
        snapshot: None,
    });
    drop(profiler);
    let _ = std::fs::remove_file(&out);
}
