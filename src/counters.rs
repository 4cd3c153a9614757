//! Always-on counters: process totals for [`stats`], thread-scoped figures for
//! [`measure`].
//!
//! Safe Rust only: atomics and `Cell`s. [`crate::TraceAlloc`] feeds every event
//! here through [`record_alloc`], [`record_free`] and [`record_realloc`], which
//! never allocate, lock or panic.
//!
//! # Global state
//!
//! ```text
//! SLOTS[0..SLOTS_LEN]   one 128-byte line per thread that allocates (claimed on
//!                       its first allocator call, handed back when it exits)
//!   owned               AtomicBool: CAS false -> true by the claiming thread;
//!                       store false (Release) by the owner at thread exit
//!   allocs, frees,      AtomicU64: written by the owner only, with a plain
//!   reallocs,           load + store (no lock prefix, no shared cache line);
//!   bytes_in, bytes_out read by anyone with Relaxed loads and summed
//! OVERFLOW              the same five sums, updated with fetch_add by threads
//!                       that found no free slot, or that already handed theirs
//!                       back (allocations in late thread-exit destructors)
//! HEAP_PEAK             PeakTracker: `flushed`, the net bytes pushed from the
//!                       threads' `pending` (see below) and from OVERFLOW, and
//!                       `peak`, its highest value (reset_peak() stores the
//!                       exact current bytes)
//! TRACER_BYTES          AtomicI64: heap bytes the tracer holds (its blocks
//!                       are counted here only)
//! THREAD (thread-local) the owned slot, `pending` net bytes not yet pushed to
//!                       HEAP_PEAK, and the `measure` counters
//! ```
//!
//! A slot's sums are never cleared: when a thread exits, its slot keeps what it
//! counted and the next owner adds to it, so the sum over all slots stays the
//! process total without any folding step.
//!
//! # How exact
//!
//! `total_*`, `current_bytes` and `current_blocks` are exact at any quiescent
//! point (no thread inside the allocator); while threads allocate, a reading
//! may be a few events behind. `peak_bytes` is the highest value seen by
//! HEAP_PEAK's `flushed`, which a thread pushes to whenever its unpushed net bytes leave
//! `-PEAK_SLACK..=PEAK_SLACK`. It can therefore differ from the true peak by at
//! most `PEAK_SLACK` (64 KiB) per thread holding unpushed bytes at the moment of
//! the peak; a single allocating thread sees it within 64 KiB, and blocks of
//! 64 KiB or more are pushed at once. [`stats`] never reports a peak below the
//! current bytes.
//!
//! A thread updates its own slot with plain loads and stores, so an allocation
//! made by a signal handler that interrupts this thread inside the allocator
//! could be lost from the totals (allocating in a signal handler is not
//! async-signal-safe in the first place). After `fork()`, the child keeps the
//! parent's totals (its memory is a copy of the parent's); slots of the
//! parent's other threads stay claimed and keep their counts.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::*};

/// Counter slots handed to threads; threads beyond this many at once share
/// [`OVERFLOW`] (exact, but with contended atomic adds).
const SLOTS_LEN: usize = 256;

/// How far (in bytes, either way) a thread's net allocation may drift before it
/// is pushed to the shared peak tracker. See the module docs for the bound.
pub(crate) const PEAK_SLACK: i64 = 64 * 1024;

/// One thread's share of the process totals.
#[repr(align(128))]
struct Slot {
    owned: AtomicBool,
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            owned: AtomicBool::new(false),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }
}

/// Adds `v` to a counter. `exclusive` counters have a single writer (the
/// owning thread), so a load and a store suffice and no locked instruction or
/// cache-line transfer is paid on the allocation path. Adding 0 touches
/// nothing: an event's constant-zero fields compile to no code.
#[inline(always)]
fn bump(counter: &AtomicU64, v: u64, exclusive: bool) {
    if v == 0 {
        return;
    }
    if exclusive {
        counter.store(counter.load(Relaxed).wrapping_add(v), Relaxed);
    } else {
        counter.fetch_add(v, Relaxed);
    }
}

