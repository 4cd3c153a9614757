//! End-to-end call-site tracing: sites at their exact file and line, realloc
//! re-keying, exact per-site counts across threads, sampling estimates,
//! control calls racing allocating threads, fork, and the API's limits.
//!
//! Tracing is process-wide, so this binary runs its tests one after another
//! on the main thread (`solo`), each starting and stopping its own session.
//!
//! CI also builds it with `-C force-frame-pointers=yes` and sets
//! `TRACEALLOC_EXPECT_CAPTURE=frame-pointers`, so the frame-pointer walk is
//! checked as well as the unwinder.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use tracealloc::{
    capture_method, measure, object_traceback, start, stop, take_snapshot, traced_memory,
    CaptureMethod, Config, Filter, KeyType, Snapshot, TraceAlloc,
};

#[path = "../benches/common/many_stacks.rs"]
mod many_stacks;
mod solo;

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

fn main() -> std::process::ExitCode {
    // Each test starts and stops its own session; one that fails midway
    // leaves tracing on, so the next ones begin with a `stop()`.
    solo::run(&[
        (
            "capture_method_is_the_expected_one",
            capture_method_is_the_expected_one,
        ),
        (
            "known_site_by_object_traceback_and_lineno",
            known_site_by_object_traceback_and_lineno,
        ),
        (
            "deeper_tracebacks_keep_nframe_user_frames",
            deeper_tracebacks_keep_nframe_user_frames,
        ),
        (
            "realloc_rekeys_to_the_new_block_and_site",
            realloc_rekeys_to_the_new_block_and_site,
        ),
        (
            "four_threads_at_one_site_count_exactly",
            four_threads_at_one_site_count_exactly,
        ),
        (
            "sampling_estimates_within_their_error",
            sampling_estimates_within_their_error,
        ),
        (
            "control_calls_race_allocating_threads",
            control_calls_race_allocating_threads,
        ),
        (
            "measure_ignores_the_tracer_s_own_allocations",
            measure_ignores_the_tracer_s_own_allocations,
        ),
        ("traced_memory_and_its_peak", traced_memory_and_its_peak),
        ("snapshot_diffs_byte_for_byte", snapshot_diffs_byte_for_byte),
        ("tracer_memory_per_live_block", tracer_memory_per_live_block),
        (
            "the_crate_s_results_are_counted_not_traced",
            the_crate_s_results_are_counted_not_traced,
        ),
        ("limits_and_misuse", limits_and_misuse),
        (
            "thread_exit_allocations_are_traced",
            thread_exit_allocations_are_traced,
        ),
        (
            "fork_child_traces_and_does_not_deadlock",
            fork_child_traces_and_does_not_deadlock,
        ),
        (
            "profile_counts_each_site_s_whole_run",
            profile_counts_each_site_s_whole_run,
        ),
        (
            "profile_knows_the_peak_and_lifetimes",
            profile_knows_the_peak_and_lifetimes,
        ),
        (
            "peak_by_small_steps_is_within_its_bound",
            peak_by_small_steps_is_within_its_bound,
        ),
        (
            "reset_profile_keeps_live_blocks",
            reset_profile_keeps_live_blocks,
        ),
        ("sampled_profile_is_weighted", sampled_profile_is_weighted),
    ])
}

/// The site `(file, line)` of the allocation in `$e`, which must sit on the
/// same line as this macro call.
macro_rules! here {
    ($e:expr) => {
        ($e, (file!(), line!()))
    };
}

fn site_of<T>(ptr: *const T) -> (String, u32) {
    let t = object_traceback(ptr).expect("the block is traced");
    let f = &t.frames()[0];
    (f.filename().to_string(), f.lineno())
}

fn lineno_stat(s: &Snapshot, site: (&str, u32)) -> Option<(usize, usize)> {
    s.statistics(KeyType::Lineno, false)
        .into_iter()
        .find(|st| {
            st.traceback.frames()[0].filename() == site.0
                && st.traceback.frames()[0].lineno() == site.1
        })
        .map(|st| (st.size, st.count))
}

fn capture_method_is_the_expected_one() {
    stop();
    start(1);
    let method = capture_method().expect("chosen at start");
    stop();
    eprintln!("capture method: {method:?}");
    match std::env::var("TRACEALLOC_EXPECT_CAPTURE").as_deref() {
        Ok("frame-pointers") => assert_eq!(method, CaptureMethod::FramePointers),
        Ok("unwinder") => assert_eq!(method, CaptureMethod::Unwinder),
        _ => {}
    }
}

