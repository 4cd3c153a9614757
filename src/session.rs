//! The live entry points: tracing sessions ([`start`], [`Config`],
//! [`stop`], [`clear_traces`], ...), the readings of the tracer
//! ([`take_snapshot`], [`object_traceback`], [`traced_memory`], ...) and
//! the hooks that keep the tracer's locks safe across `fork()`.
//!
//! ```text
//!                 start / Config::start
//!         ┌─────┐ ──────────────────────▶ ┌────────────────────┐
//!         │ OFF │                         │ TRACING            │──┐ clear_traces:
//!         └─────┘ ◀────────────────────── │ ALL or SAMPLED,    │◀─┘ same mode,
//!            ▲           stop             │ generation g       │    generation g + 1
//!            │                            └────────────────────┘
//!            │                                      │ fork()
//!            │                                      ▼
//!            │                            forked child: the same state and
//!            └──────────── stop ───────── tables (every tracer lock held
//!                                         across the fork), tracing on
//! ```
//!
//! - A second `start` while tracing does nothing; `stop` and `clear_traces`
//!   when off do nothing.
//! - Every transition is serialised by the tracer's control lock and made
//!   with every shard of the live table locked, in the same critical
//!   section that empties the table (see `tracer/state.rs` for the state
//!   word and `tracer/live.rs` for `transition`): an allocation traced in
//!   one session can never land in the next.
//! - Readings (`take_snapshot`, `traced_memory`, ...) take the control lock
//!   or the shard locks, never a transition's.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::counters;
use crate::frame::Traceback;
use crate::guard::{Guard, Internal};
use crate::profile::{Profile, RunInfo, Site};
use crate::scope::untraced;
use crate::snapshot::{Content, Snapshot, Trace, CONTENT_MIN_SIZE};
use crate::symbols;
use crate::tracer::{self, content, CaptureMethod, Held, MAX_NFRAME};

/// Starts tracing: from now on each new block's call stack is recorded,
/// keeping `nframe` frames (after trimming the allocator's and the standard
/// library's frames: with 1, the frame is the line of your code that
/// allocated).
///
/// Like `tracemalloc.start`: a second call while tracing does nothing (the
/// first limit is kept). Use [`Config`] for sampling.
///
/// # Panics
///
/// If `nframe` is 0 or above [`MAX_NFRAME`], or when no
/// [`TraceAlloc`](crate::TraceAlloc) is the global allocator (see
/// [`is_installed`](crate::is_installed)).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     assert!(tracealloc::is_tracing());
///     let v = std::hint::black_box(vec![0u8; 1000]);
///     assert_eq!(tracealloc::traced_memory().0, 1000);
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
#[track_caller]
pub fn start(nframe: usize) {
    Config::new().frames(nframe).start();
}

/// Options for a tracing session; [`start`](Config::start) begins it.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     // Keep 8 frames; trace about one block per 512 KiB allocated.
///     tracealloc::Config::new().frames(8).sample_bytes(512 * 1024).start();
///     assert_eq!(tracealloc::traceback_limit(), 8);
///     tracealloc::stop();
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a Config does nothing until `.start()`"]
pub struct Config {
    frames: usize,
    sample_bytes: Option<u64>,
    capture: Option<CaptureMethod>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// One frame, every block traced, capture method chosen at start.
    pub fn new() -> Self {
        Config {
            frames: 1,
            sample_bytes: None,
            capture: None,
        }
    }

    /// Keep `n` frames per traceback (1 to [`MAX_NFRAME`]; checked by
    /// [`start`](Config::start)).
    pub fn frames(self, n: usize) -> Self {
        Config { frames: n, ..self }
    }