static SLOTS: [Slot; SLOTS_LEN] = [const { Slot::new() }; SLOTS_LEN];
static OVERFLOW: Slot = Slot::new();
/// Where the next claim starts looking, so that claims spread over the slots.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: PeakTracker = PeakTracker::new();
/// Bytes the tracer holds on the heap: its allocations are counted here, not
/// in the process totals (see `record_tracer`).
static TRACER_BYTES: AtomicI64 = AtomicI64::new(0);
/// Set by the first event counted (in `record_slow`, which every thread's
/// first event takes): proof that a `TraceAlloc` is the global allocator.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A peak of a quantity that threads change through per-thread running totals
/// (`pending`), pushed here when they leave `-PEAK_SLACK..=PEAK_SLACK`.
///
/// `flushed` is the sum of what was pushed; `peak` its highest value, or what
/// [`reset`](Self::reset) stored. Used for the heap's peak and the traced
/// memory's.
pub(crate) struct PeakTracker {
    flushed: AtomicI64,
    peak: AtomicI64,
}

impl PeakTracker {
    pub(crate) const fn new() -> Self {
        PeakTracker {
            flushed: AtomicI64::new(0),
            peak: AtomicI64::new(0),
        }
    }

    /// Adds `delta` to a thread's `pending`, pushing it when it drifts too far.
    #[inline(always)]
    pub(crate) fn add(&self, pending: &Cell<i64>, delta: i64) {
        let p = pending.get().wrapping_add(delta);
        if p.unsigned_abs() <= PEAK_SLACK as u64 {
            pending.set(p);
        } else {
            pending.set(0);
            self.push(p);
        }
    }

    /// Moves `net` into the shared total.
    #[inline]
    pub(crate) fn push(&self, net: i64) {
        if net == 0 {
            return;
        }
        let now = self.flushed.fetch_add(net, Relaxed).wrapping_add(net);
        if net > 0 {
            self.peak.fetch_max(now, Relaxed);
        }
    }

    /// The total pushed so far (each thread's pending part left out).
    #[inline(always)]
    pub(crate) fn pushed(&self) -> i64 {
        self.flushed.load(Relaxed)
    }

    /// peak := max(peak, `total`), a total known to have been reached.
    pub(crate) fn raise(&self, total: i64) {
        self.peak.fetch_max(total, Relaxed);
    }

    /// The peak given the exact `current` value: never below it.
    pub(crate) fn peak(&self, current: u64) -> u64 {
        u64::try_from(self.peak.load(Relaxed))
            .unwrap_or(0)
            .max(current)
    }

    /// peak := `current`.
    pub(crate) fn reset(&self, current: u64) {
        self.peak
            .store(i64::try_from(current).unwrap_or(i64::MAX), Relaxed);
    }

    /// Forgets everything pushed (for a new tracing session).
    pub(crate) fn clear(&self) {
        self.flushed.store(0, Relaxed);
        self.peak.store(0, Relaxed);
    }
}

/// Per-thread state. `const`-initialised, no destructor: readable during
/// thread-local destruction and after `main` returns.
struct ThreadCounters {
    /// The slot this thread owns; `None` before its first event, and once it
    /// is counted in [`OVERFLOW`] instead (see `overflow`).
    slot: Cell<Option<&'static Slot>>,
    /// Set when this thread found no free slot or handed its slot back.
    overflow: Cell<bool>,
    /// Net bytes counted in the slot but not yet pushed to `HEAP_PEAK`.
    pending: Cell<i64>,
    /// Nesting depth of `measure` calls; the fields below move only while > 0.
    depth: Cell<u32>,
    /// Open assertion scopes that record their allocations' sites (each is
    /// also a `measure`): while > 0, this thread's events are also handed to
    /// the tracer's site recording ([`Recorded::Sites`]).
    sites: Cell<u32>,
    allocs: Cell<u64>,
    frees: Cell<u64>,
    reallocs: Cell<u64>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    /// `bytes_in - bytes_out`, and its highest value since the innermost
    /// `measure` began.
    net: Cell<i64>,
    peak: Cell<i64>,
}