fn known_site_by_object_traceback_and_lineno() {
    stop();
    start(1);
    let fallbacks = tracealloc::capture_fallbacks();
    let (v, site) = here!(black_box(vec![7u8; 123_457]));
    let (b, bsite) = here!(black_box(Box::new([1u64; 9])));
    assert_eq!(
        tracealloc::capture_fallbacks(),
        fallbacks,
        "walks from the main thread reach its first frame without being rejected"
    );
    assert_eq!(site_of(v.as_ptr()), (site.0.to_string(), site.1));
    assert_eq!(site_of(&*b), (bsite.0.to_string(), bsite.1));
    let snapshot = take_snapshot();
    assert_eq!(lineno_stat(&snapshot, site), Some((123_457, 1)));
    assert_eq!(lineno_stat(&snapshot, bsite), Some((72, 1)));
    assert_eq!(snapshot.traceback_limit(), 1);
    let t = snapshot
        .traces()
        .iter()
        .find(|t| t.size == 123_457)
        .unwrap();
    assert_eq!(t.traceback.frames().len(), 1);
    assert!(
        t.traceback.total_nframe() >= 2,
        "main and the harness are below"
    );
    stop();
    assert!(
        object_traceback(v.as_ptr()).is_none(),
        "stop drops every trace"
    );
}

#[inline(never)]
fn inner_alloc(n: usize) -> (Vec<u32>, u32) {
    let (v, (_, line)) = here!(black_box(vec![3u32; n]));
    (v, line)
}

fn deeper_tracebacks_keep_nframe_user_frames() {
    stop();
    start(2);
    let (v, inner_line) = inner_alloc(1000);
    let outer_line = line!() - 1;
    let t = object_traceback(v.as_ptr()).unwrap();
    let frames: Vec<(&str, u32)> = t
        .frames()
        .iter()
        .map(|f| (f.filename(), f.lineno()))
        .collect();
    assert_eq!(frames, [(file!(), inner_line), (file!(), outer_line)]);
    assert!(t.total_nframe() > 2);
    assert!(
        t.frames()[0].function().contains("inner_alloc"),
        "{:?}",
        t.frames()[0]
    );
    let lines = t.format(None, true);
    assert_eq!(
        lines[0],
        format!("  File \"{}\", line {inner_line}", file!())
    );
    assert!(
        lines[1].contains("here!(black_box(vec![3u32; n]))"),
        "{lines:?}"
    );
    stop();
}

fn realloc_rekeys_to_the_new_block_and_site() {
    stop();
    start(1);
    let (mut v, first) = here!(black_box(Vec::<u8>::with_capacity(16)));
    v.push(1);
    assert_eq!(site_of(v.as_ptr()).1, first.1);
    let old = v.as_ptr() as usize;
    let (_, grow) = here!(v.reserve_exact(4 << 20));
    let new = v.as_ptr() as usize;
    assert_eq!(
        site_of(v.as_ptr()).1,
        grow.1,
        "traced at the realloc's site"
    );
    let snapshot = take_snapshot();
    assert_eq!(lineno_stat(&snapshot, first), None, "the old trace is gone");
    assert_eq!(
        lineno_stat(&snapshot, grow),
        Some((v.capacity(), 1)),
        "with the new size"
    );
    if new != old {
        assert!(object_traceback(old as *const u8).is_none());
    }
    // Shrinking re-keys too.
    let (_, shrink) = here!(v.shrink_to_fit());
    assert_eq!(site_of(v.as_ptr()).1, shrink.1);
    assert_eq!(lineno_stat(&take_snapshot(), shrink), Some((1, 1)));
    stop();
}

#[inline(never)]
fn make_block(i: usize) -> Box<[u8; 100]> {
    black_box(Box::new([i as u8; 100]))
}

