//! Call-site tracing: `tracemalloc`'s module functions.
//!
//! ```text
//! session::      the state: OFF, ALL (trace every block) or SAMPLED, and a
//!                generation; read on every allocator event, changed under
//!                CONTROL with the live table locked (see session.rs)
//! NFRAME, RATE   the session's traceback limit and sampling mean (bytes)
//! DROPPED        blocks left untraced because the tracer's memory was refused
//! CONTROL        Mutex: serialises start / stop / clear_traces
//! TRACED_PEAK    PeakTracker of the traced bytes (threads' running totals in
//!                the thread-local TRACED_PENDING)
//! live::         address -> (size, stack) of each traced block (sharded)
//! stacks::       interned stacks and their totals
//! ```
//!
//! Every function here that takes a tracer lock first enters the reentrancy
//! guard (see [`crate::alloc`]): a lock-holder that allocates must not come
//! back into the tracer.

pub(crate) mod capture;
pub(crate) mod live;
pub(crate) mod sample;
pub(crate) mod session;
pub(crate) mod stacks;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::alloc::ReentrancyGuard;
use crate::counters::{self, PeakTracker};
pub use capture::CaptureMethod;
use live::{Block, Insert};
pub(crate) use session::Session;
use session::{ALL, OFF, SAMPLED};
use stacks::StackId;

/// The highest traceback limit [`start`] accepts.
pub const MAX_NFRAME: usize = 256;

/// Raw frames captured beyond the limit, so that the allocator's and the
/// standard library's frames can be trimmed from the top and `nframe` user
/// frames still remain.
const EXTRA_FRAMES: usize = 24;

static NFRAME: AtomicUsize = AtomicUsize::new(1);
static RATE: AtomicU64 = AtomicU64::new(0);
static CONTROL: Mutex<()> = Mutex::new(());
static DROPPED: AtomicU64 = AtomicU64::new(0);
static TRACED_PEAK: PeakTracker = PeakTracker::new();

thread_local! {
    static TRACED_PENDING: Cell<i64> = const { Cell::new(0) };
}

// ---------------------------------------------------------------------------
// Hooks for the allocation path (alloc.rs).

/// Whether a tracing session is on: one relaxed load.
#[inline(always)]
pub(crate) fn active() -> bool {
    session::current().is_on()
}

/// Whether the block at `addr` may be traced: false only when sampling and
/// the counting filter says no traced block hashes there (most frees, then,
/// take no lock and no guard).
#[inline(always)]
pub(crate) fn maybe_traced(addr: usize) -> bool {
    live::maybe_traced(addr)
}

/// The session a new block of `size` bytes is to be traced in, if it is to
/// be (sampling decides here, without the guard or a stack capture). The
/// block goes into the table only if that session is still on when it gets
/// there.
#[inline(always)]
pub(crate) fn wants(size: usize) -> Option<Session> {
    let session = session::current();
    match session.mode() {
        ALL => Some(session),
        SAMPLED => sample::should_sample(size, RATE.load(Relaxed)).then_some(session),
        _ => None,
    }
}

fn add_traced(delta: i64) {
    let _ = TRACED_PENDING.try_with(|p| TRACED_PEAK.add(p, delta));
}

/// Traces the new block at `addr` in `session` (see [`wants`]). Under the
/// reentrancy guard.
#[inline(never)]
pub(crate) fn on_alloc(addr: usize, size: usize, session: Session) {
    // The table line the insert will need loads while the stack is walked.
    live::prefetch(addr);
    let nframe = NFRAME.load(Relaxed);
    // Small buffers for the usual small limits: zeroing 2 KiB on every
    // allocation would cost more than walking the stack.
    if nframe + EXTRA_FRAMES <= 32 {
        record::<32>(addr, size, nframe, session);
    } else if nframe + EXTRA_FRAMES <= 64 {
        record::<64>(addr, size, nframe, session);
    } else {
        record::<{ MAX_NFRAME + EXTRA_FRAMES }>(addr, size, nframe, session);
    }
}

#[inline(always)]
fn record<const N: usize>(addr: usize, size: usize, nframe: usize, session: Session) {
    let mut buf = [0usize; N];
    let len = (nframe + EXTRA_FRAMES).min(N);
    let n = capture::capture(&mut buf[..len]);
    let id = match stacks::find(&buf[..n]) {
        Some(id) => id,
        None => match new_stack(&mut buf[..len], n) {
            Some(id) => id,
            None => {
                dropped();
                return;
            }
        },
    };
    insert(addr, size, id, session);
}

