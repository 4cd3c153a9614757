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
//! peak::         the profile's clock, and when to record the traced peak's
//!                composition
//! ```
//!
//! Every function here that takes a tracer lock first enters the reentrancy
//! guard (see [`crate::alloc`]): a lock-holder that allocates must not come
//! back into the tracer.

pub(crate) mod capture;
pub(crate) mod content;
pub(crate) mod live;
pub(crate) mod peak;
pub(crate) mod sample;
pub(crate) mod sites;
pub(crate) mod stacks;
pub(crate) mod state;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

use std::any::Any;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::counters::{self, PeakTracker};
use crate::guard::Guard;
pub use capture::CaptureMethod;
use live::{Block, Insert};
use stacks::StackId;
pub(crate) use state::Session;
use state::{ALL, OFF, SAMPLED};

/// The highest traceback limit [`start`](crate::start) accepts.
pub const MAX_NFRAME: usize = 256;

/// Raw frames captured beyond the limit, so that the allocator's and the
/// standard library's frames can be trimmed from the top and `nframe` user
/// frames still remain.
const EXTRA_FRAMES: usize = 24;

/// Raw frames captured at the least, whatever the limit: the first frame of
/// the user's own code (`Traceback::user_frame`) is looked for in these,
/// and a load through a library lies 40 frames and more below the
/// allocating one (candle's BERT loader: 39 to 45).
pub(crate) const USER_FRAMES: usize = 64;

/// How many raw frames a session of limit `nframe` captures.
#[inline(always)]
fn capture_len(nframe: usize) -> usize {
    (nframe + EXTRA_FRAMES).max(USER_FRAMES)
}

static NFRAME: AtomicUsize = AtomicUsize::new(1);
static RATE: AtomicU64 = AtomicU64::new(0);
static CONTROL: Mutex<()> = Mutex::new(());
static DROPPED: AtomicU64 = AtomicU64::new(0);
static TRACED_PEAK: PeakTracker = PeakTracker::new();

thread_local! {
    /// This thread's traced bytes not yet pushed to TRACED_PEAK, and the
    /// session generation they belong to (a new session drops them).
    static TRACED_PENDING: (Cell<i64>, Cell<u64>) = const { (Cell::new(0), Cell::new(0)) };
}

/// This thread's pending traced bytes, emptied first if they belong to an
/// earlier session.
#[inline(always)]
fn pending_now(t: &(Cell<i64>, Cell<u64>)) -> &Cell<i64> {
    let generation = state::current().generation();
    if t.1.get() != generation {
        t.1.set(generation);
        t.0.set(0);
    }
    &t.0
}

// ---------------------------------------------------------------------------
// Hooks for the allocation path (alloc.rs).

/// Whether a tracing session is on: one relaxed load.
#[inline(always)]
pub(crate) fn active() -> bool {
    state::current().is_on()
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
    let session = state::current();
    match session.mode() {
        ALL => Some(session),
        SAMPLED => sample::should_sample(size, RATE.load(Relaxed)).then_some(session),
        _ => None,
    }
}

fn add_traced(delta: i64) {
    let _ = TRACED_PENDING.try_with(|t| TRACED_PEAK.add(pending_now(t), delta));
}

/// A traced block of `size` bytes was entered: counted, and the peak's
/// record made due if the total rose far enough (see [`peak`]).
#[inline(always)]
fn add_traced_alloc(size: usize) {
    let _ = TRACED_PENDING.try_with(|t| {
        let p = pending_now(t);
        TRACED_PEAK.add(p, size as i64);
        peak::rose_to(TRACED_PEAK.pushed().wrapping_add(p.get()));
    });
}

/// The traced total as this thread sees it: the pushed total plus its own
/// pending bytes.
fn traced_estimate() -> i64 {
    TRACED_PEAK.pushed().wrapping_add(
        TRACED_PENDING
            .try_with(|t| pending_now(t).get())
            .unwrap_or(0),
    )
}

/// Traces the new block at `addr` in `session` (see [`wants`]). Under the
/// reentrancy guard.
#[inline(never)]
pub(crate) fn on_alloc(g: &Guard, addr: usize, size: usize, session: Session) {
    // The table line the insert will need loads while the stack is walked.
    live::prefetch(addr);
    let len = capture_len(NFRAME.load(Relaxed));
    // A small buffer for the usual limits: zeroing 2 KiB on every
    // allocation would cost more than walking the stack.
    if len <= USER_FRAMES {
        record::<USER_FRAMES>(g, addr, size, len, session);
    } else {
        record::<{ MAX_NFRAME + EXTRA_FRAMES }>(g, addr, size, len, session);
    }
}

