//! Stack capture on the allocation path: a bounds-checked frame-pointer walk
//! where it can be trusted, an unwinder otherwise.
//!
//! Both fill a caller's buffer with return addresses, most recent first,
//! starting inside the tracer (those frames are trimmed at symbolization).
//! Neither allocates through the global allocator. Safe Rust: the raw
//! reads (registers, stack words) go through `crate::sys`, which checks every
//! stack read against the thread's bounds.

use std::hint::black_box;

use crate::guard::Guard;
use crate::sys::Stack;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

pub use crate::method::CaptureMethod;

/// 0: not chosen yet; 1: frame pointers; 2: unwinder.
static METHOD: AtomicU8 = AtomicU8::new(0);

pub(crate) fn method() -> Option<CaptureMethod> {
    match METHOD.load(Relaxed) {
        1 => Some(CaptureMethod::FramePointers),
        2 => Some(CaptureMethod::Unwinder),
        _ => None,
    }
}

pub(crate) fn set_method(m: CaptureMethod) {
    METHOD.store(
        match m {
            CaptureMethod::FramePointers => 1,
            CaptureMethod::Unwinder => 2,
        },
        Relaxed,
    );
}

/// Fills `buf` with return addresses, most recent first, using the chosen
/// method; returns how many.
///
/// A frame-pointer walk is kept when it filled `buf` (the stack goes on) or
/// ended at a known thread root (see [`ROOTS`]); one that ended anywhere
/// else is checked against the unwinder (see [`check_walk`]), and one that
/// read a return address outside the loaded code is redone with it.
#[inline(always)]
pub(crate) fn capture(g: &Guard, buf: &mut [usize]) -> usize {
    if METHOD.load(Relaxed) == 1 {
        return match walk_frame_pointers(buf) {
            Walk::Full(n) => n,
            Walk::Ended(n) if n > 0 && is_root(buf[n - 1]) => n,
            w => check_walk(g, buf, w),
        };
    }
    unwind(g, buf)
}

/// How a frame-pointer walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The buffer filled: this many frames, and the stack goes on.
    Full(usize),
    /// The chain of frame records ended after this many frames: at the
    /// thread's first frame, or early, at a caller that does not keep frame
    /// pointers.
    Ended(usize),
    /// A return address outside the loaded code, or unknown stack bounds.
    Bad,
}

/// Frame-pointer walks rejected since the process started (see
/// [`capture_fallbacks`](crate::capture_fallbacks)).
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn fallbacks() -> u64 {
    FALLBACKS.load(Relaxed)
}

/// Frames the unwinder may find beyond a walk that reached a thread's first
/// frame: the C library's thread or process entry (`clone3`, `_start`,
/// `__libc_start_main`) and a null end.
const ROOT_SLACK: usize = 4;

/// The last return addresses of walks that were checked to end at a thread's
/// first frame (`start_thread` for threads, `__libc_start_call_main` for the
/// main thread, with glibc): a walk that ends at one of them is complete. At
/// most `MAX_ROOTS`; a walk that ends at an unknown root beyond them is
/// checked every time, which costs an unwind but stays right.
const MAX_ROOTS: usize = 16;
static ROOTS: [AtomicUsize; MAX_ROOTS] = [const { AtomicUsize::new(0) }; MAX_ROOTS];
static ROOTS_LEN: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
fn is_root(ret: usize) -> bool {
    let n = ROOTS_LEN.load(Relaxed).min(MAX_ROOTS);
    ROOTS[..n].iter().any(|r| r.load(Relaxed) == ret)
}

fn learn_root(ret: usize) {
    if is_root(ret) {
        return;
    }
    let i = ROOTS_LEN.load(Relaxed);
    if i < MAX_ROOTS
        && ROOTS_LEN
            .compare_exchange(i, i + 1, Relaxed, Relaxed)
            .is_ok()
    {
        // A reader that sees the new length first reads 0, matches nothing,
        // and checks its walk: harmless.
        ROOTS[i].store(ret, Relaxed);
    }
}

/// How far apart two return addresses into one function may be: the
/// tracer's `on_alloc` holds three inlined copies of the capture.
const SAME_FUNCTION: usize = 16 << 10;

/// Room for the unwind that checks a walk: the longest capture buffer and
/// the root frames beyond it.
const CHECK_FRAMES: usize = 320;

