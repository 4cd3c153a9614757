//! Interned stacks: each distinct captured stack is stored once and named by
//! a [`StackId`], with its running totals.
//!
//! ```text
//! CHUNKS[chunk_of(id)]            StackRecord: written once (its frames,
//!                                  under the INDEX shard lock that assigns
//!                                  the id), read without a lock; never freed
//!   frames                         OnceLock<Box<[usize]>>: return addresses
//!   totals: allocs, frees, bytes,  atomics, on a cache line of their own,
//!   live_bytes, peak_live_bytes    fed by per-thread batches (PENDING)
//! PENDING (thread-local)           per-stack deltas, flushed every 64 events
//!                                  or 64 KiB, on eviction and at thread exit:
//!                                  totals lag by at most that per thread
//! INDEX[hash % INDEX_SHARDS]       Mutex<open-addressing (hash, id) table>:
//!                                  finds the id of a stack already seen
//! NEXT_ID                          AtomicU32: ids are dense, 0..NEXT_ID
//! CACHE (thread-local)             the last stacks this thread interned, by
//!                                  hash: most lookups take no lock
//! ```
//!
//! Stacks are never removed: a stack depends on code addresses only, so the
//! table serves every tracing session of the process, and a reader holding an
//! id can always reach its record.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::*};
use std::sync::OnceLock;

use std::sync::Mutex;

use super::state::Session;
use super::{lock, Held};
use crate::guard::Guard;

pub(crate) type StackId = u32;

/// Records per chunk: the first chunks are small (a process with a few
/// stacks touches a few KiB, not a whole chunk), doubling up to `CHUNK`.
const CHUNK: usize = 1024;
const FIRST_CHUNK: usize = 64;
/// Chunks smaller than `CHUNK`, and the ids they hold.
const SMALL_CHUNKS: usize = CHUNK.ilog2() as usize - FIRST_CHUNK.ilog2() as usize;
const SMALL_IDS: usize = CHUNK - FIRST_CHUNK;
const MAX_CHUNKS: usize = SMALL_CHUNKS + 16 * 1024;
/// At most this many distinct stacks (16 M); past it new stacks go untraced.
pub(crate) const MAX_STACKS: usize = SMALL_IDS + CHUNK * (MAX_CHUNKS - SMALL_CHUNKS);

/// The chunk holding `id`, the index of `id` in it, and the chunk's length.
#[inline]
fn chunk_of(id: usize) -> (usize, usize, usize) {
    if id < SMALL_IDS {
        let k = (id / FIRST_CHUNK + 1).ilog2() as usize;
        (k, id - FIRST_CHUNK * ((1 << k) - 1), FIRST_CHUNK << k)
    } else {
        let rest = id - SMALL_IDS;
        (SMALL_CHUNKS + rest / CHUNK, rest % CHUNK, CHUNK)
    }
}
const INDEX_SHARDS: usize = 16;

/// Bytes of the table's static parts.
pub(crate) const STATIC_BYTES: usize =
    std::mem::size_of::<[OnceLock<Box<[StackRecord]>>; MAX_CHUNKS]>()
        + std::mem::size_of::<[Mutex<IndexShard>; INDEX_SHARDS]>();

/// One interned stack and its totals. The frames, read on every lookup, and
/// the totals, written by every traced allocation at this stack, sit on
/// different cache lines: otherwise threads allocating at one site would
/// stall each other's lookups.
#[derive(Default)]
pub(crate) struct StackRecord {
    frames: OnceLock<Box<[usize]>>,
    pub(crate) totals: Totals,
}