thread_local! {
    static THREAD: ThreadCounters = const {
        ThreadCounters {
            slot: Cell::new(None),
            overflow: Cell::new(false),
            pending: Cell::new(0),
            depth: Cell::new(0),
            sites: Cell::new(0),
            allocs: Cell::new(0),
            frees: Cell::new(0),
            reallocs: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            net: Cell::new(0),
            peak: Cell::new(0),
        }
    };
}

/// What a recorded event asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Nothing more to do.
    Done,
    /// This thread has just claimed a slot: arrange for [`release_thread_slot`]
    /// to run when it exits.
    ClaimedSlot,
    /// An assertion scope on this thread records where its allocations
    /// are made: hand the event to the tracer's site recording.
    Sites,
    /// Both of the above (a thread whose first event comes inside an
    /// assertion: one entering Rust from a thread not started by it).
    ClaimedSlotAndSites,
}

/// One allocator event, as seen by the counters. The record_* functions
/// build it from constants where they can, and every field that is zero
/// after inlining costs nothing (see [`bump`]).
#[derive(Clone, Copy)]
struct Event {
    allocs: u64,
    frees: u64,
    reallocs: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Event {
    /// The event of these fields (as the cold functions get them).
    #[inline(always)]
    fn new(allocs: u64, frees: u64, reallocs: u64, bytes_in: u64, bytes_out: u64) -> Event {
        Event {
            allocs,
            frees,
            reallocs,
            bytes_in,
            bytes_out,
        }
    }

    #[inline(always)]
    fn net(&self) -> i64 {
        (self.bytes_in as i64).wrapping_sub(self.bytes_out as i64)
    }
}

/// A new block of `size` bytes (`alloc` or `alloc_zeroed`).
#[inline(always)]
pub(crate) fn record_alloc(size: usize) -> Recorded {
    record(Event {
        allocs: 1,
        frees: 0,
        reallocs: 0,
        bytes_in: size as u64,
        bytes_out: 0,
    })
}

/// A block of `size` bytes given back.
#[inline(always)]
pub(crate) fn record_free(size: usize) -> Recorded {
    record(Event {
        allocs: 0,
        frees: 1,
        reallocs: 0,
        bytes_in: 0,
        bytes_out: size as u64,
    })
}

/// A block resized from `old` to `new` bytes: growth counts as bytes
/// allocated, shrinkage as bytes freed.
#[inline(always)]
pub(crate) fn record_realloc(old: usize, new: usize) -> Recorded {
    record(Event {
        allocs: 0,
        frees: 0,
        reallocs: 1,
        bytes_in: new.saturating_sub(old) as u64,
        bytes_out: old.saturating_sub(new) as u64,
    })
}

#[inline(always)]
fn record(ev: Event) -> Recorded {
    match THREAD.try_with(|t| match t.slot.get() {
        Some(slot) => add_to_own_slot(t, slot, ev),
        None => record_slow(
            t,
            ev.allocs,
            ev.frees,
            ev.reallocs,
            ev.bytes_in,
            ev.bytes_out,
        ),
    }) {
        Ok(r) => r,
        // Unreachable for a const thread-local without destructor; counted
        // exactly all the same.
        Err(_) => {
            INSTALLED.store(true, Relaxed);
            add_shared(ev.allocs, ev.frees, ev.reallocs, ev.bytes_in, ev.bytes_out);
            Recorded::Done
        }
    }
}

/// The fast path: a thread counting into the slot it owns.
#[inline(always)]
fn add_to_own_slot(t: &ThreadCounters, s: &Slot, ev: Event) -> Recorded {
    bump(&s.allocs, ev.allocs, true);
    bump(&s.frees, ev.frees, true);
    bump(&s.reallocs, ev.reallocs, true);
    bump(&s.bytes_in, ev.bytes_in, true);
    bump(&s.bytes_out, ev.bytes_out, true);
    HEAP_PEAK.add(&t.pending, ev.net());
    if t.depth.get() != 0 {
        return add_measured(
            t,
            ev.allocs,
            ev.frees,
            ev.reallocs,
            ev.bytes_in,
            ev.bytes_out,
        );
    }
    Recorded::Done
}

/// A thread's first event (claims a slot), or an event of a thread counted
/// in [`OVERFLOW`]. The cold functions take an event's fields as scalars:
/// passed as a struct, the hot path would build it in memory before every
/// branch that might call them.
#[cold]
#[inline(never)]
fn record_slow(
    t: &ThreadCounters,
    allocs: u64,
    frees: u64,
    reallocs: u64,
    bytes_in: u64,
    bytes_out: u64,
) -> Recorded {
    let ev = Event::new(allocs, frees, reallocs, bytes_in, bytes_out);
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
    if !t.overflow.get() {
        if let Some(slot) = claim_slot() {
            t.slot.set(Some(slot));
            return match add_to_own_slot(t, slot, ev) {
                Recorded::Sites => Recorded::ClaimedSlotAndSites,
                _ => Recorded::ClaimedSlot,
            };
        }
        t.overflow.set(true);
    }
    add_shared(allocs, frees, reallocs, bytes_in, bytes_out);
    if t.depth.get() != 0 {
        return add_measured(t, allocs, frees, reallocs, bytes_in, bytes_out);
    }
    Recorded::Done
}

fn claim_slot() -> Option<&'static Slot> {
    let start = NEXT_SLOT.fetch_add(1, Relaxed);
    (0..SLOTS_LEN)
        .map(|k| &SLOTS[start.wrapping_add(k) % SLOTS_LEN])
        .find(|s| {
            s.owned
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        })
}

