//! The live-block table: address -> (size, stack id) for every traced block
//! not yet freed.
//!
//! ```text
//! SHARDS[shard_of(addr)]   Mutex<LiveMap>, one per 128-byte line. Blocks of
//!                          one 64 KiB region share a shard, so threads, which
//!                          allocate from their own arenas, rarely meet on one.
//!   slots                  open addressing, Robin Hood linear probing,
//!                          backward-shift deletion; 16 bytes a block: addr,
//!                          size (u32), stack. Homes keep address order within
//!                          1 KiB windows (see `home_in`): neighbours in memory
//!                          are neighbours in the table
//!   huge                   the real sizes of blocks of 4 GiB and more
//!   bytes                  the traced bytes in this shard
//!   table, mask            where `slots` is, for lock-free prefetch hints
//! MAYBE[(addr >> 5) % LEN] counting filter (sampling sessions only): zero
//!                          means "no traced block here", so most frees skip
//!                          the lock; counts saturate (and then stay) at 255.
//!                          Mapped directly, not hashed: neighbouring blocks
//!                          share cache lines of it. Changed only under the
//!                          shard lock of the block counted
//! ```
//!
//! The table belongs to one session at a time (see [`super::state`]):
//! [`transition`] empties it and moves to the next session with every shard
//! locked, and each insert, remove and filter change checks the session
//! under its shard's lock.
//!
//! The table's memory comes from the inner allocator, under the reentrancy
//! guard, and may be refused: an insert that would need more memory than it
//! can get is refused ([`Insert::NoMemory`]), and the block goes untraced.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

use std::sync::Mutex;

use super::state::{self, AllShardsLocked, Session};
use super::{lock, Held};
use crate::guard::Guard;

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
struct Shard {
    map: Mutex<LiveMap>,
    /// The address and mask of `map.slots`, stored under the lock whenever
    /// they change and read without it by [`prefetch`]: a hint only, so a
    /// stale or torn pair costs a useless prefetch, nothing more.
    table: AtomicUsize,
    mask: AtomicUsize,
}

static SHARDS_: [Shard; SHARDS] = [const {
    Shard {
        map: Mutex::new(LiveMap {
            slots: Vec::new(),
            len: 0,
            huge: Vec::new(),
            bytes: 0,
        }),
        table: AtomicUsize::new(0),
        mask: AtomicUsize::new(0),
    }
}; SHARDS];

static MAYBE: [AtomicU8; FILTER_LEN] = [const { AtomicU8::new(0) }; FILTER_LEN];

#[inline]
fn mix(x: usize) -> u64 {
    (x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline]
fn shard_of(addr: usize) -> &'static Shard {
    &SHARDS_[(mix(addr >> 16) >> 58) as usize % SHARDS]
}

/// The slot where the search for `addr` starts in a table of `mask + 1`
/// slots. Blocks of one 1 KiB stretch of addresses start in one window of 64
/// slots, in address order, so that blocks allocated or freed one after the
/// other (which glibc and most allocators place side by side) meet in the same
/// cache lines of the table; the windows themselves are spread by a hash.
#[inline(always)]
fn home_in(addr: usize, mask: usize) -> usize {
    let window = (mix(addr >> WINDOW_SHIFT) >> 32) as usize;
    window.wrapping_add((addr >> 4) & (WINDOW_SLOTS - 1)) & mask
}

/// Starts loading the table line where `addr` would go, so that the insert
/// that follows a stack capture finds it in the cache.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    let shard = shard_of(addr);
    let table = shard.table.load(Relaxed);
    if table != 0 {
        let home = home_in(addr, shard.mask.load(Relaxed));
        crate::sys::prefetch(table.wrapping_add(home * std::mem::size_of::<Entry>()));
    }
}

#[inline(always)]
fn filter_slot(addr: usize) -> &'static AtomicU8 {
    &MAYBE[(addr >> 5) % FILTER_LEN]
}

const WINDOW_SHIFT: u32 = 10;
const WINDOW_SLOTS: usize = 1 << (WINDOW_SHIFT - 4);

impl LiveMap {
    #[inline]
    fn home(&self, addr: usize) -> usize {
        home_in(addr, self.slots.len() - 1)
    }