/// A walk that did not end at a known root, or was bad. One that ended is
/// compared with an unwind from here (the same function called both): if
/// it gave the unwinder's frames one for one up to the thread's first frame,
/// its last frame is learned as a root and the walk kept. Otherwise (the
/// chain ended early, at code that does not keep frame pointers; or the
/// walk was bad) the capture is the unwinder's, and counted.
#[cold]
#[inline(never)]
fn check_walk(g: &Guard, buf: &mut [usize], w: Walk) -> usize {
    let Walk::Ended(n) = w else {
        FALLBACKS.fetch_add(1, Relaxed);
        return unwind(g, buf);
    };
    let mut unwound = [0usize; CHECK_FRAMES];
    let u = unwind(g, &mut unwound);
    if n > 0
        && n <= buf.len()
        && walk_matches(&buf[..n], &unwound[..u]).is_some_and(|left| left <= ROOT_SLACK)
    {
        learn_root(buf[n - 1]);
        return n;
    }
    // The unwind just made is the capture (its extra frame, this function,
    // is trimmed with the tracer's own).
    FALLBACKS.fetch_add(1, Relaxed);
    let m = u.min(buf.len());
    buf[..m].copy_from_slice(&unwound[..m]);
    m
}

/// Whether `walked` gives the frames of `unwound`, taken from another call
/// in the same function, one for one: its first address is that function's
/// (beside the unwinder's, which returns to the other call in it: a
/// different address, within [`SAME_FUNCTION`] bytes); from its second on,
/// every address must be the unwinder's, in order, to the walk's end.
/// `Some(frames the unwinder found beyond the walk's end)` when they match.
///
/// A walk that starts further up the stack (from a stale frame pointer)
/// has the unwinder's own address there, and fails.
pub(crate) fn walk_matches(walked: &[usize], unwound: &[usize]) -> Option<usize> {
    let &second = walked.get(1)?;
    let j = unwound.iter().position(|&u| u == second)?;
    if j == 0 || walked[0] == unwound[j - 1] || walked[0].abs_diff(unwound[j - 1]) > SAME_FUNCTION {
        return None;
    }
    let (a, b) = (&walked[1..], &unwound[j..]);
    (a.len() <= b.len() && a == &b[..a.len()]).then(|| b.len() - a.len())
}

/// Captures with the unwinder; see [`CaptureMethod::Unwinder`].
#[inline(never)]
pub(crate) fn unwind(g: &Guard, buf: &mut [usize]) -> usize {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
    if let Some(n) = cached::unwind(g, buf) {
        return n;
    }
    unwind_uncached(buf)
}

/// Captures with `backtrace::trace_unsynchronized`.
#[inline(never)]
pub(crate) fn unwind_uncached(buf: &mut [usize]) -> usize {
    crate::sys::trace_uncached(buf)
}

/// Captures by walking frame pointers; see [`CaptureMethod::FramePointers`].
/// [`Walk::Bad`] when this thread's stack bounds are unknown, or a return
/// address lies outside the code of every object that was loaded when
/// tracing started (the chain went through a frame whose code does not keep
/// frame pointers, and what was read is not a frame).
#[inline(never)]
pub(crate) fn walk_frame_pointers(buf: &mut [usize]) -> Walk {
    let Some(stack) = Stack::here() else {
        return Walk::Bad;
    };
    // `walk_records` asks only for words inside the bounds: never 0.
    let read = |a: usize| stack.read(a).unwrap_or(0);
    // Checked inline: the main executable's code, where most frames are,
    // and the segment where the last frame outside it was found (the C
    // library's, which holds every thread's first frame).
    let (main_start, main_len) = (CODE[0].load(Relaxed), CODE[1].load(Relaxed));
    let h = CODE_HINT.load(Relaxed).min(MAX_CODE_RANGES - 1);
    let (hint_start, hint_len) = (CODE[2 * h].load(Relaxed), CODE[2 * h + 1].load(Relaxed));
    let is_code = |a: usize| {
        a.wrapping_sub(main_start) < main_len || a.wrapping_sub(hint_start) < hint_len || is_code(a)
    };
    walk_records(
        crate::sys::frame_pointer(),
        stack.bounds(),
        buf,
        read,
        is_code,
    )
}

