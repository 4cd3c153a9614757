//! Stack capture on the allocation path: a bounds-checked frame-pointer walk
//! where it can be trusted, an unwinder otherwise.
//!
//! Both fill a caller's buffer with return addresses, most recent first,
//! starting inside the tracer (those frames are trimmed at symbolization).
//! Neither allocates through the global allocator. Part of the crate's unsafe
//! bottom layer, with `alloc.rs`: the walk reads raw stack memory.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

/// How stacks are captured, as reported by [`capture_method`](crate::capture_method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaptureMethod {
    /// Walking the chain of saved frame pointers: about a nanosecond a frame.
    /// Needs frame pointers in every frame between the allocation and the
    /// frames kept: the standard library has them; build your code with
    /// `-C force-frame-pointers=yes`.
    FramePointers,
    /// Unwinding with the DWARF call-frame information: works in any build.
    /// On x86-64 Linux with a cache of unwind rules (`framehop`, about 10 ns a
    /// frame once warm); elsewhere with `backtrace::trace_unsynchronized`
    /// (about 100 ns a frame).
    Unwinder,
}

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
/// method; returns how many. A frame-pointer walk that cannot be trusted
/// (see [`walk_frame_pointers`]) is counted and redone with the unwinder.
#[inline(always)]
pub(crate) fn capture(buf: &mut [usize]) -> usize {
    if METHOD.load(Relaxed) == 1 {
        if let Some(n) = walk_frame_pointers(buf) {
            return n;
        }
        return redo_with_unwinder(buf);
    }
    unwind(buf)
}

/// Frame-pointer walks rejected since the process started (see
/// [`capture_fallbacks`](crate::capture_fallbacks)).
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn fallbacks() -> u64 {
    FALLBACKS.load(Relaxed)
}

#[cold]
#[inline(never)]
fn redo_with_unwinder(buf: &mut [usize]) -> usize {
    FALLBACKS.fetch_add(1, Relaxed);
    unwind(buf)
}

/// Captures with the unwinder; see [`CaptureMethod::Unwinder`].
#[inline(never)]
pub(crate) fn unwind(buf: &mut [usize]) -> usize {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
    if let Some(n) = cached::unwind(buf) {
        return n;
    }
    unwind_uncached(buf)
}

