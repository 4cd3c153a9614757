//! Faults while tracing: control calls racing the threads that allocate and
//! free, and an inner allocator that fails the tracer's own allocations.
//!
//! Tracing is process-wide, so the tests run one after another on the main
//! thread (`solo`). The inner allocator here fails, on a thread that armed
//! it, every allocation whose size is not the one the test asks for: the
//! test's own blocks succeed and everything the tracer allocates for its
//! tables fails.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use tracealloc::{
    object_traceback, start, stats, stop, take_snapshot, traced_memory, Config, TraceAlloc,
};

mod solo;

/// Forwards to `System`, except on a thread that set [`ONLY`] or
/// [`FROM`]: there it refuses (returns null for) every allocation of another
/// size, or of that size and more.
struct Faulty;

thread_local! {
    /// 0: no faults; n: only allocations of exactly n bytes succeed.
    static ONLY: Cell<usize> = const { Cell::new(0) };
    /// 0: no faults; n: allocations of n bytes or more fail.
    static FROM: Cell<usize> = const { Cell::new(0) };
}

static FAILED: AtomicUsize = AtomicUsize::new(0);

fn refused(size: usize) -> bool {
    let only = ONLY.try_with(Cell::get).unwrap_or(0);
    let from = FROM.try_with(Cell::get).unwrap_or(0);
    if (only != 0 && size != only) || (from != 0 && size >= from) {
        FAILED.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        false
    }
}

// SAFETY: forwards every call to `System` unchanged, or returns null, which
// `GlobalAlloc` allows for any allocation request.
unsafe impl GlobalAlloc for Faulty {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: TraceAlloc<Faulty> = TraceAlloc::new(Faulty);

fn main() -> std::process::ExitCode {
    if std::env::var_os(CHILD).is_some() {
        under_an_address_space_limit();
        return std::process::ExitCode::SUCCESS;
    }
    solo::run(&[
        (
            "sampled_clear_traces_leaves_no_trace_of_freed_blocks",
            sampled_clear_traces_leaves_no_trace_of_freed_blocks,
        ),
        (
            "every_block_clear_traces_leaves_no_trace_of_freed_blocks",
            every_block_clear_traces_leaves_no_trace_of_freed_blocks,
        ),
        (
            "the_tracer_s_failed_allocations_do_not_fail_the_user_s",
            the_tracer_s_failed_allocations_do_not_fail_the_user_s,
        ),
        (
            "take_snapshot_out_of_memory_panics_at_the_call",
            take_snapshot_out_of_memory_panics_at_the_call,
        ),
        (
            "an_address_space_limit_gives_nulls_not_an_abort",
            an_address_space_limit_gives_nulls_not_an_abort,
        ),
    ])
}

/// Sizes 1 B to 64 KiB, spread by a cheap hash of `i`.
fn size(i: usize) -> usize {
    1 + (i.wrapping_mul(0x9e37_79b9) >> 7) % (64 * 1024)
}

#[inline(never)]
fn keep(i: usize) -> Vec<u8> {
    black_box(vec![i as u8; size(i)])
}

/// Four threads each allocate 64 blocks while the main thread clears the
/// traces once; then, with every thread parked, the table must hold exactly
/// the traced blocks the threads still hold (each one's trace found at its
/// address, their bytes the traced total); then the threads free everything,
/// and nothing may stay traced.
fn clear_while_threads_allocate(config: impl Fn() -> Config, episodes: usize) {
    const THREADS: usize = 4;
    const BLOCKS: usize = 64;
    stop();
    let mut stale_episodes = 0;
    let mut worst = (0usize, 0usize);
    for episode in 0..episodes {
        config().start();
        let go = Arc::new(Barrier::new(THREADS + 1));
        let parked = Arc::new(Barrier::new(THREADS + 1));
        let free = Arc::new(Barrier::new(THREADS + 1));
        // Everything the threads keep is allocated before the clear, except
        // the blocks under test.
        let held = Arc::new(std::sync::Mutex::new(Vec::with_capacity(THREADS * BLOCKS)));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (go, parked, free, held) =
                    (go.clone(), parked.clone(), free.clone(), held.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::with_capacity(BLOCKS);
                    go.wait();
                    for i in 0..BLOCKS {
                        mine.push(keep(episode * 7919 + t * BLOCKS + i));
                    }
                    held.lock()
                        .unwrap()
                        .extend(mine.iter().map(|v| (v.as_ptr() as usize, v.len())));
                    parked.wait();
                    free.wait();
                    drop(mine);
                })
            })
            .collect();
        go.wait();
        // Let the threads get going, then clear in the middle of it.
        for _ in 0..(episode % 5) * 200 {
            std::hint::spin_loop();
        }
        tracealloc::clear_traces();
        parked.wait();
        // Quiescent: the table against what the threads hold.
        let traced_held: usize = held
            .lock()
            .unwrap()
            .iter()
            .filter(|&&(addr, _)| object_traceback(addr as *const u8).is_some())
            .map(|&(_, len)| len)
            .sum();
        let traced = traced_memory().0;
        assert_eq!(
            traced, traced_held,
            "episode {episode}: the table holds {traced} bytes, the threads hold {traced_held} traced bytes"
        );
        free.wait();
        for t in threads {
            t.join().unwrap();
        }
        let (left, snapshot) = (traced_memory().0, take_snapshot());
        if left != 0 || !snapshot.traces().is_empty() {
            stale_episodes += 1;
            worst = worst.max((snapshot.traces().len(), left));
        }
        stop();
    }
    assert_eq!(
        stale_episodes, 0,
        "{stale_episodes} of {episodes} episodes left traces of freed blocks (worst: {} traces, {} bytes)",
        worst.0, worst.1
    );
}