fn four_threads_at_one_site_count_exactly() {
    stop();
    start(1);
    let site_probe = make_block(0);
    let (file, line) = site_of(&*site_probe);
    drop(site_probe);
    let go = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let mut kept = Vec::with_capacity(2500);
                for i in 0..5000 {
                    let b = make_block(i);
                    if i % 2 == 0 {
                        kept.push(b);
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let snapshot = take_snapshot();
    assert_eq!(
        lineno_stat(&snapshot, (&file, line)),
        Some((4 * 2500 * 100, 4 * 2500))
    );
    stop();
    drop(kept);
}

#[inline(never)]
fn small_block() -> Box<[u8; 1000]> {
    black_box(Box::new([0u8; 1000]))
}

#[inline(never)]
fn big_block() -> Vec<u8> {
    black_box(vec![0u8; 1 << 20])
}

fn sampling_estimates_within_their_error() {
    stop();
    const RATE: u64 = 64 * 1024;
    Config::new().frames(1).sample_bytes(RATE).start();
    let small: Vec<_> = (0..100_000).map(|_| small_block()).collect();
    let big: Vec<_> = (0..40).map(|_| big_block()).collect();
    let snapshot = take_snapshot();
    assert_eq!(snapshot.sample_bytes(), Some(RATE));
    let (small_site, big_site) = (
        site_of_traced(&snapshot, 1000),
        site_of_traced(&snapshot, 1 << 20),
    );
    for ((file, line), true_bytes, true_count) in [
        (small_site, 100_000 * 1000, 100_000),
        (big_site, 40 << 20, 40),
    ] {
        let (size, count) = lineno_stat(&snapshot, (&file, line)).unwrap();
        // Documented: relative standard error about sqrt(rate / bytes);
        // allow four of them.
        let bound = 4.0 * (RATE as f64 / true_bytes as f64).sqrt();
        let rel = (size as f64 - true_bytes as f64).abs() / true_bytes as f64;
        assert!(
            rel < bound,
            "{file}:{line}: estimated {size} B for {true_bytes} B ({rel:.4} > {bound:.4})"
        );
        let rel_count = (count as f64 - true_count as f64).abs() / true_count as f64;
        assert!(
            rel_count < bound,
            "{file}:{line}: estimated {count} blocks for {true_count}"
        );
    }
    // Far fewer blocks were traced than allocated.
    assert!(
        snapshot.traces().len() < 5_000,
        "{} traced",
        snapshot.traces().len()
    );
    stop();
    drop((small, big));
}

fn site_of_traced(s: &Snapshot, size: usize) -> (String, u32) {
    let t = s
        .traces()
        .iter()
        .find(|t| t.size == size)
        .expect("a sampled block of that size");
    let f = &t.traceback.frames()[0];
    (f.filename().to_string(), f.lineno())
}

fn control_calls_race_allocating_threads() {
    stop();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (stop_flag, ops) = (stop_flag.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut live: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !stop_flag.load(Ordering::Relaxed) {
                    live.push(black_box(vec![t as u8; 1 + i % 700]));
                    if live.len() > 200 {
                        live.swap_remove(i % 200);
                    }
                    if i.is_multiple_of(7) {
                        if let Some(v) = live.last_mut() {
                            v.resize(v.len() * 2 + 1, 0);
                        }
                    }
                    i += 1;
                    ops.store(i, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for round in 0..300 {
        match round % 4 {
            0 => start(1 + round % 8),
            1 => {
                if tracealloc::is_tracing() {
                    let s = take_snapshot();
                    black_box(s.statistics(KeyType::Lineno, false));
                }
            }
            2 => tracealloc::clear_traces(),
            _ => {
                black_box(traced_memory());
                stop();
            }
        }
        if round % 50 == 0 {
            Config::new().frames(4).sample_bytes(4096).start();
            black_box(take_snapshot());
            stop();
        }
    }
    stop_flag.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(ops.load(Ordering::Relaxed) > 0);
    // The tracer still works exactly after all that.
    start(1);
    let (v, site) = here!(black_box(vec![1u8; 77_777]));
    assert_eq!(lineno_stat(&take_snapshot(), site), Some((77_777, 1)));
    stop();
    drop(v);
}

fn measure_ignores_the_tracer_s_own_allocations() {
    stop();
    start(16);
    // Many new stacks and a growing live table: the tracer allocates, but
    // this thread's counts see only the program's blocks.
    let (kept, d) = measure(|| {
        let mut kept = Vec::with_capacity(20_000);
        for i in 0..20_000 {
            kept.push(black_box(Box::new(i)));
        }
        kept
    });
    assert_eq!(d.allocs, 20_001);
    assert_eq!(
        d.bytes_allocated,
        20_000 * 4 + 20_000 * std::mem::size_of::<Box<i32>>() as u64
    );
    assert_eq!(d.frees, 0);
    let ((), d) = measure(|| drop(black_box(take_snapshot())));
    assert_eq!(
        d.net_bytes(),
        0,
        "a dropped snapshot gives back what it took: {d}"
    );
    stop();
    drop(kept);
}

fn traced_memory_and_its_peak() {
    stop();
    assert_eq!(traced_memory(), (0, 0));
    start(1);
    let (base, _) = traced_memory();
    let big = black_box(vec![0u8; 8 << 20]);
    assert_eq!(traced_memory().0, base + (8 << 20));
    drop(big);
    let (current, peak) = traced_memory();
    assert_eq!(current, base);
    assert!(peak >= base + (8 << 20), "peak {peak}");
    tracealloc::reset_peak();
    let (current, peak) = traced_memory();
    assert_eq!(peak, current);
    tracealloc::clear_traces();
    assert_eq!(traced_memory(), (0, 0));
    stop();
    assert_eq!(traced_memory(), (0, 0));
}

fn snapshot_diffs_byte_for_byte() {
    stop();
    start(1);
    let before = take_snapshot();
    let (pair, site) = here!((black_box(vec![1u8; 5 << 20]), black_box(vec![2u8; 5 << 20])));
    let after = take_snapshot();
    let diff_line = |new: &Snapshot, old: &Snapshot| {
        new.compare_to(old, KeyType::Lineno, false)
            .into_iter()
            .find(|d| {
                d.traceback.frames()[0].lineno() == site.1
                    && d.traceback.frames()[0].filename() == site.0
            })
            .map(|d| d.to_string())
    };
    assert_eq!(
        diff_line(&after, &before).as_deref(),
        Some(
            format!(
                "{}:{}: size=10.0 MiB (+10.0 MiB), count=2 (+2), average=5120 KiB",
                site.0, site.1
            )
            .as_str()
        )
    );
    let (first, second) = pair;
    drop(first);
    let later = take_snapshot();
    assert_eq!(
        diff_line(&later, &after).as_deref(),
        Some(
            format!(
                "{}:{}: size=5120 KiB (-5120 KiB), count=1 (-1), average=5120 KiB",
                site.0, site.1
            )
            .as_str()
        )
    );
    drop(second);
    assert_eq!(
        diff_line(&take_snapshot(), &later).as_deref(),
        Some(format!("{}:{}: size=0 B (-5120 KiB), count=0 (-1)", site.0, site.1).as_str())
    );
    // The top report names the line and shows its source.
    let top = after.top_diff(&before, 3, KeyType::Lineno).to_string();
    assert!(
        top.contains(&format!(
            "{}:{}: 10240.0 KiB (+10240.0 KiB), count=2 (+2)",
            site.0, site.1
        )),
        "{top}"
    );
    assert!(
        top.contains("here!((black_box(vec![1u8; 5 << 20])"),
        "{top}"
    );
    // A real snapshot survives dump and load; a damaged file is an error.
    let path = std::env::temp_dir().join(format!("tracealloc-e2e-{}.json", std::process::id()));
    after.dump(&path).unwrap();
    assert_eq!(Snapshot::load(&path).unwrap(), after);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    let err = Snapshot::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("not a valid snapshot file"),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    stop();
}

fn tracer_memory_per_live_block() {
    stop();
    start(1);
    black_box(take_snapshot()); // load symbols first: not per-block memory
    let before = tracealloc::tracer_memory();
    const N: usize = 1_000_000;
    let blocks = many_stacks::allocate(N);
    let after = tracealloc::tracer_memory();
    let per_block = (after - before) as f64 / N as f64;
    eprintln!("tracer memory: {per_block:.1} bytes per live block ({N} blocks)");
    assert!(per_block <= 48.0, "{per_block:.1} bytes per live block");
    // What a 1-million-block snapshot costs (printed, not asserted: timings
    // belong to the benchmarks).
    let t = std::time::Instant::now();
    drop(take_snapshot());
    let take_cold = t.elapsed();
    let t = std::time::Instant::now();
    let snapshot = take_snapshot();
    let take = t.elapsed();
    let t = std::time::Instant::now();
    let stats = snapshot.statistics(KeyType::Lineno, false);
    let group = t.elapsed();
    let path = std::env::temp_dir().join(format!("tracealloc-1m-{}.json", std::process::id()));
    let t = std::time::Instant::now();
    snapshot.dump(&path).unwrap();
    let dump = t.elapsed();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let t = std::time::Instant::now();
    let loaded = Snapshot::load(&path).unwrap();
    let load = t.elapsed();
    std::fs::remove_file(&path).unwrap();
    assert!(snapshot.traces().len() >= N);
    assert_eq!(loaded.traces().len(), snapshot.traces().len());
    assert!(stats.iter().map(|s| s.count).sum::<usize>() >= N);
    eprintln!(
        "1M-block snapshot over {} stacks: take {take_cold:.2?} (symbols cold), {take:.2?} (cached), statistics {group:.2?}, dump {dump:.2?} ({:.1} MiB), load {load:.2?}",
        tracealloc_stacks(&snapshot),
        bytes as f64 / (1 << 20) as f64
    );

    stop();
    drop(blocks);
}

fn the_crate_s_results_are_counted_not_traced() {
    stop();
    start(4);
    let blocks = many_stacks::allocate(100_000);
    black_box(take_snapshot()); // symbols first
    let path = std::env::temp_dir().join(format!("tracealloc-nt-{}.json", std::process::id()));
    let (before, _) = traced_memory();
    let first = line!() + 1;
    let snapshot = take_snapshot();
    let stats = snapshot.statistics(KeyType::Lineno, false);
    let diffs = snapshot.compare_to(&snapshot, KeyType::Traceback, false);
    let filtered = snapshot.filter_traces(&[Filter::include("*")]);
    let top = snapshot.top(10, KeyType::Traceback);
    let duplicates = snapshot.duplicate_instances(1);
    let lines = snapshot.traces()[0].traceback.format(None, true);
    snapshot.dump(&path).unwrap();
    let loaded = Snapshot::load(&path).unwrap();
    let last = line!() - 1;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        traced_memory().0,
        before,
        "what the crate returned is not traced"
    );
    let later = take_snapshot();
    let ours: Vec<String> = later
        .traces()
        .iter()
        .filter(|t| {
            let f = &t.traceback.frames()[0];
            f.filename() == file!() && (first..=last).contains(&f.lineno())
        })
        .map(|t| format!("{} B at {}", t.size, t.traceback))
        .collect();
    assert!(
        ours.is_empty(),
        "traced at the lines that called the crate: {ours:?}"
    );
    // But it is heap the caller holds: counted.
    let (again, d) = measure(take_snapshot);
    assert!(
        d.bytes_allocated >= std::mem::size_of_val(again.traces()) as u64,
        "{d}"
    );
    stop();
    drop(black_box((
        stats, diffs, filtered, top, duplicates, lines, loaded, again,
    )));
    drop(blocks);
}

/// Distinct allocation stacks in a snapshot (with nframe 1 they symbolize
/// to one line; count the raw tracebacks by their shared frames).
fn tracealloc_stacks(s: &Snapshot) -> usize {
    let ptrs: std::collections::HashSet<usize> = s
        .traces()
        .iter()
        .map(|t| t.traceback.frames().as_ptr() as usize)
        .collect();
    ptrs.len()
}

fn limits_and_misuse() {
    stop();
    // The panics below are expected: keep them out of the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for bad in [0, tracealloc::MAX_NFRAME + 1] {
        let err = std::panic::catch_unwind(|| start(bad)).expect_err("must panic");
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.starts_with("tracealloc: the traceback limit must be between 1 and"),
            "{msg}"
        );
    }
    let err = std::panic::catch_unwind(take_snapshot).expect_err("not tracing");
    std::panic::set_hook(hook);
    assert!(err
        .downcast_ref::<&str>()
        .unwrap()
        .starts_with("tracealloc: take_snapshot() needs tracing on"));
    start(5);
    start(1);
    assert_eq!(
        tracealloc::traceback_limit(),
        5,
        "a second start keeps the first limit"
    );
    stop();
    assert!(!tracealloc::is_tracing());
    // Freeing blocks allocated before tracing started is fine.
    let before = black_box(vec![0u8; 1000]);
    start(1);
    drop(before);
    assert!(take_snapshot().traces().iter().all(|t| t.size != 1000));
    stop();
}

struct AllocOnExit(Arc<std::sync::Mutex<Option<(String, u32, bool)>>>);

impl Drop for AllocOnExit {
    fn drop(&mut self) {
        let (v, site) = here!(black_box(vec![9u8; 31_337]));
        let traced = object_traceback(v.as_ptr()).map(|t| t.frames()[0].lineno() == site.1);
        *self.0.lock().unwrap() = Some((site.0.to_string(), site.1, traced == Some(true)));
    }
}

thread_local! {
    static ON_EXIT: std::cell::RefCell<Option<AllocOnExit>> = const { std::cell::RefCell::new(None) };
}

fn thread_exit_allocations_are_traced() {
    stop();
    start(1);
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    std::thread::spawn(move || ON_EXIT.with(|e| *e.borrow_mut() = Some(AllocOnExit(s))))
        .join()
        .unwrap();
    let (_, _, traced) = seen.lock().unwrap().clone().expect("the destructor ran");
    assert!(
        traced,
        "an allocation in a thread-local destructor is traced at its line"
    );
    stop();
}

#[cfg(unix)]
fn fork_child_traces_and_does_not_deadlock() {
    stop();
    start(1);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop_flag = stop_flag.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop_flag.load(Ordering::Relaxed) {
                black_box(vec![0u8; 1 + n % 3000]);
                n += 1;
            }
        })
    };
    // Load the debug information once here: children inherit it.
    black_box(take_snapshot());
    for _ in 0..20 {
        // SAFETY: the child allocates, queries the tracer and calls `_exit`;
        // it never returns into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let (v, site) = here!(black_box(vec![5u8; 4321]));
            let ok = object_traceback(v.as_ptr()).is_some_and(|t| t.frames()[0].lineno() == site.1)
                && lineno_stat(&take_snapshot(), site) == Some((4321, 1));
            // SAFETY: ends the child at once with the verdict as its status.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid place to write.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
    }
    stop_flag.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    stop();
}

