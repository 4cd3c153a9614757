//! The reentrancy guard of the allocation path, as a value.
//!
//! WARNING: any code of this crate that can allocate, or take one of the
//! tracer's locks, must run while this thread holds the guard: on the
//! allocation path (the tracer's tables grow) and in the public functions
//! that touch the tracer (`start`, snapshots, ...). While it is held, this
//! thread's allocations go straight to the inner allocator and count as
//! tracer memory only: never traced, never counted in `stats()` or
//! `measure`, never back into a tracer lock. A block allocated under the
//! guard must be freed under it too (see [`Internal`]).
//!
//! The functions that need it take `&Guard`: a [`Guard`] exists only while
//! the flag is set, so calling one of them without the guard does not
//! compile.
//!
//! ```text
//! IN_TRACER (thread-local)   Cell<bool>: set while this thread is inside
//!                            the tracer; const-initialised, no destructor
//! ```

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    /// Set while this thread runs code of ours that may allocate.
    static IN_TRACER: Cell<bool> = const { Cell::new(false) };
}

/// Proof that this thread holds the reentrancy guard (see the module docs).
/// Not `Send`: the guard is per thread.
pub(crate) struct Guard {
    /// Whether dropping this value clears the flag (false when an enclosing
    /// call set it, see [`Guard::hold`]).
    owner: bool,
    _per_thread: PhantomData<*const ()>,
}

impl Guard {
    /// Sets the guard, or returns `None` when this thread already holds it:
    /// for the allocation path, which must not come back into the tracer.
    #[inline]
    pub(crate) fn enter() -> Option<Guard> {
        let set = IN_TRACER.try_with(|g| !g.replace(true)).unwrap_or(false);
        set.then_some(Guard {
            owner: true,
            _per_thread: PhantomData,
        })
    }

    /// The guard, set now or already held by an enclosing call of this
    /// thread (whose rules then apply, and which clears it): for the public
    /// functions, which may be called under the guard (from the tracer's
    /// own code) or not.
    #[inline]
    pub(crate) fn hold() -> Guard {
        // The thread-local is const-initialised without a destructor: it
        // is always readable, during thread exit too.
        let owner = IN_TRACER.try_with(|g| !g.replace(true)).unwrap_or(false);
        Guard {
            owner,
            _per_thread: PhantomData,
        }
    }

    /// Whether this thread is inside the tracer.
    #[inline(always)]
    pub(crate) fn held() -> bool {
        IN_TRACER.try_with(Cell::get).unwrap_or(false)
    }

    /// Keeps the guard set after this value is gone (across `fork()`,
    /// until [`release_forgotten`](Self::release_forgotten)).
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }

    /// Clears a guard kept with [`keep`](Self::keep).
    pub(crate) fn release_forgotten() {
        let _ = IN_TRACER.try_with(|g| g.set(false));
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        if self.owner {
            let _ = IN_TRACER.try_with(|g| g.set(false));
        }
    }
}

/// A value allocated under the [`Guard`] (tracer memory) that is dropped
/// under it too, wherever it goes out of scope.
pub(crate) struct Internal<T>(Option<T>);

impl<T> Internal<T> {
    /// Runs `f` under the guard and wraps what it returns.
    pub(crate) fn make(f: impl FnOnce(&Guard) -> T) -> Self {
        let guard = Guard::hold();
        Internal(Some(f(&guard)))
    }
}

impl<T> std::ops::Deref for Internal<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T> Drop for Internal<T> {
    fn drop(&mut self) {
        let _guard = Guard::hold();
        drop(self.0.take());
    }
}
