//! The whole-run profile's clock and the traced peak's composition.
//!
//! ```text
//! BASE                 OnceLock<(Instant, ticks)>: when the clock was first
//!                      read; times are `sys::ticks()` (the time-stamp
//!                      counter on x86-64), turned into durations at a
//!                      reading by the rate measured since BASE
//! STARTED, STARTED_WALL when the session (or the profile's last restart)
//!                      began: tracer clock, and ns since the Unix epoch
//! NEXT                 AtomicI64: the traced total (pushed total plus the
//!                      calling thread's pending bytes) at which the peak
//!                      is due to be recorded again: 1/128 above the last
//!                      record
//! DUE                  AtomicBool: a traced allocation reached NEXT; the
//!                      next traced free (or reading) records the peak
//!                      before it takes anything away
//! RECORDED, AT         the total at the last record, and its time
//! LOCK                 Mutex: one record at a time
//! ```
//!
//! Recording copies every stack's live figures into its at-peak figures
//! (O(stacks)); the 1/128 step bounds how often that happens: about 128
//! times per doubling of the peak, so a program that grows by many small
//! steps, each followed by a free, does not pay it at every step.
//!
//! Exactness, on one thread: the record is of the state just before the
//! first free after the total rose past NEXT, so its total is within 1/128
//! of the traced peak (equal to it when the peak was reached in one step of
//! more than 1/128, as a big allocation does). With other threads
//! allocating, their running totals (at most 64 KiB each, see
//! [`crate::counters`]) and their per-stack batches (at most 64 KiB a stack,
//! 512 KiB a thread) may be missing from the record.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::*};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::{lock, stacks, Held};
use crate::guard::Guard;

static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
static STARTED: AtomicU64 = AtomicU64::new(0);
static STARTED_WALL: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicI64 = AtomicI64::new(1);
static DUE: AtomicBool = AtomicBool::new(false);
static RECORDED: AtomicI64 = AtomicI64::new(0);
static AT: AtomicU64 = AtomicU64::new(NEVER);
static LOCK: Mutex<()> = Mutex::new(());

const NEVER: u64 = u64::MAX;

/// The tracer's clock, in ticks (see [`span`]).
#[inline(always)]
pub(crate) fn now() -> u64 {
    crate::sys::ticks()
}

/// `ticks` of the clock as a duration, at the rate the clock has ticked
/// since it was first read (at the first session's start).
pub(crate) fn span(ticks: u64) -> Duration {
    let Some(&(since, first)) = BASE.get() else {
        return Duration::ZERO;
    };
    let (elapsed, counted) = (since.elapsed().as_nanos() as f64, now().wrapping_sub(first));
    let rate = if counted == 0 || elapsed == 0.0 {
        1.0
    } else {
        elapsed / counted as f64
    };
    Duration::from_nanos((ticks as f64 * rate) as u64)
}

/// A new session, or a restart of the profile: times from now, no peak
/// recorded (at-peak figures are then those of the live blocks, the traced
/// total `total`).
pub(crate) fn restart(total: i64, now: u64) {
    BASE.get_or_init(|| (Instant::now(), crate::sys::ticks()));
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    STARTED_WALL.store(wall, Relaxed);
    STARTED.store(now, Relaxed);
    RECORDED.store(total, Relaxed);
    NEXT.store(next_after(total), Relaxed);
    AT.store(if total > 0 { now } else { NEVER }, Relaxed);
    DUE.store(false, Relaxed);
}

fn next_after(total: i64) -> i64 {
    total
        .max(0)
        .saturating_add(total.max(0) / 128)
        .saturating_add(1)
}

/// A traced allocation brought the calling thread's estimate of the traced
/// total to `estimate`.
#[inline(always)]
pub(crate) fn rose_to(estimate: i64) {
    if estimate >= NEXT.load(Relaxed) && !DUE.load(Relaxed) {
        DUE.store(true, Relaxed);
    }
}

/// Before a traced block is taken away: records the peak if one is due.
/// Under the guard.
#[inline(always)]
pub(crate) fn before_free(g: &Guard, estimate: impl FnOnce() -> i64) {
    if DUE.load(Relaxed) {
        record(g, estimate());
    }
}

/// Records every stack's live figures as the peak's, if `estimate` (the
/// traced total as the calling thread sees it) is still past NEXT.
#[cold]
#[inline(never)]
pub(crate) fn record(_g: &Guard, estimate: i64) {
    let _l = lock(&LOCK);
    DUE.store(false, Relaxed);
    if estimate < NEXT.load(Relaxed) {
        return;
    }
    stacks::record_peak();
    // The total was reached: the traced peak is at least that (the
    // threads' pushes alone can miss up to 64 KiB of it).
    super::TRACED_PEAK.raise(estimate);
    RECORDED.store(estimate, Relaxed);
    NEXT.store(next_after(estimate), Relaxed);
    AT.store(now(), Relaxed);
}

/// When the session (or profile) started: (tracer clock, wall clock).
pub(crate) fn started() -> (u64, SystemTime) {
    (
        STARTED.load(Relaxed),
        SystemTime::UNIX_EPOCH + Duration::from_nanos(STARTED_WALL.load(Relaxed)),
    )
}

/// When the peak was last recorded (tracer clock), if ever.
pub(crate) fn recorded_at() -> Option<u64> {
    Some(AT.load(Relaxed)).filter(|&t| t != NEVER)
}

/// Takes the record lock into `held` (before `fork()`).
pub(crate) fn hold_all(_g: &Guard, held: &mut Held) {
    held.push(Box::new(lock(&LOCK)));
}