    /// Trace a sample instead of every block: Poisson sampling by bytes with
    /// mean `rate`, as jemalloc and tcmalloc do it. A block of `size` bytes is
    /// traced with probability `1 - exp(-size / rate)`, and snapshots weight
    /// each traced block by the inverse, so their statistics are unbiased
    /// estimates. The relative standard error of a site holding `B` bytes is
    /// about `sqrt(rate / B)`: at 512 KiB, 7 % for 100 MiB, 70 % for 1 MiB.
    /// A `rate` of 0 traces every block.
    pub fn sample_bytes(self, rate: u64) -> Self {
        Config {
            sample_bytes: (rate > 0).then_some(rate),
            ..self
        }
    }

    /// Capture stacks with this method instead of the one `start` would
    /// choose (for benchmarks and tests). Frame pointers are only used where
    /// the platform supports walking them; elsewhere the unwinder is.
    pub fn capture(self, method: CaptureMethod) -> Self {
        Config {
            capture: Some(method),
            ..self
        }
    }

    /// Starts tracing with these options; does nothing if already tracing.
    ///
    /// # Panics
    ///
    /// If the frame limit is 0 or above [`MAX_NFRAME`], or when no
    /// [`TraceAlloc`](crate::TraceAlloc) is the global allocator (see
    /// [`is_installed`](crate::is_installed)).
    #[track_caller]
    pub fn start(self) {
        assert!(
            (1..=MAX_NFRAME).contains(&self.frames),
            "tracealloc: the traceback limit must be between 1 and {MAX_NFRAME}, got {}",
            self.frames
        );
        counters::require_installed("start");
        let guard = Guard::hold();
        crate::sys::on_fork(fork_prepare, fork_release, fork_release);
        tracer::begin(&guard, self.frames, self.sample_bytes, self.capture);
    }
}

/// Stops tracing and drops every trace (like `tracemalloc.stop`). The interned
/// stacks and the symbol cache are kept: they depend only on code addresses
/// and serve the next session.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     tracealloc::stop();
///     assert!(!tracealloc::is_tracing());
///     assert_eq!(tracealloc::traced_memory(), (0, 0));
/// }
/// ```
pub fn stop() {
    tracer::end(&Guard::hold());
}

/// Whether tracing is on.
///
/// # Examples
///
/// ```
/// assert!(!tracealloc::is_tracing());
/// ```
pub fn is_tracing() -> bool {
    tracer::active()
}

/// The traceback limit of the current (or last) session: the most frames a
/// traceback keeps. 1 before any session.
///
/// # Examples
///
/// ```
/// assert_eq!(tracealloc::traceback_limit(), 1);
/// ```
pub fn traceback_limit() -> usize {
    tracer::nframe()
}

/// Drops every trace (and the traced peak) but keeps tracing, like
/// `tracemalloc.clear_traces`. Blocks allocated while it runs may go
/// untraced.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let v = std::hint::black_box(vec![1u8; 100]);
///     tracealloc::clear_traces();
///     assert_eq!(tracealloc::traced_memory(), (0, 0));
///     drop(v);
///     tracealloc::stop();
/// }
/// ```
pub fn clear_traces() {
    tracer::clear(&Guard::hold());
}

/// `(current, peak)` bytes of the traced blocks; `(0, 0)` when not tracing.
///
/// Sizes are the blocks' own (with sampling: of the sampled blocks only;
/// snapshots give the estimates). The peak is since `start`, the last
/// `clear_traces` or [`reset_peak`], within 64 KiB per allocating thread, and
/// never below the current value.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     drop(std::hint::black_box(vec![0u8; 1 << 20]));
///     let (current, peak) = tracealloc::traced_memory();
///     assert!(peak >= current + (1 << 20) - 64 * 1024);
///     tracealloc::stop();
/// }
/// ```
pub fn traced_memory() -> (usize, usize) {
    if !tracer::active() {
        return (0, 0);
    }
    let (bytes, peak) = tracer::traced_memory(&Guard::hold());
    (counters::clamp_usize(bytes), counters::clamp_usize(peak))
}