/// Counts an event in [`OVERFLOW`], with atomic adds.
#[cold]
fn add_shared(allocs: u64, frees: u64, reallocs: u64, bytes_in: u64, bytes_out: u64) {
    let ev = Event::new(allocs, frees, reallocs, bytes_in, bytes_out);
    bump(&OVERFLOW.allocs, ev.allocs, false);
    bump(&OVERFLOW.frees, ev.frees, false);
    bump(&OVERFLOW.reallocs, ev.reallocs, false);
    bump(&OVERFLOW.bytes_in, ev.bytes_in, false);
    bump(&OVERFLOW.bytes_out, ev.bytes_out, false);
    HEAP_PEAK.push(ev.net());
}

/// A block of `delta` bytes (negative: freed) allocated or freed by the
/// tracer itself, under the reentrancy guard: counted as tracer memory, not
/// in the process totals nor in `measure`.
#[inline]
pub(crate) fn record_tracer(delta: i64) {
    TRACER_BYTES.fetch_add(delta, Relaxed);
}

/// Bytes the tracer holds on the heap now.
pub(crate) fn tracer_heap_bytes() -> usize {
    usize::try_from(TRACER_BYTES.load(Relaxed)).unwrap_or(0)
}

#[cold]
#[inline(never)]
fn add_measured(
    t: &ThreadCounters,
    allocs: u64,
    frees: u64,
    reallocs: u64,
    bytes_in: u64,
    bytes_out: u64,
) -> Recorded {
    let ev = Event::new(allocs, frees, reallocs, bytes_in, bytes_out);
    t.allocs.set(t.allocs.get().wrapping_add(ev.allocs));
    t.frees.set(t.frees.get().wrapping_add(ev.frees));
    t.reallocs.set(t.reallocs.get().wrapping_add(ev.reallocs));
    t.bytes_in.set(t.bytes_in.get().wrapping_add(ev.bytes_in));
    t.bytes_out
        .set(t.bytes_out.get().wrapping_add(ev.bytes_out));
    let net = t.net.get().wrapping_add(ev.net());
    t.net.set(net);
    if net > t.peak.get() {
        t.peak.set(net);
    }
    if t.sites.get() != 0 {
        Recorded::Sites
    } else {
        Recorded::Done
    }
}

/// Runs `f` outside every `measure` scope open on this thread (an
/// assertion's own work, such as reading its baseline file, is not the
/// measured code's); the scopes go on after it. `f` must free what it
/// allocates.
pub(crate) fn unmeasured<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(u32, u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = THREAD.try_with(|t| {
                t.depth.set(self.0);
                t.sites.set(self.1);
            });
        }
    }
    let (depth, sites) = THREAD
        .try_with(|t| (t.depth.replace(0), t.sites.replace(0)))
        .unwrap_or((0, 0));
    let _restore = Restore(depth, sites);
    f()
}

