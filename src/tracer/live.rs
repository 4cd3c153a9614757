//! The live-block table: address -> (size, stack id) for every traced block
//! not yet freed.
//!
//! ```text
//! SHARDS[shard_of(addr)]   Mutex<LiveMap>, one per 128-byte line. Blocks of
//!                          one 64 KiB region share a shard, so threads, which
//!                          allocate from their own arenas, rarely meet on one.
//!   slots                  open addressing, linear probing, backward-shift
//!                          deletion; 16 bytes a block: addr, size (u32), stack
//!   huge                   the real sizes of blocks of 4 GiB and more
//!   bytes                  the traced bytes in this shard
//!   generation             the tracing session the entries belong to
//! MAYBE[(addr >> 5) % LEN] counting filter (sampling sessions only): zero
//!                          means "no traced block here", so most frees skip
//!                          the lock; counts saturate (and then stay) at 255.
//!                          Mapped directly, not hashed: neighbouring blocks
//!                          share cache lines of it
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::*};

use std::sync::Mutex;

use super::{lock, Held};

use super::stacks::StackId;

const SHARDS: usize = 64;
const FILTER_LEN: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    addr: usize,
    size: u32,
    stack: StackId,
}

const VACANT: Entry = Entry {
    addr: 0,
    size: 0,
    stack: 0,
};
const HUGE: u32 = u32::MAX;

/// One traced block, as taken out of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) size: usize,
    pub(crate) stack: StackId,
}

struct LiveMap {
    slots: Vec<Entry>,
    len: usize,
    huge: Vec<(usize, usize)>,
    bytes: u64,
}

#[repr(align(128))]
struct Shard(Mutex<LiveMap>);

static SHARDS_: [Shard; SHARDS] = [const {
    Shard(Mutex::new(LiveMap {
        slots: Vec::new(),
        len: 0,
        huge: Vec::new(),
        bytes: 0,
    }))
}; SHARDS];

static MAYBE: [AtomicU8; FILTER_LEN] = [const { AtomicU8::new(0) }; FILTER_LEN];
/// Whether inserts and removes keep [`MAYBE`] (set for sampling sessions).
static FILTERED: AtomicU32 = AtomicU32::new(0);
/// Bumped by every `clear`: an insert prepared under an older value is dropped.
pub(crate) static GENERATION: AtomicU64 = AtomicU64::new(0);

#[inline]
fn mix(x: usize) -> u64 {
    (x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline]
fn shard_of(addr: usize) -> &'static Mutex<LiveMap> {
    &SHARDS_[(mix(addr >> 16) >> 58) as usize % SHARDS].0
}

#[inline(always)]
fn filter_slot(addr: usize) -> &'static AtomicU8 {
    &MAYBE[(addr >> 5) % FILTER_LEN]
}

const SATURATED: u8 = u8::MAX;

impl LiveMap {
    #[inline]
    fn home(&self, addr: usize) -> usize {
        (mix(addr >> 4) >> 32) as usize & (self.slots.len() - 1)
    }

    fn find(&self, addr: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        loop {
            let e = self.slots[i];
            if e.addr == addr {
                return Some(i);
            }
            if e.addr == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    fn size_of(&self, e: &Entry) -> usize {
        if e.size == HUGE {
            self.huge
                .iter()
                .find(|&&(a, _)| a == e.addr)
                .map_or(HUGE as usize, |&(_, s)| s)
        } else {
            e.size as usize
        }
    }

    fn insert(&mut self, addr: usize, size: usize, stack: StackId) {
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            self.grow();
        }
        let size32 = if size >= HUGE as usize {
            self.huge.push((addr, size));
            HUGE
        } else {
            size as u32
        };
        let e = Entry {
            addr,
            size: size32,
            stack,
        };
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        while self.slots[i].addr != 0 {
            if self.slots[i].addr == addr {
                // The allocator handed out an address we still hold: the old
                // block was freed untraced (e.g. while tracing toggled).
                let old = self.slots[i];
                self.bytes -= self.size_of(&old) as u64;
                self.forget_huge(&old);
                self.slots[i] = e;
                self.bytes += size as u64;
                return;
            }
            i = (i + 1) & mask;
        }
        self.slots[i] = e;
        self.len += 1;
        self.bytes += size as u64;
    }

    fn forget_huge(&mut self, e: &Entry) {
        if e.size == HUGE {
            if let Some(k) = self.huge.iter().position(|&(a, _)| a == e.addr) {
                self.huge.swap_remove(k);
            }
        }
    }

    fn remove(&mut self, addr: usize) -> Option<Block> {
        let mut i = self.find(addr)?;
        let e = self.slots[i];
        let size = self.size_of(&e);
        self.forget_huge(&e);
        // Backward-shift deletion: pull later entries of the probe run back.
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let next = self.slots[j];
            if next.addr == 0 {
                break;
            }
            let home = self.home(next.addr);
            // `next` may move to `i` if its home is not in (i, j].
            let dist_ij = j.wrapping_sub(i) & mask;
            let dist_hj = j.wrapping_sub(home) & mask;
            if dist_hj >= dist_ij {
                self.slots[i] = next;
                i = j;
            }
        }
        self.slots[i] = VACANT;
        self.len -= 1;
        self.bytes -= size as u64;
        Some(Block {
            size,
            stack: e.stack,
        })
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![VACANT; cap]);
        let mask = cap - 1;
        for e in old.into_iter().filter(|e| e.addr != 0) {
            let mut i = self.home(e.addr);
            while self.slots[i].addr != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = e;
        }
    }

    fn clear(&mut self) {
        *self = LiveMap {
            slots: Vec::new(),
            len: 0,
            huge: Vec::new(),
            bytes: 0,
        };
    }
}