/// Sets the peaks to the current values: `peak_bytes` of
/// [`stats`](crate::stats) and the peak of [`traced_memory`].
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     drop(std::hint::black_box(vec![0u8; 1 << 20]));
///     tracealloc::reset_peak();
///     let s = tracealloc::stats();
///     assert!(s.peak_bytes < s.current_bytes + (1 << 20));
/// }
/// ```
pub fn reset_peak() {
    counters::reset_heap_peak();
    if tracer::active() {
        tracer::reset_traced_peak(&Guard::hold());
    }
}

/// Bytes the tracer itself holds: its tables of live blocks and of interned
/// stacks, the symbol cache (and the debug information the resolver loaded),
/// plus its static tables. The heap part is measured: every block the tracer
/// allocates is counted here instead of in [`stats`](crate::stats).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let before = tracealloc::tracer_memory();
///     tracealloc::start(1);
///     let v: Vec<Box<u64>> = (0..10_000).map(Box::new).collect();
///     assert!(tracealloc::tracer_memory() > before);
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
pub fn tracer_memory() -> usize {
    tracer::memory()
}

/// How stacks are captured: chosen by [`start`] (or by the first allocation
/// assertion, such as [`assert_no_alloc!`](crate::assert_no_alloc), which
/// records its sites' stacks, when no session chose before it); `None`
/// before either.
///
/// `start` uses frame pointers only when they can be trusted: it calls a
/// probe of known depth in this crate (built with the same flags as your
/// code) and walks the frame pointers from there, and the walk must give
/// the DWARF unwinder's frames one for one, from the probe's bottom frame
/// through the probe's callers (your code that called `start`) to the
/// thread's first frame. Otherwise, as in a build without
/// `-C force-frame-pointers=yes`, or when `start` is called under code that
/// does not keep frame pointers, it uses the unwinder.
///
/// Each walk is checked too: its frame pointers must stay on the thread's
/// stack, every return address must lie in the code of an object loaded when
/// tracing started, and a chain that ends anywhere but at a thread's first
/// frame (one checked against the unwinder once, then known) is compared
/// with the unwinder. A walk that fails is redone with the unwinder and
/// counted in [`capture_fallbacks`]. What no check can see: a caller without
/// frame pointers that leaves the register untouched makes the walk skip the
/// frame of *its* caller and go on right from there.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     println!("capturing with {:?}", tracealloc::capture_method());
///     assert!(tracealloc::capture_method().is_some());
///     tracealloc::stop();
/// }
/// ```
pub fn capture_method() -> Option<CaptureMethod> {
    tracer::capture::method()
}

/// How many frame-pointer walks since the process started were rejected and
/// redone with the unwinder: a return address outside the loaded code, a
/// chain that ended before the thread's first frame (both happen when the
/// stack passes through code built without frame pointers, such as a C
/// library calling back into Rust, or code loaded after tracing started: see
/// the crate's `docs/tracing.md`), or a thread whose stack bounds are
/// unknown. Each costs an unwind (with `backtrace`'s unwinder, which needs no
/// preparation, or the cached one if a session loaded it) instead of a walk;
/// the traceback recorded is the unwinder's. 0 when capturing with the
/// unwinder.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let v = std::hint::black_box(vec![0u8; 100]);
///     println!("{} walks redone so far", tracealloc::capture_fallbacks());
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
pub fn capture_fallbacks() -> u64 {
    tracer::capture::fallbacks()
}

/// How many blocks since the process started were to be traced but were
/// not, because the tracer could not get memory for its tables (the inner
/// allocator refused it, e.g. under an address-space limit) or its table of
/// distinct stacks was full (16 M stacks). The allocation itself succeeds as
/// usual: the block is only missing from traces and snapshots. 0 in a
/// healthy run; a snapshot taken after it rose is incomplete.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let v = std::hint::black_box(vec![0u8; 100]);
///     assert_eq!(tracealloc::dropped_traces(), 0);
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
pub fn dropped_traces() -> u64 {
    tracer::dropped_count()
}

// ---------------------------------------------------------------------------
// fork: every tracer lock is held across `fork()`, so the child never
// inherits one held by a thread that does not exist there.