/// A stack's running totals (on a cache line of their own). In a sampled
/// session each block counts for the inverse of its probability (see
/// [`weights`]).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Totals {
    /// Traced blocks allocated at this stack.
    pub(crate) allocs: AtomicU64,
    /// Traced blocks allocated here and since freed.
    pub(crate) frees: AtomicU64,
    /// Bytes of the traced blocks allocated here.
    pub(crate) bytes: AtomicU64,
    /// Bytes and blocks of this stack's live traced blocks.
    pub(crate) live_bytes: AtomicI64,
    pub(crate) live_blocks: AtomicI64,
    /// The highest `live_bytes` reached, and `live_blocks` then.
    pub(crate) peak_live_bytes: AtomicI64,
    pub(crate) peak_live_blocks: AtomicI64,
    /// `live_bytes` and `live_blocks` when the traced peak was last
    /// recorded (see `tracer::peak`).
    pub(crate) at_peak_bytes: AtomicI64,
    pub(crate) at_peak_blocks: AtomicI64,
    /// The free times of the blocks freed, less the allocation times of all
    /// blocks (nanoseconds, wrapping): adding `live_blocks` times the time
    /// now gives the lifetimes of all blocks, live ones up to now.
    pub(crate) time: AtomicU64,
}

impl StackRecord {
    /// The stack's return addresses, most recent first.
    pub(crate) fn frames(&self) -> &[usize] {
        self.frames.get().map_or(&[], |f| f)
    }
}

static CHUNKS: [OnceLock<Box<[StackRecord]>>; MAX_CHUNKS] = [const { OnceLock::new() }; MAX_CHUNKS];
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// One shard of the (hash, id) index: linear probing, `id == EMPTY` is free.
struct IndexShard {
    slots: Vec<(u64, StackId)>,
    len: usize,
}

const EMPTY: StackId = StackId::MAX;

static INDEX: [Mutex<IndexShard>; INDEX_SHARDS] = [const {
    Mutex::new(IndexShard {
        slots: Vec::new(),
        len: 0,
    })
}; INDEX_SHARDS];

const CACHE_LEN: usize = 256;

thread_local! {
    /// (hash, id) of stacks this thread interned recently, direct-mapped.
    static CACHE: [Cell<(u64, StackId)>; CACHE_LEN] = const { [const { Cell::new((0, EMPTY)) }; CACHE_LEN] };
}

/// The record of `id`, if it was assigned.
#[inline]
pub(crate) fn record(id: StackId) -> Option<&'static StackRecord> {
    let (chunk, i, _) = chunk_of(id as usize);
    CHUNKS.get(chunk)?.get()?.get(i)
}

/// How many ids have been assigned (some may still be being written).
pub(crate) fn count() -> usize {
    (NEXT_ID.load(Acquire) as usize).min(MAX_STACKS)
}

/// A fast hash of a stack.
#[inline]
fn hash(frames: &[usize]) -> u64 {
    // Four independent lanes, so that each frame's multiply does not wait on
    // the previous one's.
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let step = |lane: &mut u64, f: usize| *lane = (lane.rotate_left(5) ^ f as u64).wrapping_mul(K);
    let mut lanes = [frames.len() as u64, 1, 2, 3];
    let mut quads = frames.chunks_exact(4);
    for q in &mut quads {
        lanes.iter_mut().zip(q).for_each(|(lane, &f)| step(lane, f));
    }
    lanes
        .iter_mut()
        .zip(quads.remainder())
        .for_each(|(lane, &f)| step(lane, f));
    let h = lanes
        .iter()
        .fold(0u64, |h, &l| (h.rotate_left(23) ^ l).wrapping_mul(K));
    h ^ (h >> 29)
}

/// The id of `frames`, interning them if new; `None` when the table is full
/// or the memory for a new stack is refused.
///
/// A new stack allocates: under the guard.
#[inline]
pub(crate) fn intern(_g: &Guard, frames: &[usize]) -> Option<StackId> {
    lookup(frames, intern_locked)
}

/// The id of `frames` if they were interned already.
///
/// It takes an index lock: under the guard.
#[inline]
pub(crate) fn find(_g: &Guard, frames: &[usize]) -> Option<StackId> {
    lookup(frames, |h, frames| {
        lock(&INDEX[index_of(h)]).probe(h, frames).ok()
    })
}

