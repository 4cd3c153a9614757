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

// The impl is generic, so it is compiled in the user's crate, with the
// user's optimization level: in a debug build, without optimization. It is
// kept to the calls to the inner allocator; everything else happens in the
// non-generic functions below (`hook!`). When this crate is optimized in a
// build with `debug_assertions` (a debug build whose Cargo.toml has
// `[profile.dev.package.tracealloc] opt-level = 3`), they stay out of line,
// so they run as compiled here, optimized, the unwinder included (framehop
// is generic, and instantiated here). Otherwise (release builds, or nothing
// optimized) they are inlined, as any `#[inline(always)]` code.
//
// SAFETY: every method forwards to the inner allocator with the caller's own
// arguments and returns its result unchanged, so `A`'s guarantees (and the
// caller's obligations) carry over as they are. What is added around the call
// only updates counters and the tracer's tables: it does not allocate through
// `self` (the tracer's allocations re-enter as nested calls, which the
// reentrancy guard sends straight to `inner`), touch the block, or unwind.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TraceAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are forwarded unchanged.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            on_new_block(ptr, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are forwarded unchanged.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            on_new_block(ptr, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let held = before_free(ptr);
        // SAFETY: the caller's obligations are forwarded unchanged.
        unsafe { self.inner.dealloc(ptr, layout) };
        after_free(layout.size(), held);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = before_realloc(ptr);
        // SAFETY: the caller's obligations are forwarded unchanged.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        after_realloc(ptr, new, layout.size(), new_size, before);
        new
    }
}

/// Marks the functions the generic impl calls: out of line when this crate
/// is optimized (`cfg(tracealloc_optimized)`, set by build.rs) in a build
/// with `debug_assertions`, so that the user's unoptimized debug build runs
/// them as compiled here; inlined into the allocator otherwise.
macro_rules! hook {
    ($f:item) => {
        #[cfg_attr(all(debug_assertions, tracealloc_optimized), inline(never))]
        #[cfg_attr(not(all(debug_assertions, tracealloc_optimized)), inline(always))]
        $f
    };
}

hook! {
fn on_new_block(ptr: *mut u8, size: usize) {
    if Guard::held() {
        counters::record_tracer(size as i64);
        return;
    }
    after(counters::record_alloc(size), || site_alloc(ptr, size));
    if tracer::active() {
        if let Some(session) = tracer::wants(size) {
            if !crate::scope::untraced_now() {
                trace_new_block(ptr as usize, size, session);
            }
        }
    }
}
}

hook! {
/// Before a block is given back: forgets its trace. Returns whether the
/// guard is held (the tracer's own block).
fn before_free(ptr: *mut u8) -> bool {
    if Guard::held() {
        return true;
    }
    if tracer::active() && tracer::maybe_traced(ptr as usize) {
        untrace(ptr as usize);
    }
    if tracer::sites::maybe_recorded(ptr as usize) {
        site_free(ptr);
    }
    false
}
}

hook! {
/// After a block of `size` bytes was given back.
fn after_free(size: usize, held: bool) {
    if held {
        counters::record_tracer(-(size as i64));
    } else {
        // A recorded block's free was seen before it (`before_free`).
        after(counters::record_free(size), || {});
    }
}
}

/// What [`before_realloc`] found.
enum BeforeRealloc {
    /// The guard is held: the tracer's own block.
    Held,
    /// The block's trace, taken out of the table while the inner allocator
    /// moves it.
    Taken(Option<tracer::Taken>),
}

hook! {
fn before_realloc(ptr: *mut u8) -> BeforeRealloc {
    if Guard::held() {
        BeforeRealloc::Held
    } else {
        // A block an assertion on another thread recorded, moved here: its
        // record ends (this thread's own assertion sees the move after).
        if tracer::sites::maybe_recorded(ptr as usize) && !counters::recording_sites() {
            site_free(ptr);
        }
        before_realloc_traced(ptr)
    }
}
}

#[inline(always)]
fn before_realloc_traced(ptr: *mut u8) -> BeforeRealloc {
    if tracer::active() {
        BeforeRealloc::Taken(take_trace(ptr as usize))
    } else {
        BeforeRealloc::Taken(None)
    }
}

hook! {
fn after_realloc(
    ptr: *mut u8,
    new: *mut u8,
    old_size: usize,
    new_size: usize,
    before: BeforeRealloc,
) {
    let taken = match before {
        BeforeRealloc::Held => {
            if !new.is_null() {
                counters::record_tracer(new_size as i64 - old_size as i64);
            }
            return;
        }
        BeforeRealloc::Taken(t) => t,
    };
    if new.is_null() {
        if let Some(t) = taken {
            let guard = Guard::hold();
            tracer::put_back(&guard, ptr as usize, t);
        }
        return;
    }
    after(counters::record_realloc(old_size, new_size), || {
        site_realloc(ptr, new, old_size, new_size)
    });
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

/// Follow-up work the counters ask for; off the fast path. `site` reports
/// the event to the site recording of an assertion open on this thread.
#[inline(always)]
fn after(recorded: Recorded, site: impl FnOnce()) {
    match recorded {
        Recorded::Done => {}
        Recorded::ClaimedSlot => on_slot_claimed(),
        Recorded::Sites => site(),
        Recorded::ClaimedSlotAndSites => {
            on_slot_claimed();
            site();
        }
    }
}

#[cold]
#[inline(never)]
fn site_alloc(ptr: *mut u8, size: usize) {
    if let Some(guard) = Guard::enter() {
        tracer::sites::on_alloc(&guard, ptr as usize, size);
    }
}

/// A block an assertion may have recorded is being freed or moved, by any
/// thread.
#[cold]
#[inline(never)]
fn site_free(ptr: *mut u8) {
    if let Some(guard) = Guard::enter() {
        tracer::sites::on_free(&guard, ptr as usize);
    }
}

#[cold]
#[inline(never)]
fn site_realloc(old: *mut u8, new: *mut u8, old_size: usize, size: usize) {
    if let Some(guard) = Guard::enter() {
        tracer::sites::on_realloc(&guard, old as usize, new as usize, old_size, size);
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