/// Whether an assertion scope on this thread records its allocations.
pub(crate) fn recording_sites() -> bool {
    THREAD.try_with(|t| t.sites.get() != 0).unwrap_or(false)
}

/// Hands the calling thread's slot back, for the next thread to use. Called
/// once, when the thread exits, after its thread-local destructors have run;
/// any later allocation on this thread is counted in [`OVERFLOW`].
pub(crate) fn release_thread_slot() {
    let _ = THREAD.try_with(|t| {
        t.overflow.set(true);
        HEAP_PEAK.push(t.pending.replace(0));
        if let Some(s) = t.slot.take() {
            s.owned.store(false, Release);
        }
    });
}

/// Process-wide allocation counters, as returned by [`stats`].
///
/// Counted from the first allocation of the process by the
/// [`TraceAlloc`](crate::TraceAlloc) installed as `#[global_allocator]`
/// ([`stats`] panics when none is). A `realloc` counts once in `total_reallocs`; its growth
/// counts in `total_bytes` and its shrinkage in neither, so
/// `current_bytes` is always the sum of the live blocks' sizes.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let before = tracealloc::stats();
///     let v = std::hint::black_box(vec![0u8; 4096]);
///     let after = tracealloc::stats();
///     assert!(after.total_allocs > before.total_allocs);
///     assert!(after.peak_bytes >= after.current_bytes);
///     drop(v);
/// }
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Bytes in live blocks now.
    pub current_bytes: u64,
    /// Live blocks now.
    pub current_blocks: u64,
    /// The highest `current_bytes` reached since the process started or since
    /// the last [`reset_peak`](crate::reset_peak); within 64 KiB per allocating thread of the true
    /// peak (see the crate docs), and never below `current_bytes`.
    pub peak_bytes: u64,
    /// Blocks allocated (`alloc` and `alloc_zeroed`).
    pub total_allocs: u64,
    /// Blocks freed (`dealloc`).
    pub total_frees: u64,
    /// Blocks resized (`realloc`).
    pub total_reallocs: u64,
    /// Bytes allocated: new blocks' sizes plus `realloc` growth.
    pub total_bytes: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "current {} B in {} blocks, peak {} B; {} allocs, {} frees, {} reallocs, {} B allocated in total",
            self.current_bytes,
            self.current_blocks,
            self.peak_bytes,
            self.total_allocs,
            self.total_frees,
            self.total_reallocs,
            self.total_bytes
        )
    }
}

/// Whether a [`TraceAlloc`](crate::TraceAlloc) is the program's global
/// allocator: without one nothing is counted or traced, so [`stats`],
/// [`measure`], the assertion macros, [`start`](crate::start) and
/// [`take_snapshot`](crate::take_snapshot) panic.
///
/// True once a `TraceAlloc` has counted an allocation; if none has yet, this
/// allocates one byte and frees it to see (not counted in a `measure` of
/// this thread).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     assert!(tracealloc::is_installed());
/// }
/// ```
pub fn is_installed() -> bool {
    if INSTALLED.load(Relaxed) {
        return true;
    }
    // No event counted yet in this process: allocate once and see, outside
    // any `measure` running on this thread.
    let depth = THREAD.try_with(|t| t.depth.replace(0)).unwrap_or(0);
    drop(std::hint::black_box(Box::new(0u8)));
    let _ = THREAD.try_with(|t| t.depth.set(depth));
    INSTALLED.load(Relaxed)
}

