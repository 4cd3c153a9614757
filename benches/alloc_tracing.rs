//! The workloads of `benches/common` under `TraceAlloc` with tracing on.
//!
//! The session is set by `TRACEALLOC_BENCH` (see `benches/compare.rs`):
//! `frames=N`, `capture=fp|unwind`, `sample=BYTES`, comma-separated.
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use tracealloc::KeyType;

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
    let name = format!(
        "tracing[{spec}]/{:?}",
        tracealloc::capture_method().expect("started")
    );
    common::main(common::Mode {
        name,
        snapshot: Some(snapshot),
    });
}

/// With 1 million live blocks over 4096 stacks: times `take_snapshot` (once
/// symbols are cached), `statistics`, `dump` and `load`.
fn snapshot() -> (Duration, u64) {
    let blocks = common::many_stacks::allocate(1_000_000);
    drop(tracealloc::take_snapshot()); // resolve the symbols first
    let path = std::env::temp_dir().join(format!("tracealloc-bench-{}.json", std::process::id()));
    let t = Instant::now();
    let s = tracealloc::take_snapshot();
    let take = t.elapsed();
    let stats = s.statistics(KeyType::Lineno, false);
    let group = t.elapsed() - take;
    s.dump(&path).expect("dump");
    let dump = t.elapsed() - take - group;
    let loaded = tracealloc::Snapshot::load(&path).expect("load");
    let total = t.elapsed();
    let _ = std::fs::remove_file(&path);
    eprintln!(
        "snapshot of {} blocks: take {take:.2?}, statistics {group:.2?}, dump {dump:.2?}, load {:.2?}",
        s.traces().len(),
        total - take - group - dump
    );
    let sum = loaded.traces().len() as u64 + stats.len() as u64;
    drop(black_box((blocks, s, loaded)));
    (total, sum)
}
