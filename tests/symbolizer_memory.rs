//! The symbolizer's memory: what resolving a snapshot's call sites holds
//! (`symbolizer_memory`), and `release_symbols` giving it back without
//! changing what later snapshots say.
//!
//! Reads process-wide figures (`tracer_memory`, the symbolizer's state): runs
//! under `solo`, one test after another on the main thread.

use std::hint::black_box;

use tracealloc::{
    release_symbols, start, stop, symbolizer_memory, take_snapshot, tracer_memory, KeyType,
    TraceAlloc,
};

mod solo;

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

fn main() -> std::process::ExitCode {
    solo::run(&[(
        "release_lowers_the_figure_and_keeps_the_lines",
        release_lowers_the_figure_and_keeps_the_lines,
    )])
}

#[inline(never)]
fn first_site() -> Vec<u8> {
    vec![1u8; 100_000]
}

#[inline(never)]
fn second_site() -> Vec<u8> {
    vec![2u8; 50_000]
}

/// `(line, size)` of the two sites' statistics in this file, by line (not
/// this helper's own allocations, traced too). Returned without a heap
/// allocation: a live one would be a new call site for the next snapshot.
fn lines(snapshot: &tracealloc::Snapshot) -> [Option<(u32, usize)>; 2] {
    let mut out = [None; 2];
    let mut n = 0;
    for s in snapshot.statistics(KeyType::Lineno, false) {
        let f = &s.traceback.frames()[0];
        if f.filename().ends_with("symbolizer_memory.rs") && s.size >= 50_000 {
            assert!(n < 2, "more than two sites");
            out[n] = Some((f.lineno(), s.size));
            n += 1;
        }
    }
    out.sort_by_key(|l| l.map_or(u32::MAX, |l| l.0));
    out
}

fn release_lowers_the_figure_and_keeps_the_lines() {
    stop();
    release_symbols();
    assert_eq!(symbolizer_memory(), 0, "nothing loaded before a snapshot");
    start(8);
    let a = black_box(first_site());
    let first = take_snapshot();
    let loaded = symbolizer_memory();
    let tracer_loaded = tracer_memory();
    let before = lines(&first);
    assert!(before[0].is_some() && before[1].is_none(), "{before:?}");
    assert!(
        loaded > 0,
        "resolving the snapshot's call sites loaded nothing: {loaded}"
    );

    release_symbols();
    let released = symbolizer_memory();
    assert_eq!(released, 0, "release_symbols left {released} bytes");
    assert!(
        tracer_memory() < tracer_loaded,
        "tracer memory did not fall: {} then {}",
        tracer_loaded,
        tracer_memory()
    );

    // The same call site, from the cache: nothing to reload.
    let again = take_snapshot();
    assert_eq!(lines(&again), before);
    assert_eq!(
        symbolizer_memory(),
        0,
        "a cached call site reloaded symbols"
    );

    // A new call site reloads what it needs, and resolves as before.
    let b = black_box(second_site());
    let second = take_snapshot();
    assert!(symbolizer_memory() > 0);
    let after = lines(&second);
    let (first_line, first_size) = before[0].unwrap();
    // `second_site`'s `vec!` is 5 lines below `first_site`'s.
    assert_eq!(
        after,
        [
            Some((first_line, first_size)),
            Some((first_line + 5, 50_000))
        ]
    );
    stop();
    drop((a, b, first, again, second));
    release_symbols();
}