/// Interns a stack seen for the first time: captured again first if it went
/// through code loaded since the unwinder was built (see
/// [`capture::new_stack`]).
#[cold]
#[inline(never)]
fn new_stack(buf: &mut [usize], n: usize) -> Option<StackId> {
    let n = match capture::new_stack(&buf[..n]) {
        capture::NewStack::Keep => n,
        capture::NewStack::Again => capture::capture(buf),
        capture::NewStack::Uncached => capture::unwind_uncached(buf),
    };
    stacks::intern(&buf[..n])
}

fn insert(addr: usize, size: usize, id: StackId, session: Session) {
    match live::insert(addr, size, id, session, || add_traced(size as i64)) {
        Insert::Done => stacks::on_alloc(id, size, session),
        Insert::Stale => {}
        Insert::NoMemory => dropped(),
    }
}

#[cold]
fn dropped() {
    DROPPED.fetch_add(1, Relaxed);
}

/// Forgets the block at `addr`, which is being freed. Under the guard.
#[inline(never)]
pub(crate) fn on_free(addr: usize) {
    if let Some((b, session)) = live::remove(addr, |b| add_traced(-(b.size as i64))) {
        stacks::on_free(b.stack, b.size, session);
    }
}

/// A traced block taken out of the table by [`take`], with the session it
/// belonged to.
pub(crate) struct Taken {
    block: Block,
    session: Session,
}

/// Takes the block at `addr` out of the table before a `realloc`; see
/// [`put_back`] and [`finish_take`]. Under the guard.
#[inline(never)]
pub(crate) fn take(addr: usize) -> Option<Taken> {
    live::remove(addr, |b| add_traced(-(b.size as i64)))
        .map(|(block, session)| Taken { block, session })
}

/// The `realloc` failed: the block is still there, as it was (unless the
/// session ended meanwhile). Under the guard.
pub(crate) fn put_back(addr: usize, t: Taken) {
    let size = t.block.size;
    match live::insert(addr, size, t.block.stack, t.session, || {
        add_traced(size as i64)
    }) {
        // Back in the table: as if never taken (its stack's totals were not
        // touched).
        Insert::Done => {}
        // Out of the table for good: its stack's totals as if freed.
        Insert::Stale => finish(t),
        Insert::NoMemory => {
            dropped();
            finish(t);
        }
    }
}

/// The block taken out is gone for good (the `realloc` succeeded). Under the
/// guard.
pub(crate) fn finish(t: Taken) {
    stacks::on_free(t.block.stack, t.block.size, t.session);
}

/// The calling thread is exiting: push its running traced total.
pub(crate) fn thread_exit() {
    let _ = TRACED_PENDING.try_with(|p| TRACED_PEAK.push(p.replace(0)));
    stacks::flush_thread();
}

// ---------------------------------------------------------------------------
// Locks, and fork: hold every tracer lock across `fork()`, so the child never
// inherits one held by a thread that does not exist there.

/// Takes a tracer lock. Poisoning is ignored: no code panics while holding
/// one, and a panic elsewhere must not disable the tracer.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lock guards held across `fork()`.
pub(crate) type Held = Vec<Box<dyn Any>>;

thread_local! {
    static HELD: RefCell<Held> = const { RefCell::new(Vec::new()) };
}

fn fork_prepare() {
    // The guard stays set across the fork (nothing done here may trace) and
    // is cleared in both processes after.
    std::mem::forget(ReentrancyGuard::enter());
    // In the order every other path takes them: CONTROL, the symbol cache,
    // the stack index, the live table.
    let mut held: Held = vec![Box::new(lock(&CONTROL))];
    crate::symbols::hold(&mut held);
    stacks::hold_all(&mut held);
    live::hold_all(&mut held);
    let _ = HELD.try_with(|h| *h.borrow_mut() = held);
}

fn fork_release() {
    // Dropping the guards unlocks; in the child, a futex wake for a waiter
    // that is not there is harmless.
    let _ = HELD.try_with(|h| drop(std::mem::take(&mut *h.borrow_mut())));
    ReentrancyGuard::release_forgotten();
}

