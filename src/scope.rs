//! The scope in which this thread's new blocks are counted but not traced:
//! the crate's own public functions that build results for the caller. A
//! leaf: the allocator reads it, the data and report layers set it.

use std::cell::Cell;

thread_local! {
    /// Set while this thread runs one of the crate's public functions that
    /// build results for the caller (see [`untraced`]).
    static UNTRACED: Cell<bool> = const { Cell::new(false) };
}

#[inline(always)]
pub(crate) fn untraced_now() -> bool {
    UNTRACED.try_with(Cell::get).unwrap_or(false)
}

/// Runs `f` with this thread's new blocks counted but not traced: for the
/// crate's public functions that build results for the caller (snapshots,
/// statistics, reports). Those blocks are the caller's heap, so `stats()`
/// and `measure` count them, but they are not the caller's allocations to
/// trace: a snapshot must not show up in the next one at the line that took
/// it. Nests; restored on unwinding.
pub(crate) fn untraced<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = UNTRACED.try_with(|u| u.set(self.0));
        }
    }
    let _restore = Restore(UNTRACED.try_with(|u| u.replace(true)).unwrap_or(false));
    f()
}
