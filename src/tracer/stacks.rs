//! Interned stacks: each distinct captured stack is stored once and named by
//! a [`StackId`], with its running totals.
//!
//! ```text
//! CHUNKS[id / CHUNK][id % CHUNK]   StackRecord: written once (its frames,
//!                                  under the INDEX shard lock that assigns
//!                                  the id), read without a lock; never freed
//!   frames                         OnceLock<Box<[usize]>>: return addresses
//!   allocs, frees, bytes,          atomics: the stack's totals, updated by
//!   live_bytes, peak_live_bytes    every traced allocation and free
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

use super::{lock, Held};

pub(crate) type StackId = u32;

const CHUNK: usize = 1024;
const MAX_CHUNKS: usize = 16 * 1024;
/// At most this many distinct stacks (16 M); past it new stacks go untraced.
pub(crate) const MAX_STACKS: usize = CHUNK * MAX_CHUNKS;
const INDEX_SHARDS: usize = 16;

/// Bytes of the table's static parts.
pub(crate) const STATIC_BYTES: usize =
    std::mem::size_of::<[OnceLock<Box<[StackRecord]>>; MAX_CHUNKS]>()
        + std::mem::size_of::<[Mutex<IndexShard>; INDEX_SHARDS]>();

/// One interned stack and its totals.
#[derive(Default)]
pub(crate) struct StackRecord {
    frames: OnceLock<Box<[usize]>>,
    /// Traced blocks allocated at this stack.
    pub(crate) allocs: AtomicU64,
    /// Traced blocks allocated here and since freed.
    pub(crate) frees: AtomicU64,
    /// Bytes of the traced blocks allocated here.
    pub(crate) bytes: AtomicU64,
    /// Bytes in this stack's live traced blocks.
    pub(crate) live_bytes: AtomicI64,
    /// The highest `live_bytes` reached.
    pub(crate) peak_live_bytes: AtomicI64,
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
    let id = id as usize;
    CHUNKS.get(id / CHUNK)?.get()?.get(id % CHUNK)
}

/// How many ids have been assigned (some may still be being written).
pub(crate) fn count() -> usize {
    (NEXT_ID.load(Acquire) as usize).min(MAX_STACKS)
}

/// A fast hash of a stack.
#[inline]
fn hash(frames: &[usize]) -> u64 {
    let mut h = frames.len() as u64;
    for &f in frames {
        h = (h.rotate_left(5) ^ f as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h ^ (h >> 29)
}

/// The id of `frames`, interning them if new; `None` when the table is full.
///
/// Must run under the reentrancy guard: a new stack allocates.
#[inline]
pub(crate) fn intern(frames: &[usize]) -> Option<StackId> {
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
    let id = intern_locked(h, frames)?;
    let _ = CACHE.try_with(|c| c[slot].set((h, id)));
    Some(id)
}

fn intern_locked(h: u64, frames: &[usize]) -> Option<StackId> {
    let mut shard = lock(&INDEX[(h >> 56) as usize % INDEX_SHARDS]);
    if shard.slots.is_empty() {
        shard.slots = vec![(0, EMPTY); 64];
    }
    let mask = shard.slots.len() - 1;
    let mut i = h as usize & mask;
    loop {
        let (sh, id) = shard.slots[i];
        if id == EMPTY {
            break;
        }
        if sh == h && record(id).is_some_and(|r| r.frames() == frames) {
            return Some(id);
        }
        i = (i + 1) & mask;
    }
    // New stack: assign the next id and write its record before anyone can
    // learn the id.
    let id = NEXT_ID.fetch_add(1, AcqRel);
    if id as usize >= MAX_STACKS {
        NEXT_ID.store(MAX_STACKS as u32, Relaxed);
        return None;
    }
    let chunk = CHUNKS[id as usize / CHUNK]
        .get_or_init(|| (0..CHUNK).map(|_| StackRecord::default()).collect());
    let _ = chunk[id as usize % CHUNK].frames.set(frames.into());
    shard.slots[i] = (h, id);
    shard.len += 1;
    if shard.len * 4 > shard.slots.len() * 3 {
        grow(&mut shard);
    }
    Some(id)
}

fn grow(shard: &mut IndexShard) {
    let old = std::mem::take(&mut shard.slots);
    let mut slots = vec![(0, EMPTY); old.len() * 2];
    let mask = slots.len() - 1;
    for (h, id) in old.into_iter().filter(|&(_, id)| id != EMPTY) {
        let mut i = h as usize & mask;
        while slots[i].1 != EMPTY {
            i = (i + 1) & mask;
        }
        slots[i] = (h, id);
    }
    shard.slots = slots;
}

/// A traced block of `size` bytes was allocated at `id`.
#[inline]
pub(crate) fn on_alloc(id: StackId, size: usize) {
    if let Some(r) = record(id) {
        r.allocs.fetch_add(1, Relaxed);
        r.bytes.fetch_add(size as u64, Relaxed);
        let live = r.live_bytes.fetch_add(size as i64, Relaxed) + size as i64;
        if live > r.peak_live_bytes.load(Relaxed) {
            r.peak_live_bytes.fetch_max(live, Relaxed);
        }
    }
}

/// A traced block of `size` bytes allocated at `id` was freed.
#[inline]
pub(crate) fn on_free(id: StackId, size: usize) {
    if let Some(r) = record(id) {
        r.frees.fetch_add(1, Relaxed);
        r.live_bytes.fetch_sub(size as i64, Relaxed);
    }
}

/// Zeroes every stack's totals (for `clear_traces` and `stop`).
pub(crate) fn reset_totals() {
    for id in 0..count() {
        if let Some(r) = record(id as StackId) {
            r.allocs.store(0, Relaxed);
            r.frees.store(0, Relaxed);
            r.bytes.store(0, Relaxed);
            r.live_bytes.store(0, Relaxed);
            r.peak_live_bytes.store(0, Relaxed);
        }
    }
}

/// Takes every index lock into `held` (before `fork()`).
pub(crate) fn hold_all(held: &mut Held) {
    for s in &INDEX {
        held.push(Box::new(lock(s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_frames_same_id_and_totals() {
        let a = intern(&[1, 2, 3, 0xdead_0001]).unwrap();
        let b = intern(&[1, 2, 3, 0xdead_0002]).unwrap();
        assert_ne!(a, b);
        assert_eq!(intern(&[1, 2, 3, 0xdead_0001]), Some(a));
        assert_eq!(record(a).unwrap().frames(), &[1, 2, 3, 0xdead_0001]);
        on_alloc(b, 100);
        on_alloc(b, 50);
        on_free(b, 100);
        let r = record(b).unwrap();
        assert_eq!(r.allocs.load(Relaxed), 2);
        assert_eq!(r.frees.load(Relaxed), 1);
        assert_eq!(r.live_bytes.load(Relaxed), 50);
        assert_eq!(r.peak_live_bytes.load(Relaxed), 150);
    }

    #[test]
    fn many_stacks_from_many_threads_stay_distinct() {
        let ids: Vec<Vec<StackId>> = (0..4usize)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..2000usize)
                        .map(|i| intern(&[0xbeef_0000 + i, 7, t % 2]).unwrap())
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
