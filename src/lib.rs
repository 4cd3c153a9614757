//! `tracealloc` counts what your program allocates and records where: a
//! `#[global_allocator]` wrapper with always-on counters, thread-scoped
//! measurement, and call-site tracing with snapshots, statistics, diffs and
//! top-N reports: what Python's `tracemalloc` is for Python.
//!
//! # Quick start
//!
//! tracealloc is not published on crates.io: depend on a clone of its
//! repository by path (or by git), and keep line tables in release builds.
//! This is the README's Quick start (`tests/quick_start.rs` keeps the two the
//! same).
//!
//! ```toml
//! [dependencies]
//! tracealloc = { path = "../tracealloc" } # where your clone is
//!
//! # Call sites resolve to file:line in release builds too.
//! [profile.release]
//! debug = "line-tables-only"
//!
//! # Traced debug builds: tracealloc's code and the unwinder's crates optimized,
//! # 5 to 7 times faster (docs/tracing.md; framehop and gimli: x86-64 Linux).
//! [profile.dev.package.tracealloc]
//! opt-level = 3
//! [profile.dev.package.framehop]
//! opt-level = 3
//! [profile.dev.package.gimli]
//! opt-level = 3
//! ```
//!
//! ```rust
//! use std::hint::black_box; // keeps the optimizer from removing what is counted
//!
//! #[global_allocator]
//! static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
//!
//! fn main() {
//!     // What this thread allocated while the closure ran; other threads'
//!     // allocations are not counted, so this is safe in parallel tests.
//!     let (v, delta) = tracealloc::measure(|| black_box(vec![0u8; 1 << 20]));
//!     assert_eq!(delta.allocs, 1);
//!     assert_eq!(delta.bytes_allocated, 1 << 20);
//!
//!     // In tests: fail, with what was counted, when the code allocates.
//!     let sum: u64 = tracealloc::assert_no_alloc!(v.iter().map(|&b| b as u64).sum());
//!     assert_eq!(sum, 0);
//!
//!     // Process-wide counters, on from the first allocation.
//!     println!("{}", tracealloc::stats());
//!     if let Some(rss) = tracealloc::rss() {
//!         println!("RSS: {rss} bytes"); // where the system tells (Linux)
//!     }
//!
//!     // Where the memory lives, and what grew, as tracemalloc says it.
//!     tracealloc::start(1);
//!     let before = tracealloc::take_snapshot();
//!     let model = black_box(vec![0f32; 1 << 20]);
//!     let after = tracealloc::take_snapshot();
//!     let diffs = after.compare_to(&before, tracealloc::KeyType::Lineno, false);
//!     println!("{}", diffs[0]); // src/main.rs:24: size=4096 KiB (+4096 KiB), count=1 (+1), average=4096 KiB
//!     assert_eq!(diffs[0].size_diff, 4 << 20);
//!     print!("{}", after.top(3, tracealloc::KeyType::Lineno));
//!     tracealloc::stop();
//!     drop(model);
//! }
//! ```
//!
//! # What it counts
//!
//! - [`stats`]: process totals: bytes and blocks live now, the peak, and the
//!   numbers of allocations, frees, reallocations and bytes allocated since the
//!   process started. Each thread counts into a cache line of its own, summed
//!   when you read, so counting scales across threads and costs a few
//!   nanoseconds per allocation.
//! - [`measure`]: what the calling thread allocated and freed while a closure
//!   ran, with the highest net growth inside it. [`assert_no_alloc!`],
//!   [`assert_max_allocs!`], [`assert_allocs!`], [`assert_max_bytes!`],
//!   [`assert_no_leak!`] and [`assert_alloc_baseline!`] assert on it; a
//!   failure says what was counted and names the lines that allocated.
//! - [`rss`]: the resident set size of the process, to set heap figures
//!   against.
//!
//! # Where it was allocated
//!
//! - [`start`] / [`Config`] record the call stack of each new block (every
//!   block, or a Poisson sample by bytes), [`stop`] drops them.
//!   [`take_snapshot`] gives the live traced blocks, symbolized, with frame 0
//!   the line of *your* code that allocated (this crate's and the standard
//!   library's frames are trimmed).
//! - [`Snapshot::statistics`], [`Snapshot::compare_to`],
//!   [`Snapshot::filter_traces`], [`Snapshot::top`] and
//!   [`Snapshot::top_diff`] work as tracemalloc's and print its lines (a
//!   [`KeyType::Traceback`] line begins with the allocating frame, where
//!   tracemalloc writes the oldest);
//!   [`KeyType::UserLine`] counts memory at the first line of *your* code
//!   in each stack, however deep the library that allocated it (a model
//!   loaded through candle is at your `src/main.rs:196`, not at candle's
//!   line); [`Snapshot::duplicate_instances`] finds the same content held
//!   more than once (a model loaded twice), by what the blocks hold, and
//!   names the lines that loaded each copy;
//!   [`Snapshot::dump`] / [`Snapshot::load`] keep snapshots in files.
//! - [`Registry`]: keyed singletons, loaded once per key and shared (the
//!   remedy for the duplicates the tracer finds).
//! - Build with `-C force-frame-pointers=yes` for the fast stack walk (see
//!   [`capture_method`] for how `start` makes sure it can be trusted), and
//!   with `debug = "line-tables-only"` in release for file and line numbers.
//! - What this crate's functions return (snapshots, statistics, reports) is
//!   counted (it is heap you hold) but never traced.
//!
//! # Whole-run profiles
//!
//! [`profile()`](fn@profile) reads the session's whole run per call site (allocated, most
//! live, live at the traced peak, live now, lifetimes; [`reset_profile`]
//! after a warm-up), written with [`Profile::dhat`] for valgrind's
//! `dh_view.html`, [`Profile::folded`] for flame-graph tools, and saved with
//! [`Profile::save`] for the `tracealloc` command-line tool. With the
//! allocator line in place, `TRACEALLOC="out=heap.dhat.json"` in the
//! environment profiles a program without a code change (docs/profiling.md
//! in the repository).
//!
//! # Cargo features
//!
//! None is on by default: counting and tracing need none of them.
//! - `pprof`: `Profile::pprof` / `Snapshot::pprof`, gzipped protobuf for
//!   `go tool pprof`, Pyroscope, Parca, Grafana (adds prost and flate2).
//! - `flamegraph`: `Profile::flamegraph`, SVG flame graphs (adds inferno).
//! - `cli`: the `tracealloc` binary (adds clap, and both of the above).
//! - `macros`: `#[tracealloc::profile]`, memory_profiler's line-by-line
//!   table for a function (adds syn, quote); see [`LineTable`].
//!
//! # Caveats
//!
//! - One set of counters per process: install one [`TraceAlloc`] as the
//!   `#[global_allocator]` (in every binary: each file under `tests/` is
//!   one). Without it [`stats`], [`measure`], the assertion macros,
//!   [`start`] and [`take_snapshot`] panic with the lines to add;
//!   [`is_installed`] asks. Memory that does not go through Rust's global
//!   allocator (C libraries calling `malloc`, memory maps) is not counted; it
//!   shows in [`rss`].
//! - `peak_bytes` in [`Stats`] may differ from the true peak by up to 64 KiB
//!   for each thread that was allocating at the moment of the peak (blocks of
//!   64 KiB and more are accounted at once); the other figures are exact
//!   whenever no thread is inside the allocator.
//! - The optimizer may remove an allocation whose result is unused; wrap values
//!   in [`std::hint::black_box`] in tests that count them.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

