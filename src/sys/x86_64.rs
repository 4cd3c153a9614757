//! Register reads on x86-64.

/// The frame-pointer register (`rbp`).
#[inline(always)]
pub(crate) fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register; no memory access, no side effect.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    fp
}

/// The address of this instruction, the stack pointer and the frame
/// pointer, as an unwind starting in the caller needs them.
#[inline(always)]
pub(crate) fn registers() -> (u64, u64, u64) {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers (the address of this instruction, the
    // stack and frame pointers); no memory access, no side effect.
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
    (pc, sp, bp)
}

/// The time-stamp counter: a clock that ticks at a constant rate on the
/// processors of the last fifteen years ("invariant TSC"), read in a few
/// cycles, against clock_gettime's tens of nanoseconds.
#[inline(always)]
pub(crate) fn ticks() -> u64 {
    // SAFETY: `rdtsc` reads a counter; no memory access, no side effect.
    unsafe { std::arch::x86_64::_rdtsc() }
}