/// Records a traced block, unless the table was cleared since `generation`
/// was read (or `filtered` sessions ended). Returns whether it was recorded.
/// Must run under the reentrancy guard (the table may grow).
#[inline]
pub(crate) fn insert(addr: usize, size: usize, stack: StackId, generation: u64) -> bool {
    let mut map = lock(shard_of(addr));
    if GENERATION.load(Acquire) != generation {
        return false;
    }
    map.insert(addr, size, stack);
    if FILTERED.load(Relaxed) != 0 {
        let _ =
            filter_slot(addr).fetch_update(Relaxed, Relaxed, |v| (v < SATURATED).then_some(v + 1));
    }
    true
}

/// False when `addr` is surely not traced (sampling sessions keep the
/// counting filter); true when it may be.
#[inline(always)]
pub(crate) fn maybe_traced(addr: usize) -> bool {
    FILTERED.load(Relaxed) == 0 || filter_slot(addr).load(Relaxed) != 0
}

/// Takes the block at `addr` out of the table, if it is traced.
#[inline]
pub(crate) fn remove(addr: usize) -> Option<Block> {
    let filtered = FILTERED.load(Relaxed) != 0;
    if filtered && filter_slot(addr).load(Relaxed) == 0 {
        return None;
    }
    let block = lock(shard_of(addr)).remove(addr)?;
    if filtered {
        let _ = filter_slot(addr).fetch_update(Relaxed, Relaxed, |v| {
            (v > 0 && v < SATURATED).then(|| v - 1)
        });
    }
    Some(block)
}

/// The traced block at `addr`, if any.
pub(crate) fn get(addr: usize) -> Option<Block> {
    let map = lock(shard_of(addr));
    let i = map.find(addr)?;
    let e = map.slots[i];
    Some(Block {
        size: map.size_of(&e),
        stack: e.stack,
    })
}

/// Drops every entry and starts a new generation; `filtered` says whether the
/// next session keeps the counting filter. Must run under the reentrancy guard.
pub(crate) fn clear(filtered: bool) {
    // Bumped before and after: an insert prepared before the clear, or while
    // it runs, is dropped or wiped.
    GENERATION.fetch_add(1, AcqRel);
    FILTERED.store(0, Relaxed);
    for s in &SHARDS_ {
        let mut map = lock(&s.0);
        map.clear();
    }
    for f in &MAYBE {
        f.store(0, Relaxed);
    }
    FILTERED.store(filtered as u32, Relaxed);
    GENERATION.fetch_add(1, AcqRel);
}

/// Bytes of the table's static parts (shard headers and the filter).
pub(crate) const STATIC_BYTES: usize =
    std::mem::size_of::<[Shard; SHARDS]>() + std::mem::size_of::<[AtomicU8; FILTER_LEN]>();

/// Total traced bytes and blocks now.
pub(crate) fn totals() -> (u64, usize) {
    SHARDS_.iter().fold((0, 0), |(b, n), s| {
        let map = lock(&s.0);
        (b + map.bytes, n + map.len)
    })
}

/// Calls `f(size, stack)` for every traced block, one shard at a time: each
/// shard's lock is held while its blocks are visited, so `f` must not
/// allocate outside the guard nor take a shard lock.
pub(crate) fn for_each(mut f: impl FnMut(usize, StackId)) {
    for s in &SHARDS_ {
        let map = lock(&s.0);
        for e in map.slots.iter().filter(|e| e.addr != 0) {
            f(map.size_of(e), e.stack);
        }
    }
}

/// Takes every shard lock into `held` (before `fork()`).
pub(crate) fn hold_all(held: &mut Held) {
    for s in &SHARDS_ {
        held.push(Box::new(lock(&s.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn empty() -> LiveMap {
        LiveMap {
            slots: Vec::new(),
            len: 0,
            huge: Vec::new(),
            bytes: 0,
        }
    }

    /// The map against a `HashMap` reference, through a long random sequence
    /// of inserts and removes over a small address space (many collisions).
    #[test]
    fn map_matches_a_reference() {
        let mut map = empty();
        let mut reference: HashMap<usize, (usize, StackId)> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr = 16 * (1 + (x % 3000) as usize);
            let size = if x.is_multiple_of(1000) {
                5 << 30
            } else {
                (x >> 20) as usize % 5000 + 1
            };
            if x.is_multiple_of(3) {
                assert_eq!(
                    map.remove(addr).map(|b| (b.size, b.stack)),
                    reference.remove(&addr),
                    "step {step}"
                );
            } else if let std::collections::hash_map::Entry::Vacant(v) = reference.entry(addr) {
                v.insert((size, step));
                map.insert(addr, size, step);
            }
            assert_eq!(map.len, reference.len());
        }
        assert_eq!(
            map.bytes,
            reference.values().map(|v| v.0 as u64).sum::<u64>()
        );
        for (&addr, &(size, stack)) in &reference {
            let i = map.find(addr).unwrap();
            assert_eq!(map.size_of(&map.slots[i]), size);
            assert_eq!(map.slots[i].stack, stack);
        }
    }
}