fn sampled_clear_traces_leaves_no_trace_of_freed_blocks() {
    clear_while_threads_allocate(|| Config::new().frames(1).sample_bytes(16 * 1024), 50);
}

fn every_block_clear_traces_leaves_no_trace_of_freed_blocks() {
    clear_while_threads_allocate(|| Config::new().frames(1), 50);
}

/// A block the test allocates: the only size the faulty allocator lets
/// through while armed (no table of the tracer has it).
const USER_SIZE: usize = 1000;

#[inline(never)]
fn user_block() -> *mut u8 {
    // SAFETY: a non-zero size and a valid alignment.
    unsafe { GLOBAL.alloc(Layout::from_size_align(USER_SIZE, 8).unwrap()) }
}

/// With every allocation of the tracer refused: on this thread and on a new
/// one (which starts with no counter slot, stack bounds or unwinder cache),
/// with the method `start` chooses and with the unwinder forced.
fn the_tracer_s_failed_allocations_do_not_fail_the_user_s() {
    for unwinder in [false, true] {
        for new_thread in [false, true] {
            stop();
            // Allocated before tracing: only the user blocks are traced.
            let blocks: Vec<usize> = Vec::with_capacity(BLOCKS);
            let case = format!("unwinder forced: {unwinder}, new thread: {new_thread}");
            let mut config = Config::new();
            if unwinder {
                config = config.capture(tracealloc::CaptureMethod::Unwinder);
            }
            config.start();
            let (blocks, dropped, refused) = if new_thread {
                std::thread::spawn(move || allocate_refused(blocks))
                    .join()
                    .unwrap()
            } else {
                allocate_refused(blocks)
            };
            assert!(refused > 0, "{case}: the tracer's tables had to grow");
            assert!(
                dropped > 0,
                "{case}: the blocks the tracer could not record are counted"
            );
            let traced = blocks
                .iter()
                .filter(|&&b| object_traceback(b as *const u8).is_some())
                .count();
            assert_eq!(
                traced as u64 + dropped,
                BLOCKS as u64,
                "{case}: each block traced or counted as dropped"
            );
            eprintln!("{case}: {traced} traced, {dropped} dropped, {refused} allocations of the tracer refused");
            assert!(traced > 0, "{case}: the tables' room was used");
            assert_eq!(traced_memory().0, traced * USER_SIZE, "{case}");
            // Tracing goes on once memory is there again.
            let v = black_box(vec![1u8; 4321]);
            assert!(object_traceback(v.as_ptr()).is_some(), "{case}");
            drop(v);
            for b in blocks {
                // SAFETY: allocated by `allocate_refused` with this layout.
                unsafe {
                    GLOBAL.dealloc(b as *mut u8, Layout::from_size_align(USER_SIZE, 8).unwrap())
                };
            }
            assert_eq!(traced_memory().0, 0, "{case}");
            stop();
        }
    }
}

const BLOCKS: usize = 100_000;