/// Follows the chain of frame records from `fp`: each is two words, the
/// caller's frame pointer then the return address. Every frame pointer must
/// lie inside `bounds`, be aligned and be above the previous one; the chain
/// ends ([`Walk::Ended`]) at the first that is not, or at a null return
/// address; [`Walk::Full`] when `buf` fills first. [`Walk::Bad`] at a
/// return address that `is_code` rejects.
#[inline(always)]
fn walk_records(
    mut fp: usize,
    (low, high): (usize, usize),
    buf: &mut [usize],
    read: impl Fn(usize) -> usize,
    is_code: impl Fn(usize) -> bool,
) -> Walk {
    let mut n = 0;
    while n < buf.len() {
        if !on_stack(fp, 2, (low, high)) {
            return Walk::Ended(n);
        }
        let (next, ret) = (read(fp), read(fp + WORD));
        if ret == 0 {
            return Walk::Ended(n);
        }
        if !is_code(ret) {
            return Walk::Bad;
        }
        buf[n] = ret;
        n += 1;
        if next <= fp {
            return Walk::Ended(n);
        }
        fp = next;
    }
    Walk::Full(n)
}

/// The code segments of the loaded objects, as `start, end` pairs of process
/// addresses: written at `start` (under the tracer's control lock), read on
/// every frame of a walk. A torn read during a concurrent rewrite can only
/// turn a walk into an unwind, or let one frame through unchecked.
const MAX_CODE_RANGES: usize = 256;
static CODE: [AtomicUsize; 2 * MAX_CODE_RANGES] =
    [const { AtomicUsize::new(0) }; 2 * MAX_CODE_RANGES];
static CODE_LEN: AtomicUsize = AtomicUsize::new(0);
/// The range where [`is_code`] last found an address.
static CODE_HINT: AtomicUsize = AtomicUsize::new(0);

/// Reads the loaded objects' code segments (at `start`, before the walk is
/// used: objects loaded later are not known, and frames in them make walks
/// fall back to the unwinder, on purpose: a walk through their code, which
/// may lack frame pointers, could skip a caller unseen).
pub(crate) fn refresh_code_ranges() {
    let mut ranges = [(0usize, 0usize); MAX_CODE_RANGES];
    let n = crate::sys::code_ranges(&mut ranges);
    for (i, &(a, b)) in ranges[..n].iter().enumerate() {
        CODE[2 * i].store(a, Relaxed);
        CODE[2 * i + 1].store(b.saturating_sub(a), Relaxed);
    }
    // Ranges no longer loaded are emptied, not just left beyond the length
    // (the hint may point at one).
    for i in n..CODE_LEN.load(Relaxed).min(MAX_CODE_RANGES) {
        CODE[2 * i + 1].store(0, Relaxed);
    }
    CODE_LEN.store(n, Relaxed);
    CODE_HINT.store(0, Relaxed);
}

/// Whether `addr` lies in a code segment read by [`refresh_code_ranges`]
/// (stored as start and length); remembers which in `CODE_HINT`.
#[inline(never)]
fn is_code(addr: usize) -> bool {
    let n = CODE_LEN.load(Relaxed).min(MAX_CODE_RANGES);
    let Some(i) = (0..n)
        .find(|&i| addr.wrapping_sub(CODE[2 * i].load(Relaxed)) < CODE[2 * i + 1].load(Relaxed))
    else {
        return false;
    };
    if CODE_HINT.load(Relaxed) != i {
        CODE_HINT.store(i, Relaxed);
    }
    true
}

const WORD: usize = std::mem::size_of::<usize>();

/// Whether `words` aligned words from `addr` lie inside `(low, high)`, this
/// thread's stack: the one check before every raw read of it.
#[inline(always)]
fn on_stack(addr: usize, words: usize, (low, high): (usize, usize)) -> bool {
    addr >= low && addr.is_multiple_of(WORD) && addr <= high - words * WORD
}

/// Whether this target can walk frame pointers at all.
pub(crate) const FRAME_POINTERS_SUPPORTED: bool = cfg!(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    any(target_os = "linux", target_os = "android"),
    not(miri)
));

/// What to do with a stack seen for the first time (see [`new_stack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NewStack {
    /// Keep it as captured.
    Keep,
    /// Capture it again: the cached unwinder has just learned code it went
    /// through.
    Again,
    /// Capture it again with the uncached unwinder: it went through code
    /// loaded after the cached unwinder was built, which could not learn it.
    Uncached,
}

