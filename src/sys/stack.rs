//! This thread's stack, read word by word: the raw reads of the frame-pointer
//! walk and of the cached unwinder, each checked against the stack's bounds
//! here, so that the code above reads through a safe interface.

use std::cell::Cell;

const WORD: usize = std::mem::size_of::<usize>();

thread_local! {
    /// This thread's stack top from the OS; 0 until looked up, 1 when it
    /// cannot be.
    static TOP: Cell<usize> = const { Cell::new(0) };
}

/// The part of this thread's stack above the caller's frame: from an
/// address in the caller's frame (everything a walk or an unwind from there
/// reads is above it: the frames of its callers) to the stack's top. Mapped
/// and readable for the thread's whole life. (The OS's low bound is not
/// used: for the main thread it is the size limit's floor, not the mapped
/// bottom.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stack {
    low: usize,
    high: usize,
}

impl Stack {
    /// The calling thread's stack above the caller's frame; `None` when its
    /// top is unknown. Inlined, so that its marker lies in the caller's
    /// frame.
    #[inline(always)]
    pub(crate) fn here() -> Option<Stack> {
        let marker = 0usize;
        let low = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
        let high = TOP
            .try_with(|t| {
                if t.get() == 0 {
                    t.set(super::stack_bounds().map_or(1, |(_, high)| high));
                }
                t.get()
            })
            .ok()?;
        (high > low.saturating_add(2 * WORD)).then_some(Stack { low, high })
    }

    /// `(low, high)`.
    #[inline(always)]
    pub(crate) fn bounds(&self) -> (usize, usize) {
        (self.low, self.high)
    }

    /// Whether `words` aligned words from `addr` lie inside the stack.
    #[inline(always)]
    pub(crate) fn holds(&self, addr: usize, words: usize) -> bool {
        addr >= self.low && addr.is_multiple_of(WORD) && addr <= self.high - words * WORD
    }

    /// The word at `addr`, if it lies inside the stack.
    #[inline(always)]
    pub(crate) fn read(&self, addr: usize) -> Option<usize> {
        if !self.holds(addr, 1) {
            return None;
        }
        // SAFETY: `addr` is an aligned word between an address in the
        // caller's frame and the top of this thread's stack (checked just
        // above; `Stack` is only made by `here`, on this thread): memory
        // that is mapped and readable while the thread lives. The value is
        // a plain integer, whatever it holds.
        Some(unsafe { std::ptr::read_volatile(addr as *const usize) })
    }
}
