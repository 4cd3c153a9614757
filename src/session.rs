//! The live entry points that read the tracer's tables into plain data:
//! [`take_snapshot`] and [`object_traceback`].

use std::collections::HashMap;

use crate::alloc::Internal;
use crate::counters;
use crate::frame::Traceback;
use crate::scope::untraced;
use crate::snapshot::{Snapshot, Trace};
use crate::symbols;
use crate::tracer;

/// The live traced blocks now, symbolized.
///
/// Holds the tracer's locks only to copy the raw records (one shard at a
/// time); symbols are resolved after, once per stack, and cached.
///
/// The snapshot's own memory counts in [`stats`](crate::stats) and
/// [`measure`](crate::measure) (it is heap the caller holds) but is not
/// traced: it never shows up in a later snapshot. The same holds for what
/// the other functions of this crate return (statistics, diffs, reports,
/// loaded snapshots).
///
/// # Panics
///
/// When not tracing (tracemalloc raises `RuntimeError`), when no
/// [`TraceAlloc`](crate::TraceAlloc) is the global allocator, or when the
/// memory for the copy of the traced blocks (about 16 bytes a block) or for
/// the snapshot's list of traces (32 bytes a block) is refused: the message
/// starts `tracealloc: take_snapshot: out of memory`. Smaller allocations
/// made while symbolizing fail as any Rust allocation does (the allocation
/// error handler, which aborts by default).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let v = std::hint::black_box(vec![0u8; 123_456]);
///     let s = tracealloc::take_snapshot();
///     assert!(s.traces().iter().any(|t| t.size == 123_456));
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
#[track_caller]
pub fn take_snapshot() -> Snapshot {
    counters::require_installed("take_snapshot");
    let raw = Internal::make(tracer::raw_traces);
    let raw_ref = match raw.as_ref() {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            drop(raw);
            panic!("tracealloc: take_snapshot() needs tracing on: call tracealloc::start() first");
        }
        Err(n) => {
            let n = *n;
            drop(raw);
            out_of_memory(n);
        }
    };
    let (nframe, sample_bytes) = (raw_ref.nframe, raw_ref.sample_bytes);
    // Resolve each distinct stack once, under the guard (into the cache).
    let tracebacks = Internal::make(|| {
        let mut by_stack = HashMap::new();
        for &(_, stack) in &raw_ref.blocks {
            by_stack
                .entry(stack)
                .or_insert_with(|| symbols::traceback(stack, nframe));
        }
        by_stack
    });
    // The snapshot itself is the caller's memory: counted, not traced.
    let traces: Option<Vec<Trace>> = untraced(|| {
        let mut traces = Vec::new();
        traces.try_reserve_exact(raw_ref.blocks.len()).ok()?;
        traces.extend(
            raw_ref
                .blocks
                .iter()
                .map(|(size, stack)| Trace::new(*size, tracebacks[stack].clone())),
        );
        Some(traces)
    });
    let Some(traces) = traces else {
        let n = raw_ref.blocks.len();
        drop((tracebacks, raw));
        out_of_memory(n);
    };
    Snapshot::from_parts(traces, nframe, sample_bytes)
}

#[cold]
#[track_caller]
fn out_of_memory(blocks: usize) -> ! {
    panic!("tracealloc: take_snapshot: out of memory for the copy of {blocks} traced blocks")
}

/// Where the live traced block at `ptr` was allocated; `None` if it is not
/// traced (allocated before tracing started, not sampled, or freed).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let b = std::hint::black_box(Box::new([0u8; 64]));
///     let t = tracealloc::object_traceback(b.as_ptr()).expect("traced");
///     println!("allocated at {t}");
///     tracealloc::stop();
/// }
/// ```
pub fn object_traceback<T: ?Sized>(ptr: *const T) -> Option<Traceback> {
    let addr = ptr as *const u8 as usize;
    let t = Internal::make(|| {
        tracer::stack_of(addr).map(|(stack, nframe)| symbols::traceback(stack, nframe))
    });
    t.clone()
}