// ---------------------------------------------------------------------------
// The public API.

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
        let _guard = ReentrancyGuard::enter();
        let _control = lock(&CONTROL);
        if active() {
            return;
        }
        crate::sys::on_fork(fork_prepare, fork_release, fork_release);
        let method = match self.capture {
            Some(CaptureMethod::FramePointers) if capture::FRAME_POINTERS_SUPPORTED => {
                capture::refresh_code_ranges();
                CaptureMethod::FramePointers
            }
            Some(_) => CaptureMethod::Unwinder,
            None => capture::choose_method(),
        };
        if method == CaptureMethod::Unwinder {
            capture::prepare_unwinder();
        }
        capture::set_method(method);
        NFRAME.store(self.frames, Relaxed);
        RATE.store(self.sample_bytes.unwrap_or(0), Relaxed);
        stacks::reset_totals();
        let mode = if self.sample_bytes.is_some() {
            SAMPLED
        } else {
            ALL
        };
        live::transition(mode, || TRACED_PEAK.clear());
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
    let _guard = ReentrancyGuard::enter();
    let _control = lock(&CONTROL);
    if !active() {
        return;
    }
    live::transition(OFF, || TRACED_PEAK.clear());
    stacks::reset_totals();
}

/// Whether tracing is on.
///
/// # Examples
///
/// ```
/// assert!(!tracealloc::is_tracing());
/// ```
pub fn is_tracing() -> bool {
    active()
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
    NFRAME.load(Relaxed)
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
    let _guard = ReentrancyGuard::enter();
    let _control = lock(&CONTROL);
    let mode = session::current().mode();
    if mode == OFF {
        return;
    }
    live::transition(mode, || TRACED_PEAK.clear());
    stacks::reset_totals();
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
    if !active() {
        return (0, 0);
    }
    let _guard = ReentrancyGuard::enter();
    let (bytes, _) = live::totals();
    let peak = TRACED_PEAK.peak(bytes);
    (clamp(bytes), clamp(peak))
}

fn clamp(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
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
    if active() {
        let _guard = ReentrancyGuard::enter();
        TRACED_PEAK.reset(live::totals().0);
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
    counters::tracer_heap_bytes() + live::STATIC_BYTES + stacks::STATIC_BYTES
}

/// How stacks are captured: chosen by [`start`]; `None` before the first
/// session.
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
    capture::method()
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
    capture::fallbacks()
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
    DROPPED.load(Relaxed)
}

/// The live traced blocks, copied out for a snapshot.
pub(crate) struct RawTraces {
    /// `(size, stack)` per block.
    pub(crate) blocks: Vec<(usize, StackId)>,
    pub(crate) nframe: usize,
    pub(crate) sample_bytes: Option<u64>,
}

/// Copies the live traced blocks, holding each shard's lock only while its
/// blocks are copied; `Ok(None)` when not tracing, `Err(n)` when the copy of
/// `n` blocks could not get its memory. Under the guard: the copy is tracer
/// memory.
pub(crate) fn raw_traces() -> Result<Option<RawTraces>, usize> {
    let _control = lock(&CONTROL);
    let mode = session::current().mode();
    if mode == OFF {
        return Ok(None);
    }
    let (_, n) = live::totals();
    let mut blocks = Vec::new();
    blocks.try_reserve_exact(n + n / 8 + 16).map_err(|_| n)?;
    let mut refused = false;
    // More blocks may have come since the count: grown as needed, and a
    // refusal stops the copy.
    live::for_each(|size, stack| {
        if blocks.len() == blocks.capacity() && blocks.try_reserve(blocks.len() / 8 + 16).is_err() {
            refused = true;
        }
        if !refused {
            blocks.push((size, stack));
        }
    });
    if refused {
        return Err(blocks.len());
    }
    Ok(Some(RawTraces {
        blocks,
        nframe: NFRAME.load(Relaxed),
        sample_bytes: (mode == SAMPLED).then(|| RATE.load(Relaxed)),
    }))
}

/// The stack of the traced block at `addr`, and the session's limit.
pub(crate) fn stack_of(addr: usize) -> Option<(StackId, usize)> {
    if !active() {
        return None;
    }
    live::get(addr).map(|b| (b.stack, NFRAME.load(Relaxed)))
}