#[inline(always)]
fn record<const N: usize>(g: &Guard, addr: usize, size: usize, len: usize, session: Session) {
    let mut buf = [0usize; N];
    let len = len.min(N);
    let n = capture::capture(g, &mut buf[..len]);
    let id = match stacks::find(g, &buf[..n]) {
        Some(id) => id,
        None => match new_stack(g, &mut buf[..len], n) {
            Some(id) => id,
            None => {
                dropped();
                return;
            }
        },
    };
    insert(g, addr, size, id, session);
}

/// Makes stack capture ready outside a session, for [`sites`]: the method
/// chosen as `start` chooses it, once (a session's own choice stands).
pub(crate) fn prepare_capture(g: &Guard) {
    if capture::method().is_some() {
        return;
    }
    let _control = lock(&CONTROL);
    if capture::method().is_some() {
        return;
    }
    let method = capture::choose_method(g);
    if method == CaptureMethod::Unwinder {
        capture::prepare_unwinder(g);
    }
    capture::set_method(method);
}

/// Frames kept for an assertion's sites: enough for the user's line and the
/// calls under it, down to the asserted expression (through iterator
/// adapters and closures).
pub(crate) const SITE_FRAMES: usize = 40;

/// The calling stack (an allocation being recorded by [`sites`]), interned;
/// `None` if the stack table refuses it. Captured with the method of
/// [`prepare_capture`].
pub(crate) fn capture_stack(g: &Guard) -> Option<StackId> {
    let mut buf = [0usize; SITE_FRAMES + EXTRA_FRAMES];
    let n = capture::capture(g, &mut buf);
    match stacks::find(g, &buf[..n]) {
        Some(id) => Some(id),
        None => new_stack(g, &mut buf, n),
    }
}

/// Interns a stack seen for the first time: captured again first if it went
/// through code loaded since the unwinder was built (see
/// [`capture::new_stack`]).
#[cold]
#[inline(never)]
fn new_stack(g: &Guard, buf: &mut [usize], n: usize) -> Option<StackId> {
    let n = match capture::new_stack(g, &buf[..n]) {
        capture::NewStack::Keep => n,
        capture::NewStack::Again => capture::capture(g, buf),
        capture::NewStack::Uncached => capture::unwind_uncached(buf),
    };
    stacks::intern(g, &buf[..n])
}