/// Panics, saying what to add, when no [`TraceAlloc`](crate::TraceAlloc) is
/// the global allocator; `what` is the function called.
#[track_caller]
pub(crate) fn require_installed(what: &str) {
    if !is_installed() {
        not_installed(what);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn not_installed(what: &str) -> ! {
    panic!(
        "tracealloc: {what} needs tracealloc::TraceAlloc as the global allocator, and this \
         program does not use it, so nothing is counted or traced. Add\n\n    \
         #[global_allocator]\n    \
         static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();\n\n\
         to the crate root of this binary (each file under tests/, examples/ and \
         benches/ is a binary of its own and needs its own; for a library's unit \
         tests, put it under #[cfg(test)] in src/lib.rs, so that the library does \
         not choose its users' allocator)"
    );
}

/// Raw sums over every slot.
#[derive(Default)]
struct Sums {
    allocs: u64,
    frees: u64,
    reallocs: u64,
    bytes_in: u64,
    bytes_out: u64,
}

fn sums() -> Sums {
    let mut t = Sums::default();
    for s in SLOTS.iter().chain(std::iter::once(&OVERFLOW)) {
        t.allocs = t.allocs.wrapping_add(s.allocs.load(Relaxed));
        t.frees = t.frees.wrapping_add(s.frees.load(Relaxed));
        t.reallocs = t.reallocs.wrapping_add(s.reallocs.load(Relaxed));
        t.bytes_in = t.bytes_in.wrapping_add(s.bytes_in.load(Relaxed));
        t.bytes_out = t.bytes_out.wrapping_add(s.bytes_out.load(Relaxed));
    }
    t
}

/// The process-wide counters now.
///
/// Cheap (it sums a few hundred relaxed atomic loads; it never locks, and
/// allocates only to check [`is_installed`] while nothing has been counted
/// yet), and exact whenever no other thread is inside the allocator.
///
/// # Panics
///
/// When no [`TraceAlloc`](crate::TraceAlloc) is the global allocator: the
/// figures would be zeros that mean nothing.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let s = tracealloc::stats();
///     println!("{} bytes live in {} blocks", s.current_bytes, s.current_blocks);
/// }
/// ```
#[track_caller]
pub fn stats() -> Stats {
    require_installed("stats");
    let t = sums();
    let current = t.bytes_in.saturating_sub(t.bytes_out);
    let peak = HEAP_PEAK.peak(current);
    Stats {
        current_bytes: current,
        current_blocks: t.allocs.saturating_sub(t.frees),
        peak_bytes: peak,
        total_allocs: t.allocs,
        total_frees: t.frees,
        total_reallocs: t.reallocs,
        total_bytes: t.bytes_in,
    }
}

/// The process heap now: [`stats`]'s `current_bytes`, without the other
/// sums and without the installed check (for `#[tracealloc::profile]`'s line
/// guards, which read it before and after every line; the profiled function
/// checks once on entry). Never allocates.
pub(crate) fn heap_bytes_now() -> u64 {
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    for s in SLOTS.iter().chain(std::iter::once(&OVERFLOW)) {
        bytes_in = bytes_in.wrapping_add(s.bytes_in.load(Relaxed));
        bytes_out = bytes_out.wrapping_add(s.bytes_out.load(Relaxed));
    }
    bytes_in.saturating_sub(bytes_out)
}

/// This thread's bytes allocated and freed, as counted for `measure`: they
/// move only while a [`MeasureScope`] is open on the thread. Two equal
/// readings inside one scope mean this thread did not change the heap in
/// between (the line guards use it to skip a [`heap_bytes_now`]).
pub(crate) fn thread_bytes() -> (u64, u64) {
    THREAD
        .try_with(|t| (t.bytes_in.get(), t.bytes_out.get()))
        .unwrap_or((0, 0))
}

pub(crate) fn clamp_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// peak := current, for [`stats`]; see [`crate::reset_peak`].
pub(crate) fn reset_heap_peak() {
    let t = sums();
    HEAP_PEAK.reset(t.bytes_in.saturating_sub(t.bytes_out));
}

/// What one thread allocated and freed while a closure ran, as returned by
/// [`measure`].
///
/// A `realloc` counts once in `reallocs`; its growth counts in
/// `bytes_allocated` and its shrinkage in `bytes_freed`, so
/// [`net_bytes`](Delta::net_bytes) is the change in the bytes this thread holds.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let (v, d) = tracealloc::measure(|| std::hint::black_box(vec![1u64; 100]));
///     assert_eq!((d.allocs, d.bytes_allocated, d.net_bytes()), (1, 800, 800));
///     drop(v);
/// }
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Delta {
    /// Blocks allocated (`alloc` and `alloc_zeroed`).
    pub allocs: u64,
    /// Blocks freed (`dealloc`), including blocks allocated before or by
    /// another thread.
    pub frees: u64,
    /// Blocks resized (`realloc`).
    pub reallocs: u64,
    /// Bytes allocated: new blocks plus `realloc` growth.
    pub bytes_allocated: u64,
    /// Bytes freed: freed blocks plus `realloc` shrinkage.
    pub bytes_freed: u64,
    /// The highest net growth (`bytes_allocated - bytes_freed`) reached at any
    /// point while the closure ran; 0 if it never grew.
    pub peak_bytes: u64,
}

impl Delta {
    /// `bytes_allocated - bytes_freed`: how much more (or, negative, less)
    /// memory this thread holds than before.
    ///
    /// # Examples
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
    ///
    /// fn main() {
    ///     let v = std::hint::black_box(vec![0u8; 64]);
    ///     let ((), d) = tracealloc::measure(|| drop(v));
    ///     assert_eq!(d.net_bytes(), -64);
    /// }
    /// ```
    pub fn net_bytes(&self) -> i64 {
        (self.bytes_allocated as i64).wrapping_sub(self.bytes_freed as i64)
    }
}

impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} allocs, {} frees, {} reallocs, {} B allocated, {} B freed (net {:+} B, peak +{} B)",
            self.allocs,
            self.frees,
            self.reallocs,
            self.bytes_allocated,
            self.bytes_freed,
            self.net_bytes(),
            self.peak_bytes
        )
    }
}