/// Whether a stack seen for the first time can be kept as captured (see
/// [`NewStack`]): it cannot when it holds addresses of code loaded after the
/// cached unwinder was built, which unwinds such frames with a guess. Under
/// the guard.
#[cold]
pub(crate) fn new_stack(g: &Guard, frames: &[usize]) -> NewStack {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
    return cached::new_stack(g, frames);
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64", not(miri))))]
    {
        let _ = (g, frames);
        NewStack::Keep
    }
}

/// Loads what the unwinder needs (at `start`, under the guard).
pub(crate) fn prepare_unwinder(g: &Guard) {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
    cached::init(g);
}

/// The cached DWARF unwinder: `framehop` over copies of the unwind tables of
/// the loaded objects, with per-thread rule caches taken from a pool
/// (`try_lock` only: a cache held by a thread that vanished in a `fork()` is
/// skipped, never waited for). Stack memory is read through the same bounds
/// checks as the frame-pointer walk.
///
/// ```text
/// TABLES    [OnceLock<Tables>; MAX_BUILDS]: every unwinder built, each
///           written once and never freed (other threads may be reading
///           an older one); LATEST names the one in use (0: none yet). A
///           new one is built at `start` and when a new stack went through
///           code the latest does not know and objects were loaded or
///           unloaded since it was built. At most MAX_BUILDS; past that,
///           such stacks are captured with the uncached unwinder
/// REBUILD   Mutex, taken with try_lock by the thread that rebuilds
/// CACHES    the pool of rule caches
/// ```
#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
mod cached {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering::*};
    use std::sync::{Mutex, OnceLock, TryLockError};

    use crate::guard::Guard;
    use crate::sys::Stack;
    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{
        ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind, Unwinder,
    };

    /// Section data: copied once per object and never freed (the unwinders
    /// that use it are never freed either), shared by successive unwinders.
    type Data = &'static [u8];
    type Unw = UnwinderX86_64<Data, MustNotAllocateDuringUnwind>;
    type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

    /// An unwinder and what it knows.
    struct Tables {
        unwinder: Unw,
        /// The code ranges of its modules, sorted.
        code: Vec<(u64, u64)>,
        /// [`crate::sys::objects_changes`] when it was built.
        changes: u64,
    }

    impl Tables {
        /// Whether `addr` lies in the code of a module of this unwinder.
        fn knows(&self, addr: u64) -> bool {
            let i = self.code.partition_point(|&(start, _)| start <= addr);
            i > 0 && addr < self.code[i - 1].1
        }
    }

    const MAX_BUILDS: usize = 64;
    static TABLES: [OnceLock<Tables>; MAX_BUILDS] = [const { OnceLock::new() }; MAX_BUILDS];
    static LATEST: AtomicUsize = AtomicUsize::new(0);
    static REBUILD: Mutex<()> = Mutex::new(());
    const POOL: usize = 64;
    /// framehop's rule cache is direct-mapped (the slot is the address
    /// modulo 509): two return addresses of one stack that share a slot
    /// evict each other on every walk, and each miss parses the CFI again.
    /// Which addresses collide depends on the code's layout, so one build
    /// of a program can miss on a tenth of its frames and the next on none
    /// (21 000 allocations of a debug build: 42 112 misses against 54, and
    /// 730 ms against 150). Each pool entry holds `WAYS` caches, and a
    /// frame's cache is chosen by a hash of its address: colliding
    /// addresses share a cache one time in `WAYS`.
    const WAYS: usize = 4;
    static CACHES: [Mutex<Option<Box<[Cache; WAYS]>>>; POOL] = [const { Mutex::new(None) }; POOL];

    /// framehop's number of rule-cache slots.
    const SLOTS: u64 = 509;

    /// The cache of `WAYS` for the frame at `lookup`: the quotient of the
    /// address by framehop's slot count, so that two addresses of one slot
    /// share a way only when their distance is a multiple of `WAYS` slot
    /// rounds. A function of the distance, as framehop's slot is, so that
    /// a build collides the same way on every run, whatever the load
    /// address.
    #[inline(always)]
    fn way(lookup: u64) -> usize {
        (lookup / SLOTS) as usize % WAYS
    }

    thread_local! {
        /// The pool slot this thread used last.
        static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// Whether the allocator gives `bytes` now (given back at once): asked
    /// before allocations that cannot fail gracefully, so that a refusal is
    /// met here. Under the reentrancy guard.
    fn memory_available(_g: &Guard, bytes: usize) -> bool {
        let mut probe: Vec<u8> = Vec::new();
        probe.try_reserve_exact(bytes).is_ok()
    }

    fn current() -> Option<&'static Tables> {
        let latest = LATEST.load(Acquire);
        TABLES.get(latest.checked_sub(1)?)?.get()
    }

    /// Builds the tables for the objects loaded now, from `old`'s where it
    /// has them, and publishes them. Under the reentrancy guard.
    fn rebuild(g: &Guard, old: Option<&'static Tables>) -> Option<&'static Tables> {
        let _lock = match REBUILD.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let now = current();
        let ptr = |t: Option<&Tables>| t.map(|t| t as *const Tables);
        if ptr(now) != ptr(old) {
            // Another thread rebuilt meanwhile.
            return now;
        }
        let slot = LATEST.load(Relaxed);
        if slot >= MAX_BUILDS {
            return None;
        }
        let changes = crate::sys::objects_changes();
        let objects = crate::sys::loaded_objects(|start, end| {
            old.is_some_and(|t| t.code.binary_search(&(start, end)).is_ok())
        })?;
        // The unwinder's own structures (its module list, each module's
        // record, the tables' box) allocate without a way to fail: ask for
        // that much and more first, once the copies are made, so that a
        // refusal ends here, without new tables, rather than in an abort.
        if !memory_available(g, (1 << 20) + 512 * objects.len()) {
            return None;
        }
        let mut unwinder = match old {
            Some(t) => t.unwinder.clone(),
            None => Unw::new(),
        };
        // Modules no longer loaded go; new ones come.
        let mut code = Vec::new();
        code.try_reserve_exact(objects.len()).ok()?;
        for o in &objects {
            code.push((o.base + o.text_svma.start, o.base + o.text_svma.end));
        }
        code.sort_unstable();
        if let Some(t) = old {
            for &(start, end) in &t.code {
                if !code.contains(&(start, end)) {
                    unwinder.remove_module(start);
                }
            }
        }
        for o in objects.into_iter().filter(|o| o.copied) {
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: Some(o.text_svma.clone()),
                eh_frame_svma: Some(o.eh_frame_svma),
                eh_frame: Some(&*o.eh_frame.leak()),
                eh_frame_hdr_svma: Some(o.eh_frame_hdr_svma),
                eh_frame_hdr: Some(&*o.eh_frame_hdr.leak()),
                ..Default::default()
            };
            let avma = o.base + o.text_svma.start..o.base + o.text_svma.end;
            unwinder.add_module(Module::new(String::new(), avma, o.base, info));
        }
        // Under REBUILD: nobody else writes this slot.
        let _ = TABLES[slot].set(Tables {
            unwinder,
            code,
            changes,
        });
        LATEST.store(slot + 1, Release);
        current()
    }

    /// Loads the unwinder (at `start`): built the first time, and again if
    /// objects were loaded or unloaded since.
    pub(super) fn init(g: &Guard) {
        match current() {
            None => {
                rebuild(g, None);
            }
            Some(t) if t.changes != crate::sys::objects_changes() => {
                rebuild(g, Some(t));
            }
            Some(_) => {}
        }
    }

    /// Unwinds into `buf`; `None` when the unwinder is not loaded, the stack
    /// bounds are unknown, every cache is busy, or the stack goes through an
    /// object loaded since the unwinder was built that it cannot learn (then
    /// the uncached unwinder does it).
    #[inline(never)]
    pub(super) fn unwind(g: &Guard, buf: &mut [usize]) -> Option<usize> {
        unwind_with(g, current()?, buf)
    }

    /// Whether a stack seen for the first time, captured by this module or
    /// not, holds only addresses of code the unwinder knows: false when it
    /// does not, objects were loaded since it was built, and it learned
    /// them now (the stack is to be captured again). Frames in code it does
    /// not know are passed with a guess from their frame pointer, and a
    /// guess can skip a caller. Under the reentrancy guard.
    #[cold]
    #[inline(never)]
    pub(super) fn new_stack(g: &Guard, frames: &[usize]) -> super::NewStack {
        let Some(tables) = current() else {
            return super::NewStack::Keep;
        };
        if frames.iter().all(|&a| tables.knows(a as u64))
            || crate::sys::objects_changes() == tables.changes
        {
            return super::NewStack::Keep;
        }
        match rebuild(g, Some(tables)) {
            Some(_) => super::NewStack::Again,
            // Busy, over the limit, or refused memory: the uncached
            // unwinder knows every object.
            None => super::NewStack::Uncached,
        }
    }

    /// Unwinds with `tables` into `buf`.
    #[inline(always)]
    fn unwind_with(g: &Guard, tables: &Tables, buf: &mut [usize]) -> Option<usize> {
        let stack = Stack::here()?;
        let (pc, sp, bp) = crate::sys::registers();
        let hint = HINT.try_with(Cell::get).unwrap_or(0);
        for k in 0..POOL {
            let i = hint.wrapping_add(k) % POOL;
            let mut guard = match CACHES[i].try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            let _ = HINT.try_with(|h| h.set(i));
            if guard.is_none() {
                // `Cache::new_in` allocates without a way to fail.
                if !memory_available(g, WAYS * (2 * std::mem::size_of::<Cache>() + (64 << 10))) {
                    return None;
                }
                *guard = Some(Box::new(std::array::from_fn(|_| Cache::new_in())));
            }
            let caches = guard.as_mut()?;
            let mut read_stack = |addr: u64| -> Result<u64, ()> {
                stack.read(addr as usize).map(|w| w as u64).ok_or(())
            };
            // framehop's `iter_frames`, one frame at a time, each with its
            // way's cache.
            if buf.is_empty() {
                return Some(0);
            }
            let mut regs = UnwindRegsX86_64::new(pc, sp, bp);
            let mut frame = FrameAddress::from_instruction_pointer(pc);
            buf[0] = pc as usize;
            let mut n = 1;
            while n < buf.len() {
                let cache = &mut caches[way(frame.address_for_lookup())];
                match tables
                    .unwinder
                    .unwind_frame(frame, &mut regs, cache, &mut read_stack)
                {
                    Ok(Some(ret)) => match FrameAddress::from_return_address(ret) {
                        Some(f) => {
                            buf[n] = ret as usize;
                            n += 1;
                            frame = f;
                        }
                        None => break,
                    },
                    _ => break,
                }
            }
            return Some(n);
        }
        None
    }
}