/// Allocates `BLOCKS` user blocks (into `blocks`, which has room) with
/// every other allocation refused on this thread; returns their addresses,
/// the traces dropped and the allocations refused meanwhile.
fn allocate_refused(mut blocks: Vec<usize>) -> (Vec<usize>, u64, usize) {
    let mut out = (0, 0, stats());
    // Twice with memory, freeing, so that the stack is interned and the
    // tables have grown (some of the blocks then fit without more memory);
    // then with the tracer's memory refused. From one call site: the same
    // stack each time (a loop the optimizer cannot unroll into three call
    // sites, whose stacks would differ).
    for round in 0..black_box(3) {
        let refused = round == 2;
        let before = (
            tracealloc::dropped_traces(),
            FAILED.load(Ordering::Relaxed),
            stats(),
        );
        if refused {
            ONLY.with(|o| o.set(USER_SIZE));
        }
        let n = if refused { BLOCKS } else { BLOCKS / 4 };
        for _ in 0..n {
            blocks.push(user_block() as usize);
        }
        ONLY.with(|o| o.set(0));
        out = before;
        if !refused {
            for b in blocks.drain(..) {
                // SAFETY: allocated just above with this layout.
                unsafe {
                    GLOBAL.dealloc(b as *mut u8, Layout::from_size_align(USER_SIZE, 8).unwrap())
                };
            }
        }
    }
    let after = stats();
    assert!(
        blocks.iter().all(|&b| b != 0),
        "every block the inner allocator gave was returned"
    );
    assert_eq!(after.total_allocs - out.2.total_allocs, BLOCKS as u64);
    (
        blocks,
        tracealloc::dropped_traces() - out.0,
        FAILED.load(Ordering::Relaxed) - out.1,
    )
}

fn take_snapshot_out_of_memory_panics_at_the_call() {
    stop();
    start(1);
    let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![0u8; 1 + i % 100]).collect();
    // The copy of 20 000 traces needs more than 64 KiB; the panic's own
    // allocations are small.
    FROM.with(|o| o.set(64 * 1024));
    // The expected panic is not printed (the message is checked below);
    // the hook gives memory back first in any case.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| FROM.with(|o| o.set(0))));
    let result = std::panic::catch_unwind(take_snapshot);
    FROM.with(|o| o.set(0));
    std::panic::set_hook(hook);
    let message = match result {
        Ok(_) => panic!("take_snapshot succeeded with every allocation refused"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    assert!(
        message.starts_with("tracealloc: take_snapshot: out of memory"),
        "{message}"
    );
    // And it works again once memory is there.
    assert!(take_snapshot().traces().len() >= blocks.len());
    stop();
}

/// Set in the environment of the child process that runs
/// [`under_an_address_space_limit`].
const CHILD: &str = "TRACEALLOC_FAULTS_CHILD";

/// This binary again, under an address-space limit with tracing on: it
/// allocates until the allocator returns null, then frees everything. The
/// process must get its nulls and exit normally (the tracer's own growth
/// fails on the way, and must not abort it).
fn an_address_space_limit_gives_nulls_not_an_abort() {
    // Several limits: which allocation meets the limit first (the user's or
    // the tracer's) depends on where it falls. (One, lower, in debug builds,
    // where capturing millions of stacks takes a minute.)
    let limits: &[u64] = if cfg!(debug_assertions) {
        &[32]
    } else {
        &[160, 192, 224, 256, 288]
    };
    for &mib in limits {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(CHILD, mib.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("child, {mib} MiB over: {}", stdout.trim());
        assert!(
            out.status.success() && stdout.contains("null after"),
            "the child failed ({}): {stdout}{stderr}",
            out.status
        );
    }
}

fn under_an_address_space_limit() {
    // Small blocks: the tracer's table (16 bytes a block, doubled when it
    // grows) weighs as much as they do, so its growth meets the limit.
    const BLOCK: usize = 16;
    const MAX: usize = 16 << 20;
    // Everything the loop keeps is allocated before the limit.
    let mut blocks: Vec<usize> = Vec::with_capacity(MAX);
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    let mib: u64 = std::env::var(CHILD).unwrap().parse().unwrap();
    let limit = pages * 4096 + (mib << 20);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: `setrlimit` reads the struct given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
    start(4);
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let mut nulls = 0;
    while blocks.len() < MAX {
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        if p.is_null() {
            nulls += 1;
            if nulls == 3 {
                break;
            }
        } else {
            blocks.push(p as usize);
        }
    }
    let n = blocks.len();
    for b in blocks.drain(..) {
        // SAFETY: allocated above with `layout`.
        unsafe { GLOBAL.dealloc(b as *mut u8, layout) };
    }
    let dropped = tracealloc::dropped_traces();
    stop();
    println!("null after {n} blocks of {BLOCK} bytes; {dropped} traces dropped");
}