/// The id of `frames` from this thread's cache, or else from `locked`
/// (which searches the index), remembered in the cache.
#[inline(always)]
fn lookup(
    frames: &[usize],
    locked: impl FnOnce(u64, &[usize]) -> Option<StackId>,
) -> Option<StackId> {
    let h = hash(frames);
    let slot = (h as usize) % CACHE_LEN;
    let cached = CACHE.try_with(|c| c[slot].get()).unwrap_or((0, EMPTY));
    if cached.1 != EMPTY && cached.0 == h {
        if let Some(r) = record(cached.1) {
            if r.frames() == frames {
                return Some(cached.1);
            }
        }
    }
    let id = locked(h, frames)?;
    let _ = CACHE.try_with(|c| c[slot].set((h, id)));
    Some(id)
}

/// The index shard of hash `h`.
#[inline]
fn index_of(h: u64) -> usize {
    (h >> 56) as usize % INDEX_SHARDS
}

impl IndexShard {
    /// `Ok(id)` if `frames` (of hash `h`) are in the index; else `Err` with
    /// the free slot where they would go (0 while the index has no slots).
    fn probe(&self, h: u64, frames: &[usize]) -> Result<StackId, usize> {
        if self.slots.is_empty() {
            return Err(0);
        }
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let (sh, id) = self.slots[i];
            if id == EMPTY {
                return Err(i);
            }
            if sh == h && record(id).is_some_and(|r| r.frames() == frames) {
                return Ok(id);
            }
            i = (i + 1) & mask;
        }
    }
}

fn intern_locked(h: u64, frames: &[usize]) -> Option<StackId> {
    let mut shard = lock(&INDEX[index_of(h)]);
    if shard.slots.is_empty() {
        shard.slots = super::try_filled(64, (0, EMPTY))?;
    }
    let mut i = match shard.probe(h, frames) {
        Ok(id) => return Some(id),
        Err(i) => i,
    };
    // New stack. Everything it needs is allocated first, so that a refusal
    // leaves the table as it was. The index keeps a quarter free; if it
    // cannot grow, it may fill up to all but one slot.
    if (shard.len + 1) * 4 > shard.slots.len() * 3 {
        if grow(&mut shard) {
            // The probe starts over in the grown index.
            i = shard.probe(h, frames).err()?;
        } else if shard.len + 2 > shard.slots.len() {
            return None;
        }
    }
    intern_new(&mut shard, i, h, frames)
}

/// Enters `frames`, not yet interned, at the free index slot `i`.
fn intern_new(shard: &mut IndexShard, i: usize, h: u64, frames: &[usize]) -> Option<StackId> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(frames.len()).ok()?;
    copy.extend_from_slice(frames);
    let copy = copy.into_boxed_slice();
    // Assign the next id and write its record before anyone can learn the
    // id.
    let id = NEXT_ID.fetch_add(1, AcqRel);
    if id as usize >= MAX_STACKS {
        NEXT_ID.store(MAX_STACKS as u32, Relaxed);
        return None;
    }
    let (chunk, at, len) = chunk_of(id as usize);
    let chunk = match CHUNKS[chunk].get() {
        Some(c) => c,
        None => {
            // (If refused, the id stays unused: no stack ever names it.)
            let mut records = Vec::new();
            records.try_reserve_exact(len).ok()?;
            records.extend((0..len).map(|_| StackRecord::default()));
            // Another thread may have set it first: then ours is dropped.
            let _ = CHUNKS[chunk].set(records.into_boxed_slice());
            CHUNKS[chunk].get()?
        }
    };
    let _ = chunk[at].frames.set(copy);
    shard.slots[i] = (h, id);
    shard.len += 1;
    Some(id)
}

/// Doubles the index; false (and nothing changed) if the memory is refused.
fn grow(shard: &mut IndexShard) -> bool {
    let Some(mut slots) = super::try_filled(shard.slots.len() * 2, (0, EMPTY)) else {
        return false;
    };
    let mask = slots.len() - 1;
    for &(h, id) in shard.slots.iter().filter(|&&(_, id)| id != EMPTY) {
        let mut i = h as usize & mask;
        while slots[i].1 != EMPTY {
            i = (i + 1) & mask;
        }
        slots[i] = (h, id);
    }
    shard.slots = slots;
    true
}