/// How deep the probe of [`choose_method`] recurses.
const PROBE_DEPTH: usize = 4;

/// Chooses the capture method: frame pointers if a walk from a probe of known
/// depth reproduces the unwinder's frames (see [`probe_agrees`]), the
/// unwinder otherwise. Run at `start`; the result holds for the session.
///
/// The probe is this crate's code, built with the same flags as the caller's
/// (cargo passes `RUSTFLAGS` to every crate): if its frames keep frame
/// pointers, so does the code that called `start`.
#[inline(never)]
pub(crate) fn choose_method(_g: &Guard) -> CaptureMethod {
    if !FRAME_POINTERS_SUPPORTED {
        return CaptureMethod::Unwinder;
    }
    refresh_code_ranges();
    let mut walked = [0usize; 64];
    let mut unwound = [0usize; 96];
    let (w, u) = probe(black_box(PROBE_DEPTH), &mut walked, &mut unwound);
    let (n, full) = match w {
        Walk::Full(n) => (n, true),
        Walk::Ended(n) => (n, false),
        Walk::Bad => return CaptureMethod::Unwinder,
    };
    if !probe_agrees(&walked[..n], full, &unwound[..u], PROBE_DEPTH) {
        return CaptureMethod::Unwinder;
    }
    if !full {
        // This thread's first frame: walks that end there are complete.
        learn_root(walked[n - 1]);
    }
    CaptureMethod::FramePointers
}