/// The measure counters of one thread at the start of a `measure` call.
struct MeasureStart {
    allocs: u64,
    frees: u64,
    reallocs: u64,
    bytes_in: u64,
    bytes_out: u64,
    net: i64,
    /// The enclosing `measure`'s peak, restored (maxed) when this one ends.
    outer_peak: i64,
}

/// Ends a `measure` call: on return, and on unwinding out of the closure.
///
/// Also the thread half of `#[tracealloc::profile]`'s line guards
/// (`line_profile.rs`): a scope begun before a line and ended after it, even
/// when the line returns early, breaks out or unwinds. Scopes nest, and must
/// end in the reverse order of their beginnings (as locals drop).
pub(crate) struct MeasureScope {
    start: MeasureStart,
    /// Whether this scope raised the thread's site-recording flag.
    sites: bool,
}

impl MeasureScope {
    /// Starts measuring the calling thread (nested in any scope open on it).
    pub(crate) fn begin() -> Self {
        Self::begin_with(false)
    }

    /// [`begin`](Self::begin), and this thread's events are also reported
    /// as [`Recorded::Sites`] until the scope ends (the caller has begun the
    /// tracer's recording).
    pub(crate) fn begin_recording_sites() -> Self {
        Self::begin_with(true)
    }

    fn begin_with(sites: bool) -> Self {
        let start = THREAD.with(|t| {
            if sites {
                t.sites.set(t.sites.get() + 1);
            }
            t.depth.set(t.depth.get() + 1);
            let start = MeasureStart {
                allocs: t.allocs.get(),
                frees: t.frees.get(),
                reallocs: t.reallocs.get(),
                bytes_in: t.bytes_in.get(),
                bytes_out: t.bytes_out.get(),
                net: t.net.get(),
                outer_peak: t.peak.get(),
            };
            t.peak.set(start.net);
            start
        });
        MeasureScope { start, sites }
    }

    /// What this thread allocated and freed since [`begin`](Self::begin).
    pub(crate) fn delta(&self) -> Delta {
        let s = &self.start;
        THREAD.with(|t| Delta {
            allocs: t.allocs.get().wrapping_sub(s.allocs),
            frees: t.frees.get().wrapping_sub(s.frees),
            reallocs: t.reallocs.get().wrapping_sub(s.reallocs),
            bytes_allocated: t.bytes_in.get().wrapping_sub(s.bytes_in),
            bytes_freed: t.bytes_out.get().wrapping_sub(s.bytes_out),
            peak_bytes: t.peak.get().wrapping_sub(s.net).max(0) as u64,
        })
    }
}

impl Drop for MeasureScope {
    fn drop(&mut self) {
        let outer_peak = self.start.outer_peak;
        let sites = self.sites;
        THREAD.with(|t| {
            if sites {
                t.sites.set(t.sites.get() - 1);
            }
            t.depth.set(t.depth.get() - 1);
            t.peak.set(t.peak.get().max(outer_peak));
        });
    }
}