/// Per-thread batches of per-stack deltas, flushed to the shared totals every
/// `BATCH_EVENTS` events or `BATCH_BYTES` of net change, when another stack
/// needs the slot, and when the thread exits. Threads allocating at one site
/// would otherwise bounce its totals' cache line on every allocation.
struct Pending {
    id: Cell<StackId>,
    /// The session generation the deltas belong to: deltas from before a
    /// `clear_traces` are dropped, not added to the cleared totals.
    generation: Cell<u64>,
    events: Cell<u32>,
    allocs: Cell<u64>,
    frees: Cell<u64>,
    bytes: Cell<u64>,
    live: Cell<i64>,
    blocks: Cell<i64>,
    /// The highest `live` reached since the last flush (0, the start,
    /// included), and `blocks` then.
    peak: Cell<i64>,
    peak_blocks: Cell<i64>,
    time: Cell<u64>,
}

impl Pending {
    // A template, copied into each slot (and into a batch made on the
    // spot): never shared.
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Pending = Pending {
        id: Cell::new(EMPTY),
        generation: Cell::new(0),
        events: Cell::new(0),
        allocs: Cell::new(0),
        frees: Cell::new(0),
        bytes: Cell::new(0),
        live: Cell::new(0),
        blocks: Cell::new(0),
        peak: Cell::new(0),
        peak_blocks: Cell::new(0),
        time: Cell::new(0),
    };

    /// Adds `e` to the batch.
    #[inline(always)]
    fn add(&self, e: &Event) {
        self.allocs.set(self.allocs.get() + e.allocs);
        self.frees.set(self.frees.get() + e.frees);
        self.bytes.set(self.bytes.get() + e.bytes);
        self.live.set(self.live.get() + e.live);
        self.blocks.set(self.blocks.get() + e.blocks);
        self.time.set(self.time.get().wrapping_add(e.time));
        if self.live.get() > self.peak.get() {
            self.peak.set(self.live.get());
            self.peak_blocks.set(self.blocks.get());
        }
        self.events.set(self.events.get() + 1);
    }
}

/// One traced event's change to its stack's totals.
struct Event {
    allocs: u64,
    frees: u64,
    bytes: u64,
    live: i64,
    blocks: i64,
    time: u64,
}

const BATCH_SLOTS: usize = 8;
const BATCH_EVENTS: u32 = 64;
const BATCH_BYTES: i64 = 64 * 1024;

thread_local! {
    static PENDING: [Pending; BATCH_SLOTS] = const { [Pending::EMPTY; BATCH_SLOTS] };
}

/// Adds a batch to its stack's shared totals (if still of this generation),
/// and empties it.
// Out of line: its two calls would make `add`, which runs on every traced
// event, too big to inline.
#[inline(never)]
fn flush(p: &Pending) {
    if p.events.replace(0) == 0 {
        return;
    }
    let (allocs, frees, bytes, live, blocks, peak, peak_blocks, time) = (
        p.allocs.replace(0),
        p.frees.replace(0),
        p.bytes.replace(0),
        p.live.replace(0),
        p.blocks.replace(0),
        p.peak.replace(0),
        p.peak_blocks.replace(0),
        p.time.replace(0),
    );
    if p.generation.get() != super::state::current().generation() {
        return;
    }
    if let Some(r) = record(p.id.get()) {
        let t = &r.totals;
        t.allocs.fetch_add(allocs, Relaxed);
        t.frees.fetch_add(frees, Relaxed);
        t.bytes.fetch_add(bytes, Relaxed);
        t.time.fetch_add(time, Relaxed);
        // The batch's own high point, on top of the shared value it started
        // from: exact for one thread, within the batches of the others.
        let before = t.live_bytes.fetch_add(live, Relaxed);
        let before_blocks = t.live_blocks.fetch_add(blocks, Relaxed);
        let high = before + peak;
        if high > t.peak_live_bytes.load(Relaxed)
            && t.peak_live_bytes.fetch_max(high, Relaxed) < high
        {
            t.peak_live_blocks
                .store(before_blocks + peak_blocks, Relaxed);
        }
    }
}