/// Recurses `depth` times, then walks and unwinds from one leaf: both
/// captures share every frame from the probe up.
#[inline(never)]
fn probe(depth: usize, walked: &mut [usize], unwound: &mut [usize]) -> (Walk, usize) {
    let r = if depth == 0 {
        probe_leaf(walked, unwound)
    } else {
        probe(black_box(depth - 1), walked, unwound)
    };
    // Not a tail call: each level keeps its frame.
    black_box(r)
}

#[inline(never)]
fn probe_leaf(walked: &mut [usize], unwound: &mut [usize]) -> (Walk, usize) {
    let w = walk_frame_pointers(walked);
    let u = unwind_uncached(unwound);
    black_box((w, u))
}

/// Whether a walk from the probe's leaf is right, frame for frame, against
/// the unwinder's capture from the same leaf (see [`walk_matches`]): from
/// the probe's bottom frame, then `depth` identical returns into the
/// recursion, then the probe's caller (`choose_method`) and that function's
/// callers, to where the walk ends, which must be the thread's first frame
/// (the unwinder finds at most [`ROOT_SLACK`] frames beyond it) unless the
/// walk filled its buffer (`full`).
///
/// A walk that starts from a stale frame pointer (code built without frame
/// pointers leaves one in the register) starts further up the stack and
/// fails the first of these tests; one that skips a frame fails the
/// comparison; one cut short by a caller without frame pointers fails the
/// last.
pub(crate) fn probe_agrees(walked: &[usize], full: bool, unwound: &[usize], depth: usize) -> bool {
    let Some(left) = walk_matches(walked, unwound) else {
        return false;
    };
    // The recursion: `depth` equal returns above the bottom frame.
    let Some(rec) = walked.get(2..2 + depth) else {
        return false;
    };
    if depth == 0 || rec.iter().any(|&r| r != rec[0] || r == walked[1]) {
        return false;
    }
    // Through the probe's callers, to the thread's first frame.
    walked.len() >= depth + 4 && (full || left <= ROOT_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe capture as the unwinder gives it: its own frame, the leaf,
    /// the bottom of the probe, `depth` recursion returns, then `callers`
    /// (the probe's callers, the thread's first frame and its entry).
    fn unwound(depth: usize, callers: &[usize]) -> Vec<usize> {
        let mut u = vec![0x9000, 0x1010, 0x2020];
        u.extend(std::iter::repeat_n(0x2050, depth));
        u.extend_from_slice(callers);
        u
    }

    const CALLERS: [usize; 10] = [
        0x3000, 0x3100, 0x3200, 0x3300, 0x3400, 0x3500, 0x3600, 0x3700, 0x6000, 0x7000,
    ];

    /// The right walk from the leaf: its other call, then the unwinder's
    /// frames to the thread's first frame (0x6000).
    fn right_walk(u: &[usize]) -> Vec<usize> {
        let mut w = vec![0x1008];
        w.extend_from_slice(&u[2..u.len() - 1]);
        w
    }

    #[test]
    fn the_probe_must_be_reproduced_from_its_bottom_frame_to_the_root() {
        let u = unwound(4, &CALLERS);
        let right = right_walk(&u);
        assert!(probe_agrees(&right, false, &u, 4));
        // A stale frame pointer: the walk starts among the outermost frames
        // (what a debug build did on libtest's threads), even on a chain
        // that goes on right from there.
        assert!(!probe_agrees(&[0x3700, 0x6000], false, &u, 4));
        assert!(!probe_agrees(&CALLERS[4..9], false, &u, 4));
        // A walk that starts one frame up (no leaf frame).
        assert!(!probe_agrees(&right[1..], false, &u, 4));
        // One that skips a frame of the recursion, or of the callers.
        for i in [3, 7, 9] {
            let mut skipped = right.clone();
            skipped.remove(i);
            assert!(!probe_agrees(&skipped, false, &u, 4), "frame {i} skipped");
        }
        // One cut short above the probe's callers (a caller without frame
        // pointers ended the chain): only a walk that filled its buffer may
        // end before the thread's first frame.
        let cut = &right[..right.len() - 5];
        assert!(!probe_agrees(cut, false, &u, 4));
        assert!(probe_agrees(cut, true, &u, 4));
        // Too short to see past the probe, even when full.
        assert!(!probe_agrees(&right[..7], true, &u, 4));
        // The leaf's address must be the leaf's, and not the unwinder's own.
        let mut far = right.clone();
        far[0] = 0x1010 + SAME_FUNCTION + 1;
        assert!(!probe_agrees(&far, false, &u, 4));
        let mut same = right.clone();
        same[0] = 0x1010;
        assert!(!probe_agrees(&same, false, &u, 4));
        assert!(!probe_agrees(&[], false, &u, 4));
    }

    #[test]
    fn walks_match_the_unwinder_to_their_end() {
        let u = unwound(0, &CALLERS);
        let right = right_walk(&u);
        assert_eq!(walk_matches(&right, &u), Some(1));
        assert_eq!(walk_matches(&right[..4], &u), Some(8));
        let mut wrong = right.clone();
        wrong[5] = 0x3333;
        assert_eq!(walk_matches(&wrong, &u), None);
        // Longer than the unwinder's capture: it cannot be confirmed.
        let mut longer = right.clone();
        longer.extend([0x7000, 0x7100]);
        assert_eq!(walk_matches(&longer, &u), None);
        assert_eq!(walk_matches(&[0x1008], &u), None);
    }

    #[test]
    fn learned_roots_are_recognized() {
        let root = 0x5eed_0000_1234;
        assert!(!is_root(root));
        learn_root(root);
        learn_root(root);
        assert!(is_root(root));
        let n = ROOTS_LEN.load(Relaxed).min(MAX_ROOTS);
        assert_eq!(
            ROOTS[..n]
                .iter()
                .filter(|r| r.load(Relaxed) == root)
                .count(),
            1
        );
    }

    /// A fake stack: `words` at addresses `base + 8 * i`.
    fn walk_fake(words: &[usize], base: usize, fp: usize, code: &[usize]) -> (Walk, Vec<usize>) {
        let mut buf = [0usize; 4];
        let read = |a: usize| words[(a - base) / WORD];
        let w = walk_records(fp, (base, base + words.len() * WORD), &mut buf, read, |a| {
            code.contains(&a)
        });
        let n = match w {
            Walk::Full(n) | Walk::Ended(n) => n,
            Walk::Bad => 0,
        };
        (w, buf[..n].to_vec())
    }

    #[test]
    fn walks_end_at_the_chain_s_end_and_fail_on_what_is_not_code() {
        let base = 0x10_000;
        let at = |i: usize| base + i * WORD;
        // Three records: [next, ret] at words 0, 4 and 8; the last one's
        // next is 0 (the outermost frame).
        let mut words = vec![0usize; 12];
        words[0] = at(4);
        words[1] = 0xa1;
        words[4] = at(8);
        words[5] = 0xa2;
        words[8] = 0;
        words[9] = 0xa3;
        let code = [0xa1, 0xa2, 0xa3];
        let ended = |v: Vec<usize>| (Walk::Ended(v.len()), v);
        assert_eq!(
            walk_fake(&words, base, at(0), &code),
            ended(vec![0xa1, 0xa2, 0xa3])
        );
        // A chain that leaves the stack ends there.
        words[8] = 0xdead_0000;
        assert_eq!(
            walk_fake(&words, base, at(0), &code),
            ended(vec![0xa1, 0xa2, 0xa3])
        );
        // A longer chain fills the buffer first.
        let mut long = vec![0usize; 20];
        for r in 0..5 {
            long[4 * r] = if r < 4 { at(4 * r + 4) } else { 0 };
            long[4 * r + 1] = 0xa1;
        }
        assert_eq!(
            walk_fake(&long, base, at(0), &[0xa1]),
            (Walk::Full(4), vec![0xa1; 4])
        );
        // A record whose return address is no code: the walk is bad.
        words[5] = 0x7fff_1234;
        assert_eq!(walk_fake(&words, base, at(0), &code), (Walk::Bad, vec![]));
        // A pointer going down the stack, or misaligned, ends the walk.
        words[5] = 0xa2;
        words[4] = at(0);
        assert_eq!(
            walk_fake(&words, base, at(0), &code),
            ended(vec![0xa1, 0xa2])
        );
        assert_eq!(walk_fake(&words, base, at(0) + 1, &code), ended(vec![]));
        assert_eq!(walk_fake(&words, base, 0, &code), ended(vec![]));
    }

    #[test]
    fn code_ranges_hold_this_code_and_not_data() {
        refresh_code_ranges();
        let f = code_ranges_hold_this_code_and_not_data as fn() as usize;
        assert!(is_code(f), "this function's address");
        let on_stack = 0u64;
        assert!(
            !is_code(&on_stack as *const u64 as usize),
            "a stack address"
        );
        let on_heap = Box::new(0u64);
        assert!(!is_code(&*on_heap as *const u64 as usize), "a heap address");
        assert!(!is_code(0x1234));
    }

    #[test]
    fn both_methods_see_this_test() {
        let mut a = [0usize; 64];
        let n = unwind(&Guard::hold(), &mut a);
        assert!(n > 3);
        if FRAME_POINTERS_SUPPORTED && choose_method(&Guard::hold()) == CaptureMethod::FramePointers
        {
            let mut b = [0usize; 64];
            let w = walk_frame_pointers(&mut b);
            assert!(
                matches!(w, Walk::Ended(n) | Walk::Full(n) if n > 3),
                "{w:?}"
            );
        }
    }
}