thread_local! {
    /// The lock guards held across `fork()` by the forking thread.
    static HELD: RefCell<Held> = const { RefCell::new(Vec::new()) };
}

fn fork_prepare() {
    // The guard stays set across the fork (nothing done here may trace) and
    // is cleared in both processes after.
    let guard = Guard::hold();
    let mut held: Held = Vec::new();
    tracer::hold_all(&guard, &mut held, symbols::hold);
    let _ = HELD.try_with(|h| *h.borrow_mut() = held);
    guard.keep();
}

fn fork_release() {
    // Dropping the guards unlocks; in the child, a futex wake for a waiter
    // that is not there is harmless.
    let _ = HELD.try_with(|h| drop(std::mem::take(&mut *h.borrow_mut())));
    Guard::release_forgotten();
}

// ---------------------------------------------------------------------------
// Readings into plain data.

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
    // Stack ids are dense (0, 1, 2, … in the order stacks were first seen),
    // so the tracebacks are a table indexed by id, not a hash map: two hash
    // lookups per block were a third of a 1-million-block snapshot's time.
    let tracebacks = Internal::make(|g| {
        let ids = raw_ref.blocks.iter().map(|&(_, _, s)| s as usize + 1).max();
        let mut by_stack: Vec<Option<Traceback>> = vec![None; ids.unwrap_or(0)];
        for &(_, _, stack) in &raw_ref.blocks {
            by_stack[stack as usize].get_or_insert_with(|| symbols::traceback(g, stack, nframe));
        }
        by_stack
    });
    // What the large blocks hold, read now (see `Content`): blocks freed
    // since the copy read as unread, or as whatever now lies there.
    let buf = Internal::make(|_| RefCell::new(vec![0u8; content::BUF]));
    // The snapshot itself is the caller's memory: counted, not traced.
    let traces: Option<Vec<Trace>> = untraced(|| {
        let mut traces = Vec::new();
        traces.try_reserve_exact(raw_ref.blocks.len()).ok()?;
        traces.extend(raw_ref.blocks.iter().filter_map(|&(addr, size, stack)| {
            let t = tracebacks[stack as usize].as_ref()?;
            let trace = Trace::new(size, t.clone());
            if size < CONTENT_MIN_SIZE {
                return Some(trace);
            }
            Some(trace.with_content(
                match content::fingerprint(addr, size, &mut buf.borrow_mut()) {
                    content::Fingerprint::Unread => Content::Unread,
                    content::Fingerprint::Uniform => Content::Uniform,
                    content::Fingerprint::Hash(h) => Content::Hash(h),
                },
            ))
        }));
        Some(traces)
    });
    drop(buf);
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
    let t = Internal::make(|g| {
        tracer::stack_of(g, addr).map(|(stack, nframe)| symbols::traceback(g, stack, nframe))
    });
    t.clone()
}