/// Records an event at `id` in this thread's batch.
#[inline]
fn add(id: StackId, generation: u64, e: Event) {
    let batched = PENDING.try_with(|slots| {
        let p = &slots[id as usize % BATCH_SLOTS];
        if p.id.get() != id || p.generation.get() != generation {
            flush(p);
            p.id.set(id);
            p.generation.set(generation);
        }
        p.add(&e);
        if p.events.get() >= BATCH_EVENTS || p.live.get().abs() > BATCH_BYTES {
            flush(p);
        }
    });
    if batched.is_err() {
        let p = Pending::EMPTY;
        p.id.set(id);
        p.generation.set(generation);
        p.add(&e);
        flush(&p);
    }
}

/// How many blocks, and how many bytes, a traced block of `size` bytes
/// stands for in `session`: itself, or in a sampled session the inverse of
/// its probability of being sampled (rounded; at least the block itself).
#[inline]
fn weights(size: usize, session: Session) -> (u64, u64) {
    if session.mode() != super::state::SAMPLED {
        return (1, size as u64);
    }
    let p = crate::sampling::probability(size, super::RATE.load(Relaxed)).max(f64::MIN_POSITIVE);
    let blocks = libm::round(1.0 / p).max(1.0) as u64;
    let bytes = libm::round(size as f64 / p).max(size as f64) as u64;
    (blocks, bytes)
}

/// A traced block of `size` bytes was allocated at `id` at time `now`, and
/// entered in the live table in `session`.
#[inline]
pub(crate) fn on_alloc(id: StackId, size: usize, session: Session, now: u64) {
    let (blocks, bytes) = weights(size, session);
    let e = Event {
        allocs: blocks,
        frees: 0,
        bytes,
        live: bytes as i64,
        blocks: blocks as i64,
        time: blocks.wrapping_mul(now).wrapping_neg(),
    };
    add(id, session.generation(), e);
}

/// A traced block of `size` bytes allocated at `id` was taken out of the live
/// table in `session` at time `now`.
#[inline]
pub(crate) fn on_free(id: StackId, size: usize, session: Session, now: u64) {
    let (blocks, bytes) = weights(size, session);
    let e = Event {
        allocs: 0,
        frees: blocks,
        bytes: 0,
        live: -(bytes as i64),
        blocks: -(blocks as i64),
        time: blocks.wrapping_mul(now),
    };
    add(id, session.generation(), e);
}

/// Flushes this thread's batches (at thread exit; and before reading totals
/// in tests).
pub(crate) fn flush_thread() {
    let _ = PENDING.try_with(|slots| slots.iter().for_each(flush));
}

/// Records every stack's live figures as its figures at the traced peak
/// (this thread's batches flushed first).
pub(crate) fn record_peak() {
    flush_thread();
    for_each_totals(|t| {
        t.at_peak_bytes.store(t.live_bytes.load(Relaxed), Relaxed);
        t.at_peak_blocks.store(t.live_blocks.load(Relaxed), Relaxed);
    });
}

/// Restarts the counts at time `now`, keeping the live blocks: allocations,
/// frees and bytes to zero, each stack's most and at-peak figures to its
/// live ones, lifetimes counted from `now` (this thread's batches flushed
/// first).
pub(crate) fn restart_counts(now: u64) {
    flush_thread();
    for_each_totals(|t| {
        let (live, blocks) = (t.live_bytes.load(Relaxed), t.live_blocks.load(Relaxed));
        t.allocs.store(0, Relaxed);
        t.frees.store(0, Relaxed);
        t.bytes.store(0, Relaxed);
        t.peak_live_bytes.store(live, Relaxed);
        t.peak_live_blocks.store(blocks, Relaxed);
        t.at_peak_bytes.store(live, Relaxed);
        t.at_peak_blocks.store(blocks, Relaxed);
        t.time
            .store((blocks as u64).wrapping_mul(now).wrapping_neg(), Relaxed);
    });
}

