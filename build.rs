//! Tells the crate whether it is being optimized (`cfg(tracealloc_optimized)`):
//! src/alloc.rs keeps the allocator's bookkeeping out of line only when it is
//! compiled here with optimizations and the user's code may not be (a debug
//! build with `[profile.dev.package.tracealloc] opt-level = 3`).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tracealloc_optimized)");
    println!("cargo:rerun-if-changed=build.rs");
    let level = std::env::var("OPT_LEVEL").unwrap_or_default();
    if !level.is_empty() && level != "0" {
        println!("cargo:rustc-cfg=tracealloc_optimized");
    }
}
