//! [`TraceAlloc`]: the crate's only `unsafe impl GlobalAlloc`, and the
//! thread-exit hook. With `sys/`, the bottom layer: the only modules with
//! `unsafe` code.
//!
//! The allocation path forwards to the inner allocator first and counts only
//! what it returned (a null result counts nothing). Counting never allocates,
//! locks or panics; tracing (when on) is handed the event, under the
//! reentrancy [`Guard`] (see `guard.rs`): it takes the tracer's sharded locks
//! and may grow its tables. This call up to the tracer is the one place a
//! lower layer calls a higher one: the allocator is where events begin, and
//! a direct call keeps the hot path free of an indirect one.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::counters::{self, Recorded};
use crate::guard::Guard;
use crate::tracer;

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
// only updates counters and the tracer's tables: it does not allocate through
// `self` (the tracer's allocations re-enter as nested calls, which the
// reentrancy guard sends straight to `inner`), touch the block, or unwind.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TraceAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's `layout`, which meets `alloc`'s
        // contract (non-zero size).
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            on_new_block(ptr, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            on_new_block(ptr, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let size = layout.size();
        if Guard::held() {
            // SAFETY: the caller guarantees `ptr` was allocated by this
            // allocator (hence by `inner`) with `layout`.
            unsafe { self.inner.dealloc(ptr, layout) };
            counters::record_tracer(-(size as i64));
            return;
        }
        // Untrace before the address can be handed out again.
        if tracer::active() && tracer::maybe_traced(ptr as usize) {
            untrace(ptr as usize);
        }
        // SAFETY: as above.
        unsafe { self.inner.dealloc(ptr, layout) };
        after(counters::record_free(size));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_size = layout.size();
        if Guard::held() {
            // SAFETY: the caller guarantees `ptr` is a block of `inner` with
            // `layout`, and that `new_size` is valid for `layout.align()`.
            let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                counters::record_tracer(new_size as i64 - old_size as i64);
            }
            return new;
        }
        // As tracemalloc does: the old block's trace goes, the new block is
        // traced with the new size and the stack of this call.
        let taken = if tracer::active() {
            take_trace(ptr as usize)
        } else {
            None
        };
        // SAFETY: as above.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new.is_null() {
            if let Some(t) = taken {
                let guard = Guard::hold();
                tracer::put_back(&guard, ptr as usize, t);
            }
            return new;
        }
        after(counters::record_realloc(old_size, new_size));
        if let Some(t) = taken {
            let guard = Guard::hold();
            tracer::finish(&guard, t);
        }
        if tracer::active() {
            if let Some(session) = tracer::wants(new_size) {
                if !crate::scope::untraced_now() {
                    trace_new_block(new as usize, new_size, session);
                }
            }
        }
        new
    }
}

/// Counts (and, when tracing, traces) a block just allocated.
#[inline(always)]
fn on_new_block(ptr: *mut u8, size: usize) {
    if Guard::held() {
        counters::record_tracer(size as i64);
        return;
    }
    after(counters::record_alloc(size));
    if tracer::active() {
        if let Some(session) = tracer::wants(size) {
            if !crate::scope::untraced_now() {
                trace_new_block(ptr as usize, size, session);
            }
        }
    }
}

#[inline(never)]
fn trace_new_block(addr: usize, size: usize, session: tracer::Session) {
    if let Some(guard) = Guard::enter() {
        tracer::on_alloc(&guard, addr, size, session);
    }
}

#[inline(never)]
fn untrace(addr: usize) {
    if let Some(guard) = Guard::enter() {
        tracer::on_free(&guard, addr);
    }
}

#[inline(never)]
fn take_trace(addr: usize) -> Option<tracer::Taken> {
    let guard = Guard::enter()?;
    tracer::take(&guard, addr)
}

/// Follow-up work the counters ask for; off the fast path.
#[inline(always)]
fn after(recorded: Recorded) {
    if recorded == Recorded::ClaimedSlot {
        on_slot_claimed();
    }
}

/// A thread's first event (once per thread): arms the thread-exit hook and,
/// on the process's first, reads `TRACEALLOC` (see `activate.rs`): here,
/// off the hot path, the check costs the other events nothing. The event is
/// counted and not yet traced, and no tracer lock is held.
#[cold]
#[inline(never)]
fn on_slot_claimed() {
    if let Some(guard) = Guard::enter() {
        crate::sys::on_thread_exit(on_thread_exit);
        crate::activate::on_first_event(&guard);
    }
}

/// Runs when a thread that allocated exits, after its thread-local
/// destructors: hands its counter slot back and pushes its running totals.
fn on_thread_exit() {
    counters::release_thread_slot();
    tracer::thread_exit();
}