fn for_each_totals(mut f: impl FnMut(&Totals)) {
    for id in 0..count() {
        if let Some(r) = record(id as StackId) {
            f(&r.totals);
        }
    }
}

/// Zeroes every stack's totals (for `clear_traces` and `stop`).
pub(crate) fn reset_totals() {
    for_each_totals(|t| {
        for a in [&t.allocs, &t.frees, &t.bytes, &t.time] {
            a.store(0, Relaxed);
        }
        for a in [
            &t.live_bytes,
            &t.live_blocks,
            &t.peak_live_bytes,
            &t.peak_live_blocks,
            &t.at_peak_bytes,
            &t.at_peak_blocks,
        ] {
            a.store(0, Relaxed);
        }
    });
}

/// Takes every index lock into `held` (before `fork()`).
pub(crate) fn hold_all(_g: &Guard, held: &mut Held) {
    for s in &INDEX {
        held.push(Box::new(lock(s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id up to the limit has one place, chunk after chunk, each
    /// chunk filled from 0 to its length.
    #[test]
    fn ids_fill_chunks_in_order() {
        let mut expected = (0, 0);
        for id in 0..MAX_STACKS {
            let (chunk, i, len) = chunk_of(id);
            assert_eq!((chunk, i), expected, "id {id}");
            assert!(i < len && len <= CHUNK);
            expected = if i + 1 == len {
                (chunk + 1, 0)
            } else {
                (chunk, i + 1)
            };
        }
        assert_eq!(expected, (MAX_CHUNKS, 0));
        assert_eq!(chunk_of(0).2, FIRST_CHUNK);
    }

    #[test]
    fn same_frames_same_id_and_totals() {
        let a = intern(&Guard::hold(), &[1, 2, 3, 0xdead_0001]).unwrap();
        let b = intern(&Guard::hold(), &[1, 2, 3, 0xdead_0002]).unwrap();
        assert_ne!(a, b);
        assert_eq!(intern(&Guard::hold(), &[1, 2, 3, 0xdead_0001]), Some(a));
        assert_eq!(record(a).unwrap().frames(), &[1, 2, 3, 0xdead_0001]);
        let now = super::super::state::current();
        on_alloc(b, 100, now, 10);
        on_alloc(b, 50, now, 20);
        on_free(b, 100, now, 50);
        flush_thread();
        let r = record(b).unwrap();
        assert_eq!(r.totals.allocs.load(Relaxed), 2);
        assert_eq!(r.totals.frees.load(Relaxed), 1);
        assert_eq!(r.totals.live_bytes.load(Relaxed), 50);
        assert_eq!(r.totals.peak_live_bytes.load(Relaxed), 150);
        assert_eq!(r.totals.live_blocks.load(Relaxed), 1);
        assert_eq!(r.totals.peak_live_blocks.load(Relaxed), 2);
        // Lifetimes: 50 - 10 for the freed block; the live one's, up to
        // time 70, is 70 - 20.
        let time = r.totals.time.load(Relaxed);
        assert_eq!(time.wrapping_add(70), 40 + 50);
    }

    #[test]
    fn many_stacks_from_many_threads_stay_distinct() {
        let ids: Vec<Vec<StackId>> = (0..4usize)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..2000usize)
                        .map(|i| intern(&Guard::hold(), &[0xbeef_0000 + i, 7, t % 2]).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        // Threads 0 and 2 (and 1 and 3) interned the same stacks.
        assert_eq!(ids[0], ids[2]);
        assert_eq!(ids[1], ids[3]);
        let mut all: Vec<StackId> = ids[0].iter().chain(&ids[1]).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
        for (i, &id) in ids[1].iter().enumerate() {
            assert_eq!(record(id).unwrap().frames(), &[0xbeef_0000 + i, 7, 1]);
        }
    }
}