fn insert(g: &Guard, addr: usize, size: usize, id: StackId, session: Session) {
    match live::insert(g, addr, size, id, session, || add_traced_alloc(size)) {
        Insert::Done => stacks::on_alloc(id, size, session, peak::now()),
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
pub(crate) fn on_free(g: &Guard, addr: usize) {
    peak::before_free(g, traced_estimate);
    if let Some((b, session)) = live::remove(g, addr, |b| add_traced(-(b.size as i64))) {
        stacks::on_free(b.stack, b.size, session, peak::now());
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
pub(crate) fn take(g: &Guard, addr: usize) -> Option<Taken> {
    peak::before_free(g, traced_estimate);
    live::remove(g, addr, |b| add_traced(-(b.size as i64)))
        .map(|(block, session)| Taken { block, session })
}

/// The `realloc` failed: the block is still there, as it was (unless the
/// session ended meanwhile). Under the guard.
pub(crate) fn put_back(g: &Guard, addr: usize, t: Taken) {
    let size = t.block.size;
    match live::insert(g, addr, size, t.block.stack, t.session, || {
        add_traced_alloc(size)
    }) {
        // Back in the table: as if never taken (its stack's totals were not
        // touched).
        Insert::Done => {}
        // Out of the table for good: its stack's totals as if freed.
        Insert::Stale => finish(g, t),
        Insert::NoMemory => {
            dropped();
            finish(g, t);
        }
    }
}

/// The block taken out is gone for good (the `realloc` succeeded). Under the
/// guard.
pub(crate) fn finish(_g: &Guard, t: Taken) {
    stacks::on_free(t.block.stack, t.block.size, t.session, peak::now());
}

/// The calling thread is exiting: push its running traced total.
pub(crate) fn thread_exit() {
    let _ = TRACED_PENDING.try_with(|t| TRACED_PEAK.push(pending_now(t).replace(0)));
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

/// `n` copies of `value`, or `None` if the memory is refused: the tracer's
/// tables grow with this, never with an allocation that aborts.
pub(crate) fn try_filled<T: Clone>(n: usize, value: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, value);
    Some(v)
}

/// Raises the byte of a counting filter (zero: surely nothing counted
/// there) for one more entry; it saturates at 255, and then stays.
#[inline(always)]
pub(crate) fn filter_raise(b: &AtomicU8) {
    let _ = b.fetch_update(Relaxed, Relaxed, |v| (v < u8::MAX).then_some(v + 1));
}

/// Lowers the byte of a counting filter for one entry fewer (a saturated
/// byte stays: it no longer knows how many it counts).
#[inline(always)]
pub(crate) fn filter_lower(b: &AtomicU8) {
    let _ = b.fetch_update(Relaxed, Relaxed, |v| (v > 0 && v < u8::MAX).then(|| v - 1));
}

/// Lock guards held across `fork()`.
pub(crate) type Held = Vec<Box<dyn Any>>;

// ---------------------------------------------------------------------------
// The operations behind the public API (crate::session).

/// Begins a session: `frames` per traceback, sampling at `rate` bytes
/// (`None`: every block), capturing with `capture` (`None`: chosen here).
/// Does nothing (and returns false) when a session is on.
pub(crate) fn begin(
    g: &Guard,
    frames: usize,
    rate: Option<u64>,
    capture: Option<CaptureMethod>,
) -> bool {
    let _control = lock(&CONTROL);
    if active() {
        return false;
    }
    let method = match capture {
        Some(CaptureMethod::FramePointers) if capture::FRAME_POINTERS_SUPPORTED => {
            capture::refresh_code_ranges();
            CaptureMethod::FramePointers
        }
        Some(_) => CaptureMethod::Unwinder,
        None => capture::choose_method(g),
    };
    if method == CaptureMethod::Unwinder {
        capture::prepare_unwinder(g);
    }
    capture::set_method(method);
    NFRAME.store(frames, Relaxed);
    RATE.store(rate.unwrap_or(0), Relaxed);
    stacks::reset_totals();
    let mode = if rate.is_some() { SAMPLED } else { ALL };
    live::transition(g, mode, clear_peaks);
    true
}

/// Ends the session, dropping every trace.
pub(crate) fn end(g: &Guard) {
    let _control = lock(&CONTROL);
    if !active() {
        return;
    }
    live::transition(g, OFF, clear_peaks);
    stacks::reset_totals();
}

/// Drops every trace and keeps tracing.
pub(crate) fn clear(g: &Guard) {
    let _control = lock(&CONTROL);
    let mode = state::current().mode();
    if mode == OFF {
        return;
    }
    live::transition(g, mode, clear_peaks);
    stacks::reset_totals();
}

/// Forgets the traced peak and restarts the profile's times (inside a
/// transition: no block is traced meanwhile).
fn clear_peaks() {
    TRACED_PEAK.clear();
    peak::restart(0, peak::now());
}

/// Restarts the whole-run counts, keeping the live blocks (see
/// [`crate::reset_profile`]).
pub(crate) fn restart_profile(g: &Guard) {
    let _control = lock(&CONTROL);
    if !active() {
        return;
    }
    let now = peak::now();
    let total = live::totals(g).0;
    TRACED_PEAK.reset(total);
    stacks::restart_counts(now);
    peak::restart(i64::try_from(total).unwrap_or(i64::MAX), now);
}

/// `(current, peak)` traced bytes; `(0, 0)` when not tracing.
pub(crate) fn traced_memory(g: &Guard) -> (u64, u64) {
    if !active() {
        return (0, 0);
    }
    let (bytes, _) = live::totals(g);
    (bytes, TRACED_PEAK.peak(bytes))
}

/// The traced peak := the traced bytes now.
pub(crate) fn reset_traced_peak(g: &Guard) {
    if active() {
        TRACED_PEAK.reset(live::totals(g).0);
    }
}

/// The session's traceback limit.
pub(crate) fn nframe() -> usize {
    NFRAME.load(Relaxed)
}

/// Bytes the tracer holds: heap (measured) and static tables.
pub(crate) fn memory() -> usize {
    counters::tracer_heap_bytes() + live::STATIC_BYTES + stacks::STATIC_BYTES
}

/// Blocks left untraced because the tracer's memory was refused.
pub(crate) fn dropped_count() -> u64 {
    DROPPED.load(Relaxed)
}

/// Takes every tracer lock into `held`, in the order every other path takes
/// them (the control lock, the stack index, the live table, the assertions'
/// recordings, a leaf), except the
/// symbol cache's, which the caller takes between the first and the rest
/// (`take_symbols`): before `fork()`.
pub(crate) fn hold_all(g: &Guard, held: &mut Held, take_symbols: impl FnOnce(&Guard, &mut Held)) {
    held.push(Box::new(lock(&CONTROL)));
    peak::hold_all(g, held);
    take_symbols(g, held);
    stacks::hold_all(g, held);
    live::hold_all(g, held);
    sites::hold(g, held);
}

/// The live traced blocks, copied out for a snapshot.
pub(crate) struct RawTraces {
    /// `(address, size, stack)` per block.
    pub(crate) blocks: Vec<(usize, usize, StackId)>,
    pub(crate) nframe: usize,
    pub(crate) sample_bytes: Option<u64>,
}

/// Copies the live traced blocks, holding each shard's lock only while its
/// blocks are copied; `Ok(None)` when not tracing, `Err(n)` when the copy of
/// `n` blocks could not get its memory. Under the guard: the copy is tracer
/// memory.
pub(crate) fn raw_traces(g: &Guard) -> Result<Option<RawTraces>, usize> {
    let _control = lock(&CONTROL);
    let mode = state::current().mode();
    if mode == OFF {
        return Ok(None);
    }
    let (_, n) = live::totals(g);
    let mut blocks = Vec::new();
    blocks.try_reserve_exact(n + n / 8 + 16).map_err(|_| n)?;
    let mut refused = false;
    // More blocks may have come since the count: grown as needed, and a
    // refusal stops the copy.
    live::for_each(g, |addr, size, stack| {
        if blocks.len() == blocks.capacity() && blocks.try_reserve(blocks.len() / 8 + 16).is_err() {
            refused = true;
        }
        if !refused {
            blocks.push((addr, size, stack));
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

/// One interned stack's whole-run totals, copied out for a profile.
pub(crate) struct RawSite {
    pub(crate) stack: StackId,
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) bytes: u64,
    pub(crate) live_bytes: i64,
    pub(crate) live_blocks: i64,
    pub(crate) max_live_bytes: i64,
    pub(crate) max_live_blocks: i64,
    pub(crate) peak_bytes: i64,
    pub(crate) peak_blocks: i64,
    /// The lifetimes of the stack's blocks, live ones up to the reading.
    pub(crate) lifetimes: std::time::Duration,
}

/// A whole-run reading: the stacks' totals and the session's parameters
/// and times.
pub(crate) struct RawProfile {
    pub(crate) sites: Vec<RawSite>,
    pub(crate) nframe: usize,
    pub(crate) sample_bytes: Option<u64>,
    /// When the session (or the last restart of its counts) began.
    pub(crate) started: std::time::SystemTime,
    /// From then to the reading.
    pub(crate) duration: std::time::Duration,
    /// From then to the recorded peak.
    pub(crate) peak_at: Option<std::time::Duration>,
}

/// The whole-run totals of every stack that allocated in this session
/// (this thread's pending batches flushed first; other threads' lag by at
/// most one batch each: 64 events or 64 KiB per stack), the peak recorded
/// first if the total now is past the last record; `None` when not tracing.
pub(crate) fn raw_profile(g: &Guard) -> Option<RawProfile> {
    let _control = lock(&CONTROL);
    let mode = state::current().mode();
    if mode == OFF {
        return None;
    }
    stacks::flush_thread();
    peak::record(g, traced_estimate());
    let now = peak::now();
    let mut sites = Vec::new();
    for id in 0..stacks::count() as StackId {
        let Some(r) = stacks::record(id) else {
            continue;
        };
        let t = &r.totals;
        let (allocs, frees) = (t.allocs.load(Relaxed), t.frees.load(Relaxed));
        let live_blocks = t.live_blocks.load(Relaxed);
        if allocs == 0 && frees == 0 && live_blocks <= 0 {
            continue;
        }
        let lifetimes = t
            .time
            .load(Relaxed)
            .wrapping_add((live_blocks.max(0) as u64).wrapping_mul(now));
        sites.push(RawSite {
            stack: id,
            allocs,
            frees,
            bytes: t.bytes.load(Relaxed),
            live_bytes: t.live_bytes.load(Relaxed),
            live_blocks,
            max_live_bytes: t.peak_live_bytes.load(Relaxed),
            max_live_blocks: t.peak_live_blocks.load(Relaxed),
            peak_bytes: t.at_peak_bytes.load(Relaxed),
            peak_blocks: t.at_peak_blocks.load(Relaxed),
            // A sum of non-negative lifetimes: a "negative" one is a
            // batch's lag, read as none.
            lifetimes: peak::span(if (lifetimes as i64) < 0 { 0 } else { lifetimes }),
        });
    }
    let (started, started_wall) = peak::started();
    let since = |t: u64| peak::span(t.saturating_sub(started));
    Some(RawProfile {
        sites,
        nframe: NFRAME.load(Relaxed),
        sample_bytes: (mode == SAMPLED).then(|| RATE.load(Relaxed)),
        started: started_wall,
        duration: since(now),
        peak_at: peak::recorded_at().map(since),
    })
}

/// The stack of the traced block at `addr`, and the session's limit.
pub(crate) fn stack_of(g: &Guard, addr: usize) -> Option<(StackId, usize)> {
    if !active() {
        return None;
    }
    live::get(g, addr).map(|b| (b.stack, NFRAME.load(Relaxed)))
}