#[cfg(not(unix))]
fn fork_child_traces_and_does_not_deadlock() {}

#[inline(never)]
fn profile_site_a() -> (Vec<u8>, u32) {
    (black_box(vec![1u8; 1000]), line!())
}

#[inline(never)]
fn profile_site_b() -> (Vec<u8>, u32) {
    (black_box(vec![2u8; 5000]), line!())
}

/// Known blocks at known lines: 10 of 1000 bytes at site a (4 kept, the
/// first 6 freed after all were allocated) and 3 of 5000 at site b (each
/// freed at once); on this thread and on one that has exited.
fn profile_counts_each_site_s_whole_run() {
    stop();
    start(2);
    let run = || {
        let mut kept = Vec::new();
        let mut line_a = 0;
        for _ in 0..10 {
            let (v, l) = profile_site_a();
            line_a = l;
            kept.push(v);
        }
        kept.drain(..6);
        let mut line_b = 0;
        for _ in 0..3 {
            let (v, l) = profile_site_b();
            line_b = l;
            drop(v);
        }
        (kept, line_a, line_b)
    };
    let (kept_here, line_a, line_b) = run();
    let site = |p: &tracealloc::Profile, line: u32| {
        p.sites()
            .iter()
            .find(|s| s.traceback.frames()[0].lineno() == line)
            .cloned()
            .unwrap_or_else(|| panic!("no site at line {line}: {p}"))
    };
    let p = tracealloc::profile();
    let a = site(&p, line_a);
    assert_eq!(
        (
            a.allocs,
            a.frees,
            a.bytes_allocated,
            a.live_bytes,
            a.live_blocks,
            a.max_live_bytes
        ),
        (10, 6, 10_000, 4_000, 4, 10_000),
        "{p}"
    );
    let b = site(&p, line_b);
    assert_eq!(
        (b.allocs, b.frees, b.bytes_allocated, b.live_bytes),
        (3, 3, 15_000, 0),
        "{p}"
    );
    // Exact per code address; the optimizer may unroll the loop into up to
    // three addresses of this line, whose most-live add up.
    assert!([5_000, 10_000, 15_000].contains(&b.max_live_bytes), "{p}");
    assert_eq!(p.info().traceback_limit, 2);
    assert_eq!(p.info().pid, std::process::id());
    // The same on a thread that has exited: its batches were added then.
    let kept_there = std::thread::spawn(move || run().0).join().unwrap();
    let p = tracealloc::profile();
    let a = site(&p, line_a);
    assert_eq!((a.allocs, a.frees, a.live_bytes), (20, 12, 8_000), "{p}");
    // (With 2 frames, the two threads' sites are one: the closure's line
    // called the allocating function in both.)
    let b = site(&p, line_b);
    assert_eq!((b.allocs, b.frees), (6, 6), "{p}");
    // clear_traces starts the counts over.
    tracealloc::clear_traces();
    let p = tracealloc::profile();
    assert!(
        p.sites()
            .iter()
            .all(|s| s.allocs == 0 || s.traceback.frames()[0].lineno() != line_a),
        "{p}"
    );
    stop();
    drop((kept_here, kept_there));
}