/// Captures with `backtrace::trace_unsynchronized`.
#[inline(never)]
pub(crate) fn unwind_uncached(buf: &mut [usize]) -> usize {
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` must not run concurrently with another
    // unsynchronized trace *if the platform's unwinder is not thread-safe*;
    // on the platforms where it is used here (glibc's and LLVM's
    // `_Unwind_Backtrace`, and DbgHelp-free targets) it is. The closure does
    // not allocate or unwind.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if n < buf.len() {
                buf[n] = frame.ip() as usize;
                n += 1;
            }
            n < buf.len()
        })
    };
    n
}

thread_local! {
    /// This thread's stack bounds `(low, high)`; `(0, 0)` until looked up,
    /// `(1, 1)` when they cannot be.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Captures by walking frame pointers; see [`CaptureMethod::FramePointers`].
/// `None` when the walk cannot be trusted: this thread's stack bounds are
/// unknown, or a return address lies outside the code of every object that
/// was loaded when tracing started (the chain went through a frame whose
/// code does not keep frame pointers, and what was read is not a frame).
#[inline(never)]
pub(crate) fn walk_frame_pointers(buf: &mut [usize]) -> Option<usize> {
    let (low, high) = stack_bounds()?;
    let read = |a: usize| {
        // SAFETY: `walk_records` asks only for aligned words inside
        // `low..high`, this thread's stack, which is mapped and readable for
        // the thread's whole life; the values read are plain integers,
        // whatever they hold.
        unsafe { std::ptr::read_volatile(a as *const usize) }
    };
    // Checked inline: the main executable's code, where most frames are,
    // and the segment where the last frame outside it was found (the C
    // library's, which holds every thread's first frame).
    let (main_start, main_len) = (CODE[0].load(Relaxed), CODE[1].load(Relaxed));
    let h = CODE_HINT.load(Relaxed) % MAX_CODE_RANGES;
    let (hint_start, hint_len) = (CODE[2 * h].load(Relaxed), CODE[2 * h + 1].load(Relaxed));
    let is_code = |a: usize| {
        a.wrapping_sub(main_start) < main_len || a.wrapping_sub(hint_start) < hint_len || is_code(a)
    };
    walk_records(frame_pointer(), (low, high), buf, read, is_code)
}

/// Follows the chain of frame records from `fp`: each is two words, the
/// caller's frame pointer then the return address. Every frame pointer must
/// lie inside `bounds`, be aligned and be above the previous one; the walk
/// ends at the first that is not, at a null return address, or when `buf`
/// is full (a normal end: what was read is a frame chain). It fails (`None`)
/// at a return address that `is_code` rejects.
#[inline(always)]
fn walk_records(
    mut fp: usize,
    (low, high): (usize, usize),
    buf: &mut [usize],
    read: impl Fn(usize) -> usize,
    is_code: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        if fp < low || !fp.is_multiple_of(WORD) || fp > high - 2 * WORD {
            break;
        }
        let (next, ret) = (read(fp), read(fp + WORD));
        if ret == 0 {
            break;
        }
        if !is_code(ret) {
            return None;
        }
        buf[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    Some(n)
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
/// fall back to the unwinder).
pub(crate) fn refresh_code_ranges() {
    let mut ranges = [(0usize, 0usize); MAX_CODE_RANGES];
    let n = crate::sys::code_ranges(&mut ranges);
    CODE_LEN.store(0, Relaxed);
    for (i, &(a, b)) in ranges[..n].iter().enumerate() {
        CODE[2 * i].store(a, Relaxed);
        CODE[2 * i + 1].store(b.saturating_sub(a), Relaxed);
    }
    CODE_LEN.store(n, Relaxed);
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

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register; no memory access, no side effect.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    fp
}

#[cfg(all(target_arch = "aarch64", not(miri)))]
#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register; no memory access, no side effect.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    fp
}

#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri))))]
#[inline(always)]
fn frame_pointer() -> usize {
    0
}

/// Whether this target can walk frame pointers at all.
pub(crate) const FRAME_POINTERS_SUPPORTED: bool = cfg!(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    any(target_os = "linux", target_os = "android"),
    not(miri)
));

/// Loads what the unwinder needs (at `start`, under the guard).
pub(crate) fn prepare_unwinder() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
    cached::init();
}

/// The cached DWARF unwinder: `framehop` over copies of the unwind tables of
/// the objects loaded when tracing first started, with per-thread rule caches
/// taken from a pool (`try_lock` only: a cache held by a thread that vanished
/// in a `fork()` is skipped, never waited for). Stack memory is read through
/// the same bounds checks as the frame-pointer walk.
#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
mod cached {
    use std::cell::Cell;
    use std::sync::{Mutex, OnceLock, TryLockError};

    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};

    type Unw = UnwinderX86_64<Vec<u8>, MustNotAllocateDuringUnwind>;
    type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

    static UNWINDER: OnceLock<Unw> = OnceLock::new();
    const POOL: usize = 64;
    static CACHES: [Mutex<Option<Box<Cache>>>; POOL] = [const { Mutex::new(None) }; POOL];

    thread_local! {
        /// The pool slot this thread used last.
        static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    pub(super) fn init() {
        UNWINDER.get_or_init(|| {
            let mut u = Unw::new();
            for o in crate::sys::loaded_objects() {
                let info = ExplicitModuleSectionInfo {
                    base_svma: 0,
                    text_svma: Some(o.text_svma.clone()),
                    eh_frame_svma: Some(o.eh_frame_svma),
                    eh_frame: Some(o.eh_frame),
                    eh_frame_hdr_svma: Some(o.eh_frame_hdr_svma),
                    eh_frame_hdr: Some(o.eh_frame_hdr),
                    ..Default::default()
                };
                let avma = o.base + o.text_svma.start..o.base + o.text_svma.end;
                u.add_module(Module::new(String::new(), avma, o.base, info));
            }
            u
        });
    }

    /// Unwinds into `buf`; `None` when the unwinder is not loaded, the stack
    /// bounds are unknown, or every cache is busy.
    #[inline(never)]
    pub(super) fn unwind(buf: &mut [usize]) -> Option<usize> {
        let u = UNWINDER.get()?;
        let (low, high) = super::stack_bounds()?;
        let (pc, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers (the address of this instruction,
        // the stack and frame pointers); no memory access, no side effect.
        unsafe {
            std::arch::asm!(
                "lea {pc}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                pc = out(reg) pc,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags)
            );
        }
        let hint = HINT.try_with(Cell::get).unwrap_or(0);
        for k in 0..POOL {
            let i = hint.wrapping_add(k) % POOL;
            let mut guard = match CACHES[i].try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            let _ = HINT.try_with(|h| h.set(i));
            let cache = guard.get_or_insert_with(|| Box::new(Cache::new_in()));
            let mut read_stack = |addr: u64| -> Result<u64, ()> {
                let a = addr as usize;
                if a < low || a > high - super::WORD || !a.is_multiple_of(super::WORD) {
                    return Err(());
                }
                // SAFETY: `a` is an aligned word inside this thread's
                // stack, which is mapped for the thread's whole life.
                Ok(unsafe { std::ptr::read_volatile(a as *const u64) })
            };
            let mut frames = u.iter_frames(
                pc,
                UnwindRegsX86_64::new(pc, sp, bp),
                &mut **cache,
                &mut read_stack,
            );
            let mut n = 0;
            while n < buf.len() {
                match frames.next() {
                    Ok(Some(f)) => {
                        buf[n] = f.address() as usize;
                        n += 1;
                    }
                    _ => break,
                }
            }
            return Some(n);
        }
        None
    }
}

fn stack_bounds() -> Option<(usize, usize)> {
    let (low, high) = STACK
        .try_with(|s| {
            if s.get() == (0, 0) {
                s.set(crate::sys::stack_bounds().unwrap_or((1, 1)));
            }
            s.get()
        })
        .ok()?;
    (high > low + 2 * WORD).then_some((low, high))
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
pub(crate) fn choose_method() -> CaptureMethod {
    if !FRAME_POINTERS_SUPPORTED {
        return CaptureMethod::Unwinder;
    }
    refresh_code_ranges();
    let mut walked = [0usize; 64];
    let mut unwound = [0usize; 96];
    let (w, u) = probe(black_box(PROBE_DEPTH), &mut walked, &mut unwound);
    match w {
        Some(w) if probe_agrees(&walked[..w], &unwound[..u], PROBE_DEPTH) => {
            CaptureMethod::FramePointers
        }
        _ => CaptureMethod::Unwinder,
    }
}

/// Recurses `depth` times, then walks and unwinds from one leaf: both
/// captures share every frame from the probe up.
#[inline(never)]
fn probe(depth: usize, walked: &mut [usize], unwound: &mut [usize]) -> (Option<usize>, usize) {
    let r = if depth == 0 {
        probe_leaf(walked, unwound)
    } else {
        probe(black_box(depth - 1), walked, unwound)
    };
    // Not a tail call: each level keeps its frame.
    black_box(r)
}

#[inline(never)]
fn probe_leaf(walked: &mut [usize], unwound: &mut [usize]) -> (Option<usize>, usize) {
    let w = walk_frame_pointers(walked);
    let u = unwind_uncached(unwound);
    black_box((w, u))
}

/// Whether a walk from the probe's leaf is right, frame for frame, against
/// the unwinder's capture from the same leaf. The walk's first address is
/// the leaf's (beside the unwinder's, which returns to another call in the
/// leaf); from its second on, every address must be the unwinder's, in
/// order, from the probe's bottom frame: the bottom frame, then `depth`
/// identical returns into the recursion, then the caller of the probe
/// (`choose_method`) and that function's caller, and on up to where the walk
/// ends. A walk that starts from a stale frame pointer (code built without
/// frame pointers leaves one in the register) starts further up the stack
/// and fails the first of these tests; one that skips a frame fails the
/// comparison.
pub(crate) fn probe_agrees(walked: &[usize], unwound: &[usize], depth: usize) -> bool {
    let Some(&bottom) = walked.get(1) else {
        return false;
    };
    let Some(j) = unwound.iter().position(|&u| u == bottom) else {
        return false;
    };
    // The leaf: a different return address into the same small function.
    if j == 0 || walked[0] == unwound[j - 1] || walked[0].abs_diff(unwound[j - 1]) > 1024 {
        return false;
    }
    // The recursion: `depth` equal returns above the bottom frame.
    let Some(rec) = unwound.get(j + 1..j + 1 + depth) else {
        return false;
    };
    if depth == 0 || rec.iter().any(|&r| r != rec[0] || r == bottom) {
        return false;
    }
    // Frame for frame from the bottom up, through the probe's callers.
    let (a, b) = (&walked[1..], &unwound[j..]);
    let n = a.len().min(b.len());
    n >= depth + 3 && a[..n] == b[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe capture as the unwinder gives it: its own frame, the leaf,
    /// the bottom of the probe, `depth` recursion returns, then `callers`.
    fn unwound(depth: usize, callers: &[usize]) -> Vec<usize> {
        let mut u = vec![0x9000, 0x1010, 0x2020];
        u.extend(std::iter::repeat_n(0x2050, depth));
        u.extend_from_slice(callers);
        u
    }

    #[test]
    fn the_probe_must_be_reproduced_from_its_bottom_frame() {
        let callers = [0x3000, 0x4000, 0x5000, 0x6000, 0x7000];
        let u = unwound(4, &callers);
        // A right walk: the leaf's other call, then the unwinder's frames.
        let mut right = vec![0x1008];
        right.extend_from_slice(&u[2..]);
        assert!(probe_agrees(&right, &u, 4));
        // It may end before the unwinder does (at a thread's first frame).
        assert!(probe_agrees(&right[..right.len() - 2], &u, 4));
        // A stale frame pointer: the walk starts among the outermost frames
        // (what a debug build did on libtest's threads).
        assert!(!probe_agrees(&[0x6000, 0x7000], &u, 4));
        assert!(!probe_agrees(&[0x5000, 0x6000, 0x7000], &u, 4));
        // A walk that starts one frame up (no leaf frame).
        assert!(!probe_agrees(&right[1..], &u, 4));
        // One that skips a frame of the recursion, or of the callers.
        let mut skipped = right.clone();
        skipped.remove(3);
        assert!(!probe_agrees(&skipped, &u, 4));
        let mut skipped = right.clone();
        skipped.remove(7);
        assert!(!probe_agrees(&skipped, &u, 4));
        // Too short to see past the probe.
        assert!(!probe_agrees(&right[..6], &u, 4));
        // The leaf's address must be the leaf's, and not the unwinder's own.
        let mut far = right.clone();
        far[0] = 0x8000;
        assert!(!probe_agrees(&far, &u, 4));
        let mut same = right.clone();
        same[0] = 0x1010;
        assert!(!probe_agrees(&same, &u, 4));
        assert!(!probe_agrees(&[], &u, 4));
    }

    /// A fake stack: `words` at addresses `base + 8 * i`.
    fn walk_fake(words: &[usize], base: usize, fp: usize, code: &[usize]) -> Option<Vec<usize>> {
        let mut buf = [0usize; 16];
        let read = |a: usize| words[(a - base) / WORD];
        let n = walk_records(fp, (base, base + words.len() * WORD), &mut buf, read, |a| {
            code.contains(&a)
        })?;
        Some(buf[..n].to_vec())
    }

    #[test]
    fn walks_stop_at_the_chain_s_end_and_fail_on_what_is_not_code() {
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
        assert_eq!(
            walk_fake(&words, base, at(0), &code),
            Some(vec![0xa1, 0xa2, 0xa3])
        );
        // A chain that leaves the stack ends there.
        words[8] = 0xdead_0000;
        assert_eq!(
            walk_fake(&words, base, at(0), &code),
            Some(vec![0xa1, 0xa2, 0xa3])
        );
        // A record whose return address is no code: the walk is not trusted.
        words[5] = 0x7fff_1234;
        assert_eq!(walk_fake(&words, base, at(0), &code), None);
        // A pointer going down the stack, or misaligned, ends the walk.
        words[5] = 0xa2;
        words[4] = at(0);
        assert_eq!(
            walk_fake(&words, base, at(0), &code),
            Some(vec![0xa1, 0xa2])
        );
        assert_eq!(walk_fake(&words, base, at(0) + 1, &code), Some(vec![]));
        assert_eq!(walk_fake(&words, base, 0, &code), Some(vec![]));
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
        let n = unwind(&mut a);
        assert!(n > 3);
        if FRAME_POINTERS_SUPPORTED && choose_method() == CaptureMethod::FramePointers {
            let mut b = [0usize; 64];
            let m = walk_frame_pointers(&mut b).expect("a trusted walk");
            assert!(m > 3);
        }
    }
}
