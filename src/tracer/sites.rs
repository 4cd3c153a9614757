//! Where an assertion's allocations were made: while an assertion scope is
//! open on a thread (`assert_no_alloc!` and the others), that thread's
//! allocations are recorded with their stacks, whether or not a tracing
//! session is on. Other threads are not recorded, and pay nothing: the
//! counters send an event here only from their per-thread `measure` path,
//! and only while the thread's recording flag is up (see
//! `counters::ThreadCounters::sites`).
//!
//! ```text
//! RECORDINGS   Mutex<Vec<Recording>>: one per thread with a scope open,
//!              found by the thread's key (few at once: a test runner's
//!              threads)
//!   records    each allocation (or realloc) in order: address, size, stack,
//!              and whether it was freed since, on this thread
//!   live       address -> index of the record of the block there
//!   lost       events not recorded (memory refused, stack table full)
//! KEY          this thread's key (0 until its first scope)
//! ```
//!
//! Every function here runs under the reentrancy guard: the memory the
//! recordings take is tracer memory, and an allocation they make does not
//! come back here. Thread-local state is a plain key (no destructor): the
//! recordings live in the shared list, and the scope that began one ends it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::stacks::StackId;
use super::{capture_stack, lock, Held};
use crate::guard::Guard;

/// The most records one thread keeps; beyond, events are counted as lost.
pub(crate) const MAX_RECORDS: usize = 1 << 16;

/// One allocation made while a scope was open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) addr: usize,
    /// The block's size.
    pub(crate) size: usize,
    /// Bytes this event allocated: the size, or a `realloc`'s growth.
    pub(crate) grown: usize,
    /// `None` when the stack could not be captured or kept.
    pub(crate) stack: Option<StackId>,
    /// Freed (or moved by `realloc`) on this thread since.
    pub(crate) freed: bool,
}

struct Recording {
    key: u64,
    records: Vec<Record>,
    live: HashMap<usize, u32>,
    lost: u64,
}

static RECORDINGS: Mutex<Vec<Recording>> = Mutex::new(Vec::new());
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static KEY: Cell<u64> = const { Cell::new(0) };
}

fn key() -> u64 {
    KEY.try_with(|k| {
        if k.get() == 0 {
            k.set(NEXT_KEY.fetch_add(1, Relaxed));
        }
        k.get()
    })
    .unwrap_or(0)
}

fn with_own<R>(f: impl FnOnce(&mut Recording) -> R) -> Option<R> {
    let key = key();
    let mut all = lock(&RECORDINGS);
    all.iter_mut().find(|r| r.key == key).map(f)
}

/// Where a scope began in its thread's recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Records made before it.
    from: usize,
    /// Events lost before it.
    lost: u64,
    /// Whether it began the recording (the outermost scope), and ends it.
    first: bool,
}

/// Begins a scope in this thread's recording, starting the recording if no
/// scope is open on this thread.
pub(crate) fn begin(_g: &Guard) -> Mark {
    let key = key();
    let mut all = lock(&RECORDINGS);
    if let Some(r) = all.iter().find(|r| r.key == key) {
        return Mark {
            from: r.records.len(),
            lost: r.lost,
            first: false,
        };
    }
    let first = all.try_reserve(1).is_ok();
    if first {
        all.push(Recording {
            key,
            records: Vec::new(),
            live: HashMap::new(),
            lost: 0,
        });
    }
    Mark {
        from: 0,
        lost: 0,
        first,
    }
}

/// The records made since `mark` (a [`begin`]'s), and the events lost since;
/// the outermost scope ends this thread's recording (its memory is freed
/// here, under the guard).
pub(crate) fn take(_g: &Guard, mark: Mark) -> (Vec<Record>, u64) {
    let key = key();
    let mut all = lock(&RECORDINGS);
    let Some(i) = all.iter().position(|r| r.key == key) else {
        return (Vec::new(), 0);
    };
    let r = &all[i];
    let records = r.records.get(mark.from..).unwrap_or(&[]).to_vec();
    let lost = r.lost.wrapping_sub(mark.lost);
    if mark.first {
        drop(all.swap_remove(i));
        if all.is_empty() {
            *all = Vec::new();
        }
    }
    (records, lost)
}

/// A block of `size` bytes at `addr` was allocated on this thread while it
/// records.
pub(crate) fn on_alloc(g: &Guard, addr: usize, size: usize) {
    // Captured before the lock: the unwinder may allocate (under the guard)
    // and take its own locks.
    let stack = capture_stack(g);
    let _ = with_own(|r| add(r, addr, size, size, stack));
}

/// The block at `addr` was freed on this thread while it records.
pub(crate) fn on_free(_g: &Guard, addr: usize) {
    let _ = with_own(|r| forget(r, addr));
}

/// The block at `old`, of `old_size` bytes, was resized to `size` bytes at
/// `new` on this thread while it records: the old block's record ends, and
/// one begins at the resizing call.
pub(crate) fn on_realloc(g: &Guard, old: usize, new: usize, old_size: usize, size: usize) {
    let stack = capture_stack(g);
    let _ = with_own(|r| {
        forget(r, old);
        add(r, new, size, size.saturating_sub(old_size), stack);
    });
}

fn add(r: &mut Recording, addr: usize, size: usize, grown: usize, stack: Option<StackId>) {
    if r.records.len() >= MAX_RECORDS
        || r.records.try_reserve(1).is_err()
        || r.live.try_reserve(1).is_err()
    {
        r.lost += 1;
        return;
    }
    // An address still held by a record was freed where this thread did
    // not see it (by another thread): that record ends here.
    forget(r, addr);
    r.live.insert(addr, r.records.len() as u32);
    r.records.push(Record {
        addr,
        size,
        grown,
        stack,
        freed: false,
    });
}

fn forget(r: &mut Recording, addr: usize) {
    if let Some(i) = r.live.remove(&addr) {
        if let Some(rec) = r.records.get_mut(i as usize) {
            rec.freed = true;
        }
    }
}

/// Takes the recordings' lock into `held` (before `fork()`): a leaf, taken
/// after the tracer's others (nothing is locked while it is held).
pub(crate) fn hold(_g: &Guard, held: &mut Held) {
    held.push(Box::new(lock(&RECORDINGS)));
}