    /// How far the entry in slot `i` sits from its home slot.
    #[inline]
    fn displacement(&self, i: usize) -> usize {
        i.wrapping_sub(self.home(self.slots[i].addr)) & (self.slots.len() - 1)
    }

    fn find(&self, addr: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        let mut d = 0;
        loop {
            let e = self.slots[i];
            if e.addr == addr {
                return Some(i);
            }
            // Robin Hood order: `addr` would sit before any entry nearer
            // its own home than `addr` is to its.
            if e.addr == 0 || self.displacement(i) < d {
                return None;
            }
            i = (i + 1) & mask;
            d += 1;
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

    // One caller each; kept inline there whatever else the codegen unit
    // holds (left to the optimizer, they moved in and out of line with
    // unrelated changes).
    //
    // Returns false, with the table unchanged, when the memory it needs is
    // refused.
    #[inline(always)]
    fn insert(&mut self, addr: usize, size: usize, stack: StackId) -> bool {
        if size >= HUGE as usize && self.huge.try_reserve(1).is_err() {
            return false;
        }
        // Grown before the search (one pass finds the address or its
        // place), so also in the rare case that the address is there.
        if (self.len + 1) * 5 > self.slots.len() * 4 && !self.grow() {
            return false;
        }
        let e = Entry {
            addr,
            size: if size >= HUGE as usize {
                HUGE
            } else {
                size as u32
            },
            stack,
        };
        match self.put(e) {
            Some(old) => {
                // The allocator handed out an address we still hold: the
                // old block was freed untraced (e.g. while tracing toggled).
                self.bytes -= self.size_of(&old) as u64;
                self.forget_huge(&old);
            }
            None => self.len += 1,
        }
        if size >= HUGE as usize {
            self.huge.push((addr, size));
        }
        self.bytes += size as u64;
        true
    }

    /// Puts `e` in its place in one pass: over the entry of the same
    /// address, which is returned, or else in Robin Hood order (see
    /// [`place`](Self::place)): an entry of that address would stand before
    /// the first entry nearer its home than `e` is to its.
    #[inline(always)]
    fn put(&mut self, mut e: Entry) -> Option<Entry> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(e.addr);
        let mut d = 0;
        loop {
            let there = self.slots[i];
            if there.addr == 0 {
                self.slots[i] = e;
                return None;
            }
            if there.addr == e.addr {
                self.slots[i] = e;
                return Some(there);
            }
            let dt = self.displacement(i);
            if dt < d {
                self.slots[i] = e;
                e = there;
                d = dt;
                break;
            }
            i = (i + 1) & mask;
            d += 1;
        }
        // `e` is now the displaced entry: on along the run, as `place` goes.
        self.place_from(e, (i + 1) & mask, d + 1);
        None
    }

    /// Puts `e`, whose address is not in the table, in Robin Hood order:
    /// along a probe run, entries stand in the order of their home slots, so
    /// an entry that is farther from its home takes the slot of one nearer.
    fn place(&mut self, e: Entry) {
        self.place_from(e, self.home(e.addr), 0);
    }

    /// [`place`](Self::place) from slot `i`, `d` slots past `e`'s home.
    #[inline(always)]
    fn place_from(&mut self, mut e: Entry, mut i: usize, mut d: usize) {
        let mask = self.slots.len() - 1;
        while self.slots[i].addr != 0 {
            let there = self.displacement(i);
            if there < d {
                std::mem::swap(&mut e, &mut self.slots[i]);
                d = there;
            }
            i = (i + 1) & mask;
            d += 1;
        }
        self.slots[i] = e;
    }

    fn forget_huge(&mut self, e: &Entry) {
        if e.size == HUGE {
            if let Some(k) = self.huge.iter().position(|&(a, _)| a == e.addr) {
                self.huge.swap_remove(k);
            }
        }
    }

    #[inline(always)]
    fn remove(&mut self, addr: usize) -> Option<Block> {
        let mut i = self.find(addr)?;
        let e = self.slots[i];
        let size = self.size_of(&e);
        self.forget_huge(&e);
        // Backward-shift deletion: the entries after `i` that are away from
        // their home move back one slot, up to the first that is at home.
        let mask = self.slots.len() - 1;
        loop {
            let j = (i + 1) & mask;
            if self.slots[j].addr == 0 || self.displacement(j) == 0 {
                break;
            }
            self.slots[i] = self.slots[j];
            i = j;
        }
        self.slots[i] = VACANT;
        self.len -= 1;
        self.bytes -= size as u64;
        Some(Block {
            size,
            stack: e.stack,
        })
    }

    /// Doubles the slots; false (and nothing changed) if the memory is
    /// refused.
    fn grow(&mut self) -> bool {
        let cap = (self.slots.len() * 2).max(64);
        let Some(slots) = super::try_filled(cap, VACANT) else {
            return false;
        };
        let old = std::mem::replace(&mut self.slots, slots);
        for e in old.into_iter().filter(|e| e.addr != 0) {
            self.place(e);
        }
        true
    }

    fn clear(&mut self) {
        // Dropping the slots frees them: under the guard, to the inner
        // allocator, which takes no lock of ours.
        *self = LiveMap {
            slots: Vec::new(),
            len: 0,
            huge: Vec::new(),
            bytes: 0,
        };
    }
}

/// What [`insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Recorded.
    Done,
    /// Not recorded: prepared in another session (the table was cleared,
    /// or tracing stopped, since).
    Stale,
    /// Not recorded: the table could not get the memory to grow.
    NoMemory,
}

