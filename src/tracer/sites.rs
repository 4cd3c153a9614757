//! Where an assertion's allocations were made: while an assertion scope is
//! open on a thread (`assert_no_alloc!` and the others), that thread's
//! allocations are recorded with their stacks, whether or not a tracing
//! session is on. Other threads' allocations are not recorded: the counters
//! send an event here only from their per-thread `measure` path, and only
//! while the thread's recording flag is up (see
//! `counters::ThreadCounters::sites`). A recorded block may be freed by any
//! thread (a scoped thread, a pool): every free reads `OPEN` (one relaxed
//! load, zero while no assertion is open anywhere) and, when it is not zero,
//! one byte of `MAYBE`, and only on a hit takes the lock.
//!
//! ```text
//! RECORDINGS   Mutex<Vec<Recording>>: one per thread with a scope open,
//!              found by the thread's key (few at once: a test runner's
//!              threads)
//!   records    each allocation (or realloc) in order: address, size, stack,
//!              and whether it was freed since, on this thread
//!   live       address -> index of the record of the block there
//!   lost       events not recorded (memory refused, stack table full)
//! OPEN         recordings open, all threads
//! MAYBE        counting filter of the recorded live blocks' addresses
//!              (changed under the lock; saturates at 255 and then stays)
//! KEY          this thread's key (0 until its first scope)
//! ```
//!
//! Every function here runs under the reentrancy guard: the memory the
//! recordings take is tracer memory, and an allocation they make does not
//! come back here. Thread-local state is a plain key (no destructor): the
//! recordings live in the shared list, and the scope that began one ends it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
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
    /// Freed (or moved by `realloc`) since, by any thread.
    pub(crate) freed: bool,
    /// A `realloc` of a block allocated before the scope (or not recorded):
    /// only its growth was allocated inside.
    pub(crate) inherited: bool,
}

impl Record {
    /// The bytes of it allocated inside the scope and live now.
    pub(crate) fn live_bytes(&self) -> usize {
        match (self.freed, self.inherited) {
            (true, _) => 0,
            (false, true) => self.grown,
            (false, false) => self.size,
        }
    }
}

struct Recording {
    key: u64,
    records: Vec<Record>,
    live: HashMap<usize, u32>,
    lost: u64,
}

static RECORDINGS: Mutex<Vec<Recording>> = Mutex::new(Vec::new());
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
static OPEN: AtomicUsize = AtomicUsize::new(0);

const FILTER_LEN: usize = 1 << 12;
static MAYBE: [AtomicU8; FILTER_LEN] = [const { AtomicU8::new(0) }; FILTER_LEN];

#[inline(always)]
fn filter_slot(addr: usize) -> &'static AtomicU8 {
    &MAYBE[((addr >> 4) ^ (addr >> 16)) % FILTER_LEN]
}

/// Whether the block at `addr`, being freed or moved, may be one an open
/// assertion recorded (then [`on_free`] must see it, whichever thread frees
/// it): false while no assertion is open anywhere, after one load.
#[inline(always)]
pub(crate) fn maybe_recorded(addr: usize) -> bool {
    OPEN.load(Relaxed) != 0 && filter_slot(addr).load(Relaxed) != 0
}

fn filter_add(addr: usize) {
    super::filter_raise(filter_slot(addr));
}

fn filter_remove(addr: usize) {
    super::filter_lower(filter_slot(addr));
}

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
        OPEN.fetch_add(1, Relaxed);
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
        let r = all.swap_remove(i);
        for &addr in r.live.keys() {
            filter_remove(addr);
        }
        drop(r);
        OPEN.fetch_sub(1, Relaxed);
        if all.is_empty() {
            *all = Vec::new();
        }
    }
    (records, lost)
}

/// How many blocks recorded since `mark` are still live.
pub(crate) fn live_since(_g: &Guard, mark: Mark) -> usize {
    let key = key();
    let all = lock(&RECORDINGS);
    all.iter().find(|r| r.key == key).map_or(0, |r| {
        r.records
            .get(mark.from..)
            .unwrap_or(&[])
            .iter()
            .filter(|rec| rec.live_bytes() > 0)
            .count()
    })
}

/// A block of `size` bytes at `addr` was allocated on this thread while it
/// records.
pub(crate) fn on_alloc(g: &Guard, addr: usize, size: usize) {
    // Captured before the lock: the unwinder may allocate (under the guard)
    // and take its own locks.
    let stack = capture_stack(g);
    let _ = with_own(|r| add(r, addr, size, size, false, stack));
}

/// The block at `addr`, which [`maybe_recorded`] says may be recorded, is
/// being freed or moved, by any thread: its record ends (before the block
/// is given back, so that its address cannot be handed out and recorded
/// again first).
pub(crate) fn on_free(_g: &Guard, addr: usize) {
    let mut all = lock(&RECORDINGS);
    for r in all.iter_mut() {
        forget(r, addr);
    }
}

/// The block at `old`, of `old_size` bytes, was resized to `size` bytes at
/// `new` on this thread while it records: the old block's record ends, and
/// one begins at the resizing call.
pub(crate) fn on_realloc(g: &Guard, old: usize, new: usize, old_size: usize, size: usize) {
    let stack = capture_stack(g);
    let key = key();
    let mut all = lock(&RECORDINGS);
    let mut inherited = true;
    for r in all.iter_mut() {
        if forget(r, old) && r.key == key {
            inherited = false;
        }
    }
    if let Some(r) = all.iter_mut().find(|r| r.key == key) {
        add(
            r,
            new,
            size,
            size.saturating_sub(old_size),
            inherited,
            stack,
        );
    }
}

fn add(
    r: &mut Recording,
    addr: usize,
    size: usize,
    grown: usize,
    inherited: bool,
    stack: Option<StackId>,
) {
    if r.records.len() >= MAX_RECORDS
        || r.records.try_reserve(1).is_err()
        || r.live.try_reserve(1).is_err()
    {
        r.lost += 1;
        return;
    }
    // An address still held by a record was freed unseen (a free raced
    // with the filter's update): that record ends here.
    forget(r, addr);
    r.live.insert(addr, r.records.len() as u32);
    filter_add(addr);
    r.records.push(Record {
        addr,
        size,
        grown,
        stack,
        freed: false,
        inherited,
    });
}

/// Ends the record of the live block at `addr`, if `r` has one.
fn forget(r: &mut Recording, addr: usize) -> bool {
    let Some(i) = r.live.remove(&addr) else {
        return false;
    };
    filter_remove(addr);
    if let Some(rec) = r.records.get_mut(i as usize) {
        rec.freed = true;
    }
    true
}

/// Takes the recordings' lock into `held` (before `fork()`): a leaf, taken
/// after the tracer's others (nothing is locked while it is held).
pub(crate) fn hold(_g: &Guard, held: &mut Held) {
    held.push(Box::new(lock(&RECORDINGS)));
}