/// The whole-run profile of the tracing session: per call site, the traced
/// blocks and bytes allocated since the session started (or the last
/// [`clear_traces`]), those live now and the most the site had live at
/// once, with what the run was (see [`Profile`] for how exact).
///
/// # Panics
///
/// When not tracing, or when no [`TraceAlloc`](crate::TraceAlloc) is the
/// global allocator.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(4);
///     for i in 0..100 {
///         drop(std::hint::black_box(vec![0u8; 1000 + i]));
///     }
///     let p = tracealloc::profile();
///     let top = &p.sites()[0];
///     assert_eq!((top.allocs, top.frees), (100, 100));
///     println!("{p}");
///     tracealloc::stop();
/// }
/// ```
#[track_caller]
pub fn profile() -> Profile {
    counters::require_installed("profile");
    let raw = Internal::make(tracer::raw_profile);
    let Some(raw) = raw.as_ref() else {
        drop(raw);
        panic!(
            "tracealloc: profile() needs tracing on: call tracealloc::start() first, \
             or run the program with TRACEALLOC=out=heap.dhat.json"
        );
    };
    let tracebacks = Internal::make(|g| {
        raw.sites
            .iter()
            .map(|s| symbols::traceback_at(g, s.stack, raw.nframe))
            .collect::<Vec<_>>()
    });
    // The profile is the caller's memory: counted, not traced.
    untraced(|| {
        let info = RunInfo {
            pid: std::process::id(),
            command: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            traceback_limit: raw.nframe,
            sample_bytes: raw.sample_bytes,
            capture_method: capture_method(),
            tracer_memory: tracer_memory(),
            started: raw.started,
            duration: raw.duration,
            peak_bytes: traced_memory().1 as u64,
            peak_at: raw.peak_at,
        };
        // Stacks that symbolize alike are one site: an unrolled loop or an
        // inlined copy calls from several addresses of one line, and
        // threads reach one line from stacks of different depths.
        let mut merged: HashMap<&[crate::frame::Frame], Site> = HashMap::new();
        let count = |n: i64| n.max(0) as u64;
        for (s, (t, at)) in raw.sites.iter().zip(tracebacks.iter()) {
            let site = merged.entry(t.frames()).or_insert_with(|| Site {
                traceback: t.clone(),
                allocs: 0,
                frees: 0,
                bytes_allocated: 0,
                live_blocks: 0,
                live_bytes: 0,
                max_live_bytes: 0,
                max_live_blocks: 0,
                peak_bytes: 0,
                peak_blocks: 0,
                total_lifetime: std::time::Duration::ZERO,
                addresses: at.to_vec(),
            });
            site.allocs = site.allocs.saturating_add(s.allocs);
            site.frees = site.frees.saturating_add(s.frees);
            site.bytes_allocated = site.bytes_allocated.saturating_add(s.bytes);
            site.live_bytes = site.live_bytes.saturating_add(count(s.live_bytes));
            site.live_blocks = site.live_blocks.saturating_add(count(s.live_blocks));
            site.max_live_bytes = site.max_live_bytes.saturating_add(count(s.max_live_bytes));
            site.max_live_blocks = site
                .max_live_blocks
                .saturating_add(count(s.max_live_blocks));
            site.peak_bytes = site.peak_bytes.saturating_add(count(s.peak_bytes));
            site.peak_blocks = site.peak_blocks.saturating_add(count(s.peak_blocks));
            site.total_lifetime = site.total_lifetime.saturating_add(s.lifetimes);
        }
        let sites: Vec<Site> = merged.into_values().collect();
        Profile::new(sites, info)
    })
}

/// Restarts the whole-run profile's counts, keeping the live blocks: after
/// a warm-up, [`profile`] then shows what the steady state allocates.
/// Allocations, frees and bytes allocated start again from zero; each
/// site's live figures stay (they are what is there), its most-live and
/// at-peak figures become its live ones, lifetimes count from now, and the
/// traced peak becomes the traced bytes now (as [`reset_peak`] does).
/// Nothing is dropped: unlike [`clear_traces`], live blocks stay traced,
/// and their frees are counted. Does nothing when not tracing.
///
/// Other threads allocating meanwhile may have up to one batch per site
/// (64 events or 64 KiB) counted on the other side of the restart.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(4);
///     let cache = std::hint::black_box(vec![0u8; 1 << 20]); // warm-up
///     tracealloc::reset_profile();
///     for _ in 0..10 {
///         drop(std::hint::black_box(vec![0u8; 100]));
///     }
///     let p = tracealloc::profile();
///     assert_eq!(p.bytes_allocated(), 1000);
///     // The warm-up's block is still live, and its allocation not counted.
///     let live: u64 = p.sites().iter().map(|s| s.live_bytes).sum();
///     let allocs: u64 = p.sites().iter().map(|s| s.allocs).sum();
///     assert_eq!((live, allocs), (1 << 20, 10));
///     drop(cache);
///     tracealloc::stop();
/// }
/// ```
pub fn reset_profile() {
    counters::require_installed("reset_profile");
    Internal::make(tracer::restart_profile);
}