/// Keeps the shard's prefetch hint in step with its slots.
fn publish(shard: &Shard, map: &LiveMap) {
    let (table, mask) = match map.slots.len() {
        0 => (0, 0),
        n => (map.slots.as_ptr() as usize, n - 1),
    };
    if shard.table.load(Relaxed) != table {
        shard.table.store(table, Relaxed);
        shard.mask.store(mask, Relaxed);
    }
}

/// Records a traced block, if `session` is still the current one, and then
/// runs `done` under the same lock (what must count in the session the
/// block went into, and not in the next). Must run under the reentrancy
/// guard (the table may grow).
#[inline]
pub(crate) fn insert(
    _g: &Guard,
    addr: usize,
    size: usize,
    stack: StackId,
    session: Session,
    done: impl FnOnce(),
) -> Insert {
    let shard = shard_of(addr);
    let mut map = lock(&shard.map);
    if state::current() != session {
        return Insert::Stale;
    }
    if !map.insert(addr, size, stack) {
        return Insert::NoMemory;
    }
    publish(shard, &map);
    if session.sampled() {
        super::filter_raise(filter_slot(addr));
    }
    done();
    Insert::Done
}

/// False when `addr` is surely not traced (sampling sessions keep the
/// counting filter); true when it may be.
#[inline(always)]
pub(crate) fn maybe_traced(addr: usize) -> bool {
    !state::current().sampled() || filter_slot(addr).load(Relaxed) != 0
}

/// Takes the block at `addr` out of the table, if it is traced, with the
/// session it belonged to; `done` runs under the same lock.
#[inline]
pub(crate) fn remove(
    _g: &Guard,
    addr: usize,
    done: impl FnOnce(&Block),
) -> Option<(Block, Session)> {
    if !maybe_traced(addr) {
        return None;
    }
    let mut map = lock(&shard_of(addr).map);
    let block = map.remove(addr)?;
    let session = state::current();
    if session.sampled() {
        super::filter_lower(filter_slot(addr));
    }
    done(&block);
    drop(map);
    Some((block, session))
}

/// The traced block at `addr`, if any.
pub(crate) fn get(_g: &Guard, addr: usize) -> Option<Block> {
    let map = lock(&shard_of(addr).map);
    let i = map.find(addr)?;
    let e = map.slots[i];
    Some(Block {
        size: map.size_of(&e),
        stack: e.stack,
    })
}

/// Ends the current session and begins one in `mode` (see
/// [`super::state`]): with every shard locked, drops every entry, empties
/// the filter, runs `also` (what belongs to the session with the table) and
/// moves the state on. Allocates nothing. Must run under the reentrancy
/// guard (the old slots are freed) and the control lock.
pub(crate) fn transition(_g: &Guard, mode: u64, also: impl FnOnce()) -> Session {
    /// Locks and empties shard `i`, then the ones after it, and at the
    /// bottom, with all of them held, the filter and the state; the locks
    /// are released on the way back.
    fn from(i: usize, mode: u64, also: &mut dyn FnMut()) -> Session {
        let Some(s) = SHARDS_.get(i) else {
            clear_filter();
            also();
            return state::advance(&AllShardsLocked(()), mode);
        };
        let mut map = lock(&s.map);
        map.clear();
        publish(s, &map);
        from(i + 1, mode, also)
    }
    let mut also = Some(also);
    from(0, mode, &mut || {
        if let Some(f) = also.take() {
            f()
        }
    })
}

