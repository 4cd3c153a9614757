//! The tracing session's state: one word, changed in one place. The states
//! and their transitions are drawn in `src/session.rs`, the module of the
//! entry points that make them.
//!
//! ```text
//! SESSION   AtomicU64: mode in the low two bits (OFF, ALL, SAMPLED), the
//!           generation above them; read with one relaxed load on every
//!           allocator event
//! ```
//!
//! Every transition bumps the generation and is made by
//! [`live::transition`](super::live::transition): under the control lock,
//! with **every** shard of the live table locked, in the same critical
//! section that empties the table and its counting filter. Every change to
//! the table (insert, remove, a filter count) is made under one shard lock
//! and checks, under that lock, the session it was prepared in: an insert
//! prepared in another session is dropped. So the table and its filter
//! always belong to exactly one session, the current one; no event can land
//! half in one session and half in the next.
//!
//! A forked child inherits the state and the tables as they were (every
//! tracer lock is held across `fork()`), and goes on tracing.

use std::sync::atomic::{AtomicU64, Ordering::*};

/// A session state: mode and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Session(u64);

/// Not tracing.
pub(crate) const OFF: u64 = 0;
/// Tracing every block.
pub(crate) const ALL: u64 = 1;
/// Tracing a Poisson sample of the bytes.
pub(crate) const SAMPLED: u64 = 2;

const MODE_BITS: u32 = 2;
const MODE_MASK: u64 = (1 << MODE_BITS) - 1;

static SESSION: AtomicU64 = AtomicU64::new(OFF);

impl Session {
    /// OFF, ALL or SAMPLED.
    #[inline(always)]
    pub(crate) fn mode(self) -> u64 {
        self.0 & MODE_MASK
    }

    /// Whether blocks are being traced.
    #[inline(always)]
    pub(crate) fn is_on(self) -> bool {
        self.mode() != OFF
    }

    /// Whether this session samples (and so keeps the counting filter).
    #[inline(always)]
    pub(crate) fn sampled(self) -> bool {
        self.mode() == SAMPLED
    }

    /// The generation: different for every session and every clear.
    #[inline(always)]
    pub(crate) fn generation(self) -> u64 {
        self.0 >> MODE_BITS
    }
}

/// The current state: one relaxed load. Under a shard lock of the live
/// table it cannot change until the lock is released.
#[inline(always)]
pub(crate) fn current() -> Session {
    Session(SESSION.load(Relaxed))
}

/// Proof that the caller holds every shard lock of the live table: the only
/// way to change the state.
pub(crate) struct AllShardsLocked(pub(super) ());

/// Moves to `mode` with a new generation; returns the new state.
pub(crate) fn advance(_locked: &AllShardsLocked, mode: u64) -> Session {
    let old = current();
    let new = Session(((old.generation() + 1) << MODE_BITS) | (mode & MODE_MASK));
    SESSION.store(new.0, Release);
    new
}
