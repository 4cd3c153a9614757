//! The platform's unwinder (`_Unwind_Backtrace`, from the libgcc_s or
//! libunwind that std links on Linux), called directly: the fallback of the
//! cached unwinder, without the `backtrace` crate (and its second copy of
//! `gimli`) on Linux x86_64.

use std::ffi::{c_int, c_void};

/// `_Unwind_Reason_Code` values (the Itanium C++ ABI's).
const URC_NO_REASON: c_int = 0;
const URC_FAILURE: c_int = 9;

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

/// Fills `buf` with the return addresses of the calling thread's stack,
/// most recent first (this function's own frame first, as
/// `backtrace::trace_unsynchronized` gives them); returns how many.
#[inline(never)]
pub(crate) fn trace_uncached(buf: &mut [usize]) -> usize {
    struct State<'a> {
        buf: &'a mut [usize],
        n: usize,
    }
    extern "C" fn each(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `State` passed below, borrowed by nobody else
        // while the walk runs.
        let state = unsafe { &mut *arg.cast::<State<'_>>() };
        if state.n >= state.buf.len() {
            return URC_FAILURE;
        }
        // SAFETY: `ctx` is the unwinder's context for the current frame,
        // valid during this call.
        state.buf[state.n] = unsafe { _Unwind_GetIP(ctx) };
        state.n += 1;
        if state.n < state.buf.len() {
            URC_NO_REASON
        } else {
            URC_FAILURE
        }
    }
    let mut state = State { buf, n: 0 };
    // SAFETY: `each` matches the callback type, does not unwind nor
    // allocate, and only writes `state`, which outlives the call. glibc's
    // and LLVM's `_Unwind_Backtrace` are thread-safe.
    unsafe { _Unwind_Backtrace(each, (&mut state as *mut State<'_>).cast()) };
    state.n
}