#[inline(never)]
fn peak_site(n: usize, fill: u8) -> (Vec<u8>, u32) {
    (black_box(vec![fill; n]), line!())
}

#[inline(never)]
fn peak_site_c(n: usize) -> (Vec<u8>, u32) {
    (black_box(vec![3u8; n]), line!())
}

#[inline(never)]
fn steady_site(n: usize) -> (Vec<u8>, u32) {
    (black_box(vec![4u8; n]), line!())
}

fn site_at(p: &tracealloc::Profile, line: u32) -> tracealloc::Site {
    p.sites()
        .iter()
        .find(|s| s.traceback.frames()[0].lineno() == line)
        .cloned()
        .unwrap_or_else(|| {
            let all: Vec<String> = p
                .sites()
                .iter()
                .map(|s| {
                    format!(
                        "{} allocs {} frees {} live {}",
                        s.traceback, s.allocs, s.frees, s.live_blocks
                    )
                })
                .collect();
            panic!("no site at line {line}: {all:#?}")
        })
}

/// A workload whose peak is known: a (1 MiB) and b (512 KiB) live at the
/// peak, then a freed, then c (256 KiB, smaller) allocated and freed. The
/// peak's composition is exact on one thread when the peak is reached in
/// one step; lifetimes are within the clock's resolution of what the test
/// measures around them.
fn profile_knows_the_peak_and_lifetimes() {
    use std::time::{Duration, Instant};
    stop();
    let before_start = Instant::now();
    start(4);
    let after_start = Instant::now();
    // Two blocks at one line, by two calls: a, then b.
    let t_a0 = Instant::now();
    let (a, line_ab) = peak_site(1 << 20, 1);
    let t_a1 = Instant::now();
    let (b, _) = peak_site(512 << 10, 2);
    let t_b1 = Instant::now();
    std::thread::sleep(Duration::from_millis(30));
    let t_free0 = Instant::now();
    drop(a);
    let t_free1 = Instant::now();
    let (c, line_c) = peak_site_c(256 << 10);
    let t_c1 = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let t_c2 = Instant::now();
    drop(c);
    let t_c3 = Instant::now();
    let p = tracealloc::profile();
    let t_read = Instant::now();
    // a and b: one line, called from two lines of this function.
    let by_size = |bytes: u64| {
        p.sites()
            .iter()
            .find(|s| s.traceback.frames()[0].lineno() == line_ab && s.bytes_allocated == bytes)
            .cloned()
            .unwrap_or_else(|| panic!("no site of {bytes} bytes at line {line_ab}: {p}"))
    };
    let (site_a, site_b) = (by_size(1 << 20), by_size(512 << 10));
    let c = site_at(&p, line_c);
    // Whole run.
    assert_eq!(
        (site_a.allocs, site_a.frees, site_a.live_blocks),
        (1, 1, 0),
        "{p}"
    );
    assert_eq!(
        (site_b.allocs, site_b.frees, site_b.live_bytes),
        (1, 0, 512 << 10),
        "{p}"
    );
    assert_eq!(
        (site_a.max_live_blocks, site_a.max_live_bytes),
        (1, 1 << 20),
        "{p}"
    );
    // The peak: a and b, not c.
    assert_eq!((site_a.peak_blocks, site_a.peak_bytes), (1, 1 << 20), "{p}");
    assert_eq!(
        (site_b.peak_blocks, site_b.peak_bytes),
        (1, 512 << 10),
        "{p}"
    );
    assert_eq!((c.peak_blocks, c.peak_bytes), (0, 0), "{p}");
    assert_eq!((c.max_live_blocks, c.max_live_bytes), (1, 256 << 10), "{p}");
    let peak_sum: u64 = p.sites().iter().map(|s| s.peak_bytes).sum();
    assert!(
        p.info().peak_bytes >= peak_sum && peak_sum >= 1_572_864,
        "peak {} vs its composition {peak_sum}: {p}",
        p.info().peak_bytes
    );
    // When: after b was allocated, before a's free returned (from a
    // session start between `before_start` and `after_start`).
    let at = p.info().peak_at.expect("a peak was recorded");
    assert!(
        at >= t_b1 - after_start && at <= t_free1 - before_start,
        "peak at {at:?}, b allocated by {:?}, a freed by {:?}",
        t_b1 - before_start,
        t_free1 - before_start
    );
    assert!(
        p.info().duration >= t_c3 - after_start && p.info().duration <= t_read - before_start,
        "{:?}",
        p.info().duration
    );
    // Lifetimes: a lived between (t_free0 - t_a1) and (t_free1 - t_a0); b
    // is live, counted up to the reading; c's sleep of 20 ms is inside its
    // lifetime.
    let (low, high) = (t_free0 - t_a1, t_free1 - t_a0);
    assert!(
        site_a.total_lifetime >= low && site_a.total_lifetime <= high,
        "{:?} not in {low:?}..{high:?}",
        site_a.total_lifetime
    );
    let (low, high) = (t_c3 - t_b1, t_read - t_a1);
    assert!(
        site_b.total_lifetime >= low && site_b.total_lifetime <= high,
        "{:?} not in {low:?}..{high:?}",
        site_b.total_lifetime
    );
    assert!(
        c.total_lifetime >= t_c2 - t_c1 && c.total_lifetime <= t_c3 - t_free1,
        "{:?}",
        c.total_lifetime
    );
    assert_eq!(c.average_lifetime(), Some(c.total_lifetime));
    // The address of each frame is known.
    let at = site_a.addresses();
    assert_eq!(at.len(), site_a.traceback.frames().len());
    assert!(at.iter().all(|&a| a != 0), "{at:?}");
    stop();
    drop(b);
}

