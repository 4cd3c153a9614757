//! [`TraceAlloc`]: the crate's only `unsafe impl GlobalAlloc`, the reentrancy
//! guard, and the thread-exit hook. The bottom layer: every other module is
//! safe Rust.
//!
//! The allocation path forwards to the inner allocator first and counts only
//! what it returned (a null result counts nothing). It never allocates, never
//! takes a lock and never panics; the one call that may allocate (registering
//! the thread-exit hook, once per thread) runs under the [`ReentrancyGuard`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::counters::{self, Recorded};

/// A global allocator that forwards to `A` and counts every allocation.
///
/// Install it once, as the `#[global_allocator]`; the counters it feeds are
/// process-wide (see [`stats`](crate::stats) and [`measure`](crate::measure)).
/// It adds no header to blocks and changes no alignment: each call goes to the
/// inner allocator as it came, `realloc` included.
///
/// # Examples
///
/// Over the system allocator:
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
/// # fn main() {}
/// ```
///
/// Over any other [`GlobalAlloc`]:
///
/// ```
/// use std::alloc::{GlobalAlloc, Layout, System};
///
/// struct MyAlloc;
///
/// // SAFETY: forwards every call to `System` unchanged.
/// unsafe impl GlobalAlloc for MyAlloc {
///     unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
///         // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
///         unsafe { System.alloc(layout) }
///     }
///     unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
///         // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
///         unsafe { System.dealloc(ptr, layout) }
///     }
/// }
///
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc<MyAlloc> = tracealloc::TraceAlloc::new(MyAlloc);
/// # fn main() {}
/// ```
#[derive(Debug, Default)]
pub struct TraceAlloc<A: GlobalAlloc = System> {
    inner: A,
}

impl TraceAlloc<System> {
    /// Counts over the system allocator.
    ///
    /// # Examples
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
    /// # fn main() {}
    /// ```
    pub const fn system() -> Self {
        TraceAlloc { inner: System }
    }
}

impl<A: GlobalAlloc> TraceAlloc<A> {
    /// Counts over `inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::alloc::System;
    ///
    /// #[global_allocator]
    /// static GLOBAL: tracealloc::TraceAlloc<System> = tracealloc::TraceAlloc::new(System);
    /// # fn main() {}
    /// ```
    pub const fn new(inner: A) -> Self {
        TraceAlloc { inner }
    }

    /// The allocator this one forwards to.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::alloc::System;
    ///
    /// let a = tracealloc::TraceAlloc::new(System);
    /// let _system: &System = a.inner();
    /// ```
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to the inner allocator with the caller's own
// arguments and returns its result unchanged, so `A`'s guarantees (and the
// caller's obligations) carry over as they are. What is added around the call
// only updates counters: it does not allocate through `self`, touch the block,
// lock, or unwind.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TraceAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's `layout`, which meets `alloc`'s
        // contract (non-zero size).
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            after(counters::record_alloc(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            after(counters::record_alloc(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator
        // (hence by `inner`) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        after(counters::record_free(layout.size()));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` is a block of `inner` with
        // `layout`, and that `new_size` is valid for `layout.align()`.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            after(counters::record_realloc(layout.size(), new_size));
        }
        new
    }
}

/// Follow-up work the counters ask for; off the fast path.
#[inline(always)]
fn after(recorded: Recorded) {
    if recorded == Recorded::ClaimedSlot {
        on_slot_claimed();
    }
}

#[cold]
#[inline(never)]
fn on_slot_claimed() {
    if let Some(_guard) = ReentrancyGuard::enter() {
        thread_exit::register();
    }
}

thread_local! {
    /// Set while this thread runs code of ours that may allocate.
    static IN_TRACER: Cell<bool> = const { Cell::new(false) };
}

/// The reentrancy guard of the allocation path.
///
/// WARNING: any code of this crate that can allocate, lock or otherwise call
/// back into the allocator while handling an allocator event must run while
/// holding this guard, and must do nothing when [`enter`](Self::enter) returns
/// `None`: that means the event is itself a nested one, and taking the same
/// path again would recurse (or deadlock on a lock this thread holds).
/// Counting never needs the guard: it does not allocate.
pub(crate) struct ReentrancyGuard(());

impl ReentrancyGuard {
    /// Sets the guard, or returns `None` when this thread already holds it
    /// (or its thread-local is unreadable).
    #[inline]
    pub(crate) fn enter() -> Option<Self> {
        IN_TRACER
            .try_with(|g| (!g.replace(true)).then_some(ReentrancyGuard(())))
            .ok()
            .flatten()
    }
}

impl Drop for ReentrancyGuard {
    #[inline]
    fn drop(&mut self) {
        let _ = IN_TRACER.try_with(|g| g.set(false));
    }
}

/// Runs [`counters::release_thread_slot`] when a thread exits, so that its
/// counter slot serves the next thread. Thread-locals here have no
/// destructors (they must stay readable while threads exit), so the hook is a
/// POSIX thread-specific key, whose destructors run after the thread's Rust
/// (and C++) thread-local destructors: allocations made in those are still
/// counted in the thread's own slot.
#[cfg(unix)]
mod thread_exit {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicUsize, Ordering::*};

    /// The key + 1; 0 while not yet created, `usize::MAX` if creation failed.
    static KEY: AtomicUsize = AtomicUsize::new(0);
    const FAILED: usize = usize::MAX;

    extern "C" fn on_exit(_value: *mut c_void) {
        crate::counters::release_thread_slot();
    }

    fn key() -> Option<libc::pthread_key_t> {
        let mut k = KEY.load(Acquire);
        if k == 0 {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: `key` is a valid place to write the new key; `on_exit`
            // is an `extern "C" fn(*mut c_void)` that lives for the whole
            // program and never unwinds (it only stores atomics).
            let created = unsafe { libc::pthread_key_create(&mut key, Some(on_exit)) } == 0;
            let mine = if created { key as usize + 1 } else { FAILED };
            k = match KEY.compare_exchange(0, mine, AcqRel, Acquire) {
                Ok(_) => mine,
                Err(winner) => {
                    if created {
                        // SAFETY: `key` was created just above, and no thread
                        // has been given it.
                        unsafe { libc::pthread_key_delete(key) };
                    }
                    winner
                }
            };
        }
        (k != FAILED).then(|| (k - 1) as libc::pthread_key_t)
    }

    /// Arms the hook for the calling thread. Without a key (the process ran
    /// out of them), the thread keeps its slot for good: counts stay exact,
    /// and threads beyond the slots share the overflow counters.
    pub(super) fn register() {
        if let Some(key) = key() {
            // SAFETY: `key` is a live key made by `pthread_key_create`; any
            // non-null value arms the destructor, and it is never dereferenced.
            unsafe {
                libc::pthread_setspecific(key, std::ptr::NonNull::<u8>::dangling().as_ptr().cast())
            };
        }
    }
}

/// Without POSIX thread-specific keys, threads keep their slot for good.
#[cfg(not(unix))]
mod thread_exit {
    pub(super) fn register() {}
}
