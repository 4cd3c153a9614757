//! Stack capture on the allocation path: a bounds-checked frame-pointer walk
//! where it can be trusted, an unwinder otherwise.
//!
//! Both fill a caller's buffer with return addresses, most recent first,
//! starting inside the tracer (those frames are trimmed at symbolization).
//! Neither allocates through the global allocator. Part of the crate's unsafe
//! bottom layer, with `alloc.rs`: the walk reads raw stack memory.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

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
/// method; returns how many.
#[inline(always)]
pub(crate) fn capture(buf: &mut [usize]) -> usize {
    if METHOD.load(Relaxed) == 1 {
        walk_frame_pointers(buf)
    } else {
        unwind(buf)
    }
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
///
/// Every frame pointer must lie inside this thread's stack, be aligned, and
/// be above the previous one; the walk stops at the first that is not, at a
/// null return address, or when `buf` is full.
#[inline(never)]
pub(crate) fn walk_frame_pointers(buf: &mut [usize]) -> usize {
    let Some((low, high)) = stack_bounds() else {
        return 0;
    };
    let mut fp = frame_pointer();
    let mut n = 0;
    while n < buf.len() {
        // A frame record is two words: the caller's frame pointer, then the
        // return address.
        if fp < low || !fp.is_multiple_of(std::mem::align_of::<usize>()) || fp > high - 2 * WORD {
            break;
        }
        // SAFETY: `fp..fp + 2 words` lies within this thread's stack, which
        // is mapped and readable for the thread's whole life, and is aligned;
        // the values read are plain integers, whatever they hold.
        let (next, ret) = unsafe {
            (
                std::ptr::read_volatile(fp as *const usize),
                std::ptr::read_volatile((fp + WORD) as *const usize),
            )
        };
        if ret == 0 {
            break;
        }
        buf[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
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

/// Chooses the capture method: frame pointers if the walk from here agrees
/// with the unwinder over the frames above this call (the caller's code and
/// what called it), the unwinder otherwise. Run at `start`; the result holds
/// for the process.
#[inline(never)]
pub(crate) fn choose_method() -> CaptureMethod {
    if !FRAME_POINTERS_SUPPORTED {
        return CaptureMethod::Unwinder;
    }
    let mut walked = [0usize; 48];
    let mut unwound = [0usize; 64];
    let w = walk_frame_pointers(&mut walked);
    let u = unwind_uncached(&mut unwound);
    if walks_agree(&walked[..w], &unwound[..u]) {
        CaptureMethod::FramePointers
    } else {
        CaptureMethod::Unwinder
    }
}

/// The walk is trusted when it starts where the unwinder does (its first or
/// second return address, the caller of `choose_method`, is one the unwinder
/// saw: a walk that starts from a stale frame pointer further up would skip
/// the frames in between) and from there the next frames (up to 8, at least
/// 2) are the same in both.
pub(crate) fn walks_agree(walked: &[usize], unwound: &[usize]) -> bool {
    let Some((i, j)) = walked
        .iter()
        .take(2)
        .enumerate()
        .find_map(|(i, ip)| unwound.iter().position(|u| u == ip).map(|j| (i, j)))
    else {
        return false;
    };
    let (a, b) = (&walked[i..], &unwound[j..]);
    let n = a.len().min(b.len()).min(8);
    n >= 2 && a[..n] == b[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_needs_a_common_run() {
        assert!(walks_agree(&[9, 1, 2, 3], &[7, 8, 1, 2, 3, 4]));
        assert!(!walks_agree(&[1, 5, 3], &[1, 2, 3]), "a skipped frame");
        assert!(!walks_agree(&[1], &[1, 2]), "too short to tell");
        assert!(!walks_agree(&[], &[1, 2]));
        assert!(!walks_agree(&[4, 5], &[1, 2]));
        assert!(
            !walks_agree(&[8, 9, 1, 2, 3], &[1, 2, 3]),
            "starts too far up"
        );
    }

    #[test]
    fn both_methods_see_this_test() {
        let mut a = [0usize; 64];
        let n = unwind(&mut a);
        assert!(n > 3);
        if FRAME_POINTERS_SUPPORTED && choose_method() == CaptureMethod::FramePointers {
            let mut b = [0usize; 64];
            let m = walk_frame_pointers(&mut b);
            assert!(m > 3);
        }
    }
}