/// A peak reached by many small steps, each followed by a free: the
/// composition is recorded about every 1/128 of growth, so the one kept is
/// within 1/128 of the traced peak (and never above it).
fn peak_by_small_steps_is_within_its_bound() {
    stop();
    start(4);
    let mut kept = Vec::new();
    for i in 0..4000 {
        kept.push(peak_site(1000, 5).0);
        drop(black_box(vec![0u8; 10 + i % 7]));
    }
    drop(kept);
    let p = tracealloc::profile();
    let peak_sum: u64 = p.sites().iter().map(|s| s.peak_bytes).sum();
    let peak = p.info().peak_bytes;
    assert!(
        peak_sum <= peak && peak_sum >= peak - peak / 128 - 2048,
        "composition {peak_sum} of a peak of {peak}: {p}"
    );
    assert!(peak >= 4_000_000, "{peak}");
    stop();
}

/// `reset_profile` restarts the counts after a warm-up and keeps the live
/// blocks traced: their figures stay, their frees are counted.
fn reset_profile_keeps_live_blocks() {
    stop();
    start(4);
    let (warm, line_warm) = peak_site_c(100_000);
    for _ in 0..5 {
        drop(steady_site(1000).0);
    }
    tracealloc::reset_profile();
    let mut line_steady = 0;
    for _ in 0..3 {
        let (v, l) = steady_site(2000);
        line_steady = l;
        drop(v);
    }
    let p = tracealloc::profile();
    let w = site_at(&p, line_warm);
    assert_eq!((w.allocs, w.frees, w.bytes_allocated), (0, 0, 0), "{p}");
    assert_eq!((w.live_blocks, w.live_bytes), (1, 100_000), "{p}");
    assert_eq!((w.max_live_bytes, w.peak_bytes), (100_000, 100_000), "{p}");
    let s = site_at(&p, line_steady);
    assert_eq!((s.allocs, s.frees, s.bytes_allocated), (3, 3, 6000), "{p}");
    // Per code address; an unrolled loop's addresses add up.
    assert!([2000, 4000, 6000].contains(&s.max_live_bytes), "{p}");
    assert_eq!(p.bytes_allocated(), 6000, "only what came after: {p}");
    assert!(p.info().peak_bytes < 100_000 + 2000 + 1024, "{p:?}");
    drop(warm);
    let p = tracealloc::profile();
    let w = site_at(&p, line_warm);
    assert_eq!((w.allocs, w.frees, w.live_blocks), (0, 1, 0), "{p}");
    stop();
}

/// Sampled: each block counts for the inverse of its probability, as in
/// statistics.
fn sampled_profile_is_weighted() {
    stop();
    tracealloc::Config::new()
        .frames(4)
        .sample_bytes(64 << 10)
        .start();
    let mut line = 0;
    for _ in 0..100_000 {
        let (v, l) = steady_site(1000);
        line = l;
        drop(v);
    }
    let p = tracealloc::profile();
    let s = site_at(&p, line);
    let close = |x: u64, want: f64| (x as f64 - want).abs() < want * 0.15;
    assert!(close(s.allocs, 100_000.0), "{p}");
    assert!(close(s.bytes_allocated, 100e6), "{p}");
    assert_eq!(s.allocs, s.frees, "{p}");
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0), "{p}");
    assert_eq!(p.info().sample_bytes, Some(64 << 10));
    stop();
}