// Layers, bottom up; each calls only those below it (one exception: the
// allocator hands events up to the tracer). See docs/architecture.md.
//
// 1. OS calls and raw reads; with `alloc`, the only `unsafe` code.
mod sys;
// 2. The global allocator, and the reentrancy guard as a value.
mod alloc;
mod guard;
// 3. Always-on counters.
mod counters;
// 4. Stack capture, interned stacks, the live-block table, sampling, the
//    session state word.
mod tracer;
// 5. Instruction pointers to frames, and trimming.
mod symbols;
// 6. The live entry points and the session state machine; the allocation
//    assertions.
mod activate;
mod assertions;
mod line_profile;
mod session;
mod timeline;
// 7. Plain data and formats, testable without a global allocator.
mod dhat;
mod dump;
#[cfg(feature = "flamegraph")]
mod flame;
mod frame;
mod glob;
mod html;
mod instances;
#[cfg(feature = "pprof")]
mod pprof;
mod profile;
mod profile_dump;
mod report;
mod snapshot;
// Leaves used across the layers.
mod method;
mod registry;
mod rss;
mod sampling;
mod scope;
mod source;

pub use crate::alloc::TraceAlloc;
#[doc(hidden)]
pub use crate::assertions::{
    __Bound, __Outcome, __assert_scope, __at_most, __bound, __check_allocs, __check_baseline,
    __check_max_bytes, __check_no_leak,
};
pub use crate::assertions::{AllocBound, BASELINE_ENV};
pub use crate::counters::{is_installed, measure, stats, Delta, Stats};
pub use crate::dump::Error;
pub use crate::frame::{Frame, Traceback};
pub use crate::html::Report;
pub use crate::instances::{DuplicateInstance, DuplicateInstances};
#[doc(hidden)]
pub use crate::line_profile::{__ProfileSite, __ProfiledFn, __ProfiledLine};
pub use crate::line_profile::{line_profile_output, line_tables, LineOutput, LineRow, LineTable};
pub use crate::profile::{Metric, Profile, RunInfo, Site};
pub use crate::registry::Registry;
pub use crate::report::{Top, TopDiff};
pub use crate::rss::rss;
pub use crate::session::{
    capture_fallbacks, capture_method, clear_traces, dropped_traces, is_tracing, object_traceback,
    profile, reset_peak, reset_profile, start, stop, take_snapshot, traceback_limit, traced_memory,
    tracer_memory, Config,
};
pub use crate::snapshot::{
    Content, Filter, KeyType, Snapshot, Statistic, StatisticDiff, Trace, CONTENT_MIN_SIZE,
};
pub use crate::source::{set_source_lines, MAX_SOURCE_BYTES};
pub use crate::symbols::{release_symbols, symbolizer_memory};
#[doc(hidden)]
pub use crate::timeline::{__mark, enter as __timeline_enter, exit as __timeline_exit};
pub use crate::timeline::{Mark, MarkKind, Sample, Sampler, Timeline};
pub use crate::tracer::{CaptureMethod, MAX_NFRAME};
#[cfg(feature = "macros")]
pub use tracealloc_macros::profile;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// docs/testing.md's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/testing.md")]
pub struct TestingDoctests;