/// Runs `f` and returns its result with what **this thread** allocated and
/// freed while it ran.
///
/// Allocations by other threads are not counted, so assertions on the
/// [`Delta`] hold under the parallel test runner. Calls nest: an inner
/// `measure` gives its own figures, and the outer one includes them (its
/// `peak_bytes` too). Work that `f` hands to other threads is not counted;
/// a block `f` frees is counted wherever it was allocated.
///
/// # Panics
///
/// When no [`TraceAlloc`](crate::TraceAlloc) is the global allocator (see
/// [`is_installed`]): every figure would be a zero that means nothing.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let (sum, d) = tracealloc::measure(|| {
///         let v: Vec<u32> = (0..1000).collect();
///         v.iter().sum::<u32>()
///     });
///     assert_eq!(sum, 499_500);
///     assert_eq!(d.allocs, 1);
///     assert_eq!(d.net_bytes(), 0);
///     assert_eq!(d.peak_bytes, 4000);
/// }
/// ```
#[track_caller]
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Delta) {
    measure_as("measure", f)
}

#[track_caller]
fn measure_as<R>(what: &str, f: impl FnOnce() -> R) -> (R, Delta) {
    let scope = MeasureScope::begin();
    let r = f();
    let d = scope.delta();
    drop(scope);
    require_installed(what);
    (r, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The unit-test binary has no `TraceAlloc` installed, so the record_*
    // functions are driven by hand here.

    #[test]
    fn measure_counts_recorded_events_on_this_thread() {
        let ((), d) = measure(|| {
            record_alloc(100);
            record_realloc(100, 300);
            record_realloc(300, 50);
            record_free(50);
        });
        assert_eq!(
            d,
            Delta {
                allocs: 1,
                frees: 1,
                reallocs: 2,
                bytes_allocated: 300,
                bytes_freed: 300,
                peak_bytes: 300,
            }
        );
        assert_eq!(d.net_bytes(), 0);
    }

    #[test]
    fn nested_measure_peaks_propagate_outward() {
        let (inner, outer) = measure(|| {
            record_alloc(10);
            let ((), inner) = measure(|| {
                record_alloc(1000);
                record_free(1000);
            });
            record_free(10);
            inner
        });
        assert_eq!(inner.peak_bytes, 1000);
        assert_eq!(inner.net_bytes(), 0);
        assert_eq!(outer.peak_bytes, 1010);
        assert_eq!((outer.allocs, outer.frees), (2, 2));
    }

    #[test]
    fn peak_is_zero_when_only_freeing() {
        let (_, d) = measure(|| record_free(64));
        assert_eq!(d.peak_bytes, 0);
        assert_eq!(d.net_bytes(), -64);
    }

    #[test]
    fn measure_scope_unwinds_cleanly() {
        let depth = || THREAD.with(|t| t.depth.get());
        let before = depth();
        let r = std::panic::catch_unwind(|| {
            measure(|| {
                record_alloc(8);
                panic!("inside measure");
            })
        });
        assert!(r.is_err());
        assert_eq!(depth(), before);
    }

    #[test]
    fn events_reach_the_process_totals() {
        // The events recorded by hand stand in for an installed TraceAlloc.
        INSTALLED.store(true, Relaxed);
        // Other unit tests record concurrently, so compare lower bounds only.
        let before = stats();
        record_alloc(PEAK_SLACK as usize * 4);
        let mid = stats();
        record_free(PEAK_SLACK as usize * 4);
        assert!(mid.total_allocs > before.total_allocs);
        assert!(mid.total_bytes >= before.total_bytes + PEAK_SLACK as u64 * 4);
        assert!(mid.peak_bytes >= PEAK_SLACK as u64 * 4);
    }

    #[test]
    fn display_names_every_figure() {
        let d = Delta {
            allocs: 2,
            frees: 1,
            reallocs: 3,
            bytes_allocated: 96,
            bytes_freed: 32,
            peak_bytes: 96,
        };
        assert_eq!(
            d.to_string(),
            "2 allocs, 1 frees, 3 reallocs, 96 B allocated, 32 B freed (net +64 B, peak +96 B)"
        );
    }
}