fn clear_filter() {
    for f in &MAYBE {
        // Written only where set: a filter never used stays untouched (no
        // resident pages).
        if f.load(Relaxed) != 0 {
            f.store(0, Relaxed);
        }
    }
}

/// Bytes of the table's static parts (shard headers and the filter).
pub(crate) const STATIC_BYTES: usize =
    std::mem::size_of::<[Shard; SHARDS]>() + std::mem::size_of::<[AtomicU8; FILTER_LEN]>();

/// Total traced bytes and blocks now.
pub(crate) fn totals(_g: &Guard) -> (u64, usize) {
    SHARDS_.iter().fold((0, 0), |(b, n), s| {
        let map = lock(&s.map);
        (b + map.bytes, n + map.len)
    })
}

/// Calls `f(size, stack)` for every traced block, one shard at a time: each
/// shard's lock is held while its blocks are visited, so `f` must not
/// allocate outside the guard nor take a shard lock.
pub(crate) fn for_each(_g: &Guard, mut f: impl FnMut(usize, usize, StackId)) {
    for s in &SHARDS_ {
        let map = lock(&s.map);
        for e in map.slots.iter().filter(|e| e.addr != 0) {
            f(e.addr, map.size_of(e), e.stack);
        }
    }
}

/// Takes every shard lock into `held` (before `fork()`).
pub(crate) fn hold_all(_g: &Guard, held: &mut Held) {
    for s in &SHARDS_ {
        held.push(Box::new(lock(&s.map)));
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

    /// The map against a `HashMap` reference, through long random sequences
    /// of inserts and removes over small address spaces (many collisions):
    /// 16-byte blocks side by side, 8-byte ones (two per home slot), and
    /// blocks scattered over distant regions.
    #[test]
    fn map_matches_a_reference() {
        let spaces: [fn(u64) -> usize; 3] = [
            |x| 16 * (1 + (x % 3000) as usize),
            |x| 8 * (1 + (x % 3000) as usize),
            |x| ((x % 40) as usize) << 33 | (16 * (1 + (x >> 8) % 100) as usize),
        ];
        for (n, space) in spaces.into_iter().enumerate() {
            let mut map = empty();
            let mut reference: HashMap<usize, (usize, StackId)> = HashMap::new();
            let mut x = 0x1234_5678_9abc_def1u64;
            for step in 0..200_000u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let addr = space(x);
                let size = if x.is_multiple_of(1000) {
                    5 << 30
                } else {
                    (x >> 20) as usize % 5000 + 1
                };
                if x.is_multiple_of(3) {
                    assert_eq!(
                        map.remove(addr).map(|b| (b.size, b.stack)),
                        reference.remove(&addr),
                        "space {n}, step {step}"
                    );
                } else if x.is_multiple_of(7) {
                    // The address is handed out again while still traced.
                    reference.insert(addr, (size, step));
                    assert!(map.insert(addr, size, step));
                } else if let std::collections::hash_map::Entry::Vacant(v) = reference.entry(addr) {
                    v.insert((size, step));
                    assert!(map.insert(addr, size, step));
                }
                assert_eq!(map.len, reference.len(), "space {n}, step {step}");
            }
            assert_eq!(
                map.bytes,
                reference.values().map(|v| v.0 as u64).sum::<u64>()
            );
            assert_eq!(
                map.huge.len(),
                reference.values().filter(|v| v.0 >= HUGE as usize).count()
            );
            for (&addr, &(size, stack)) in &reference {
                let i = map.find(addr).unwrap();
                assert_eq!(map.size_of(&map.slots[i]), size);
                assert_eq!(map.slots[i].stack, stack);
            }
            // Robin Hood order holds: along a run, no entry is nearer its
            // home than the one before it is to its own, less one.
            for i in 0..map.slots.len() {
                let j = (i + 1) & (map.slots.len() - 1);
                if map.slots[i].addr != 0 && map.slots[j].addr != 0 {
                    assert!(map.displacement(j) <= map.displacement(i) + 1, "space {n}");
                }
            }
        }
    }
}
