//! The workloads of `benches/common` under `TraceAlloc` with tracing on.
//!
//! The session is set by `TRACEALLOC_BENCH` (see `benches/compare.rs`):
//! `frames=N`, `capture=fp|unwind`, `sample=BYTES`, comma-separated.
mod common;

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

fn main() {
    let spec = std::env::var("TRACEALLOC_BENCH").unwrap_or_default();
    let mut config = tracealloc::Config::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("frames", n)) => config = config.frames(n.parse().expect("frames=N")),
            Some(("sample", n)) => config = config.sample_bytes(n.parse().expect("sample=BYTES")),
            Some(("capture", "fp")) => {
                config = config.capture(tracealloc::CaptureMethod::FramePointers)
            }
            Some(("capture", "unwind")) => {
                config = config.capture(tracealloc::CaptureMethod::Unwinder)
            }
            _ => panic!("bad TRACEALLOC_BENCH part {part:?}"),
        }
    }
    config.start();
    let label = format!(
        "tracing[{spec}]/{:?}",
        tracealloc::capture_method().expect("started")
    );
    common::main(&label);
}
