//! The allocation assertions under the default test harness (libtest's
//! worker threads, in parallel with other tests that allocate): figures,
//! sites and messages, pass and fail; baselines recorded and compared in a
//! child process, as a user runs them. CI runs this file in debug and
//! release, with and without frame pointers.

use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// The panic message of `f`, which must panic.
fn message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion should fail");
    match err.downcast::<String>() {
        Ok(s) => *s,
        Err(e) => e.downcast_ref::<&str>().unwrap_or(&"?").to_string(),
    }
}

/// The line of this file where the marker comment `tag` stands.
fn line_of(tag: &str) -> u32 {
    let src = include_str!("assertions.rs");
    let marker = format!("// line: {tag}");
    let i = src
        .lines()
        .position(|l| l.trim_end().ends_with(&marker))
        .unwrap_or_else(|| panic!("no marker {marker}"));
    i as u32 + 1
}

#[inline(never)]
fn make_name(i: usize) -> String {
    black_box(format!("name-{i}")) // line: name
}

#[inline(never)]
fn make_row(n: usize) -> Vec<u64> {
    black_box(vec![7u64; n]) // line: row
}

/// Allocates at two known lines: `make_name` twice, `make_row` once.
#[inline(never)]
fn two_lines() -> usize {
    let a = make_name(1);
    let b = make_name(2);
    let r = make_row(16);
    a.len() + b.len() + r.len()
}

/// Tests that allocate on their own threads while the assertions run.
static NOISE_RUNNING: AtomicUsize = AtomicUsize::new(0);
static ASSERTIONS_DONE: AtomicBool = AtomicBool::new(false);

#[inline(never)]
fn noise_site(i: usize) -> Vec<u8> {
    black_box(vec![i as u8; 64 + i % 64]) // line: noise
}

/// Allocates on this test's thread and on one spawned thread until the
/// assertion tests are done (or a few seconds pass).
fn noise() {
    NOISE_RUNNING.fetch_add(1, SeqCst);
    let start = Instant::now();
    let spin = move || {
        let mut keep = Vec::new();
        let mut i = 0;
        while !ASSERTIONS_DONE.load(SeqCst) && start.elapsed() < Duration::from_secs(5) {
            keep.push(noise_site(i));
            if keep.len() > 100 {
                keep.clear();
            }
            i += 1;
        }
    };
    let t = std::thread::spawn(spin);
    spin();
    t.join().unwrap();
}

#[test]
fn noise_1() {
    noise()
}
#[test]
fn noise_2() {
    noise()
}
#[test]
fn noise_3() {
    noise()
}
#[test]
fn noise_4() {
    noise()
}
#[test]
fn noise_5() {
    noise()
}
#[test]
fn noise_6() {
    noise()
}
#[test]
fn noise_7() {
    noise()
}
#[test]
fn noise_8() {
    noise()
}

/// Bytes `make_name` allocates (what `format!` reserves).
fn name_bytes() -> u64 {
    tracealloc::measure(|| make_name(1)).1.bytes_allocated
}

/// A failing `assert_no_alloc!` names both lines that allocated, with their
/// counts and bytes, and none of the other tests' sites, which allocate on
/// their own threads meanwhile.
#[test]
fn failing_no_alloc_names_both_lines_and_no_other_thread_s() {
    // Wait (a little) for the noise to run, so that it is there to leak in.
    let start = Instant::now();
    while NOISE_RUNNING.load(SeqCst) < 2 && start.elapsed() < Duration::from_secs(2) {
        std::thread::yield_now();
    }
    let msg = message(|| {
        tracealloc::assert_no_alloc!(two_lines());
    });
    ASSERTIONS_DONE.store(true, SeqCst);
    let file = "tests/assertions.rs";
    assert!(
        msg.starts_with(
            "tracealloc: `two_lines()` made 3 allocations, none expected: 3 allocs, 3 frees"
        ),
        "{msg}"
    );
    let name = format!(
        "2 allocations, {} B, at {file}:{} (",
        2 * name_bytes(),
        line_of("name")
    );
    let row = format!("1 allocation, 128 B, at {file}:{} (", line_of("row"));
    assert!(msg.contains(&name), "expected `{name}` in:\n{msg}");
    assert!(msg.contains(&row), "expected `{row}` in:\n{msg}");
    assert!(
        msg.contains("make_name)") && msg.contains("make_row)"),
        "{msg}"
    );
    // The calls under each line: two_lines, then the test's closure.
    assert!(msg.contains("two_lines)"), "{msg}");
    assert!(!msg.contains("noise_site"), "another thread's site:\n{msg}");
    assert!(
        !msg.contains(&format!("{file}:{}", line_of("noise"))),
        "{msg}"
    );
}

/// The sites' stacks are captured with the method CI expects of this build.
#[test]
fn capture_method_is_the_build_s() {
    tracealloc::assert_allocs!(1, make_row(1));
    let method = tracealloc::capture_method();
    match std::env::var("TRACEALLOC_EXPECT_CAPTURE").as_deref() {
        Ok("frame-pointers") => assert_eq!(method, Some(tracealloc::CaptureMethod::FramePointers)),
        Ok("unwinder") => assert_eq!(method, Some(tracealloc::CaptureMethod::Unwinder)),
        _ => assert!(method.is_some()),
    }
}

#[test]
fn counts_exact_at_most_and_ranges() {
    let v = tracealloc::assert_allocs!(3, vec![vec![0u8; 4]; 2]);
    assert_eq!(v.len(), 2);
    tracealloc::assert_allocs!(1..=3, make_name(3));
    tracealloc::assert_allocs!(..2, make_name(4));
    tracealloc::assert_allocs!(1.., make_row(2));
    tracealloc::assert_max_allocs!(3, two_lines());
    let msg = message(|| {
        tracealloc::assert_allocs!(2, make_row(4));
    });
    assert!(
        msg.starts_with("tracealloc: `make_row(4)` made 1 allocation, exactly 2 expected"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("assertions.rs:{}", line_of("row"))),
        "{msg}"
    );
    let msg = message(|| {
        tracealloc::assert_allocs!(4..=6, two_lines());
    });
    assert!(msg.contains("made 3 allocations, 4 to 6 expected"), "{msg}");
    let msg = message(|| {
        tracealloc::assert_allocs!(1.., 1 + 1);
    });
    assert!(
        msg.starts_with("tracealloc: `1 + 1` made 0 allocations, at least 1 expected"),
        "{msg}"
    );
    let msg = message(|| {
        tracealloc::assert_max_allocs!(2, two_lines());
    });
    assert!(
        msg.contains("made 3 allocations, at most 2 expected"),
        "{msg}"
    );
}

#[inline(never)]
fn two_buffers_in_turn() -> usize {
    let a = black_box(vec![0u8; 4096]); // line: first buffer
    drop(a);
    black_box(vec![1u8; 8192]).len() // line: second buffer
}

#[test]
fn peak_bound() {
    assert_eq!(
        tracealloc::assert_max_bytes!(8192, two_buffers_in_turn()),
        8192
    );
    let msg = message(|| {
        tracealloc::assert_max_bytes!(8191, two_buffers_in_turn());
    });
    assert!(
        msg.starts_with("tracealloc: `two_buffers_in_turn()` grew this thread's heap by 8192 B at its peak, at most 8191 B expected"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "8192 B, at tests/assertions.rs:{}",
            line_of("second buffer")
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "4096 B, at tests/assertions.rs:{}",
            line_of("first buffer")
        )),
        "{msg}"
    );
}

static CACHE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[inline(never)]
fn remember(s: &str) -> usize {
    let mut c = CACHE.lock().unwrap();
    c.push(s.to_uppercase()); // line: cached
    c.len()
}

#[test]
fn leaks_are_named() {
    tracealloc::assert_no_leak!(two_lines());
    // Freeing what was allocated before is fine.
    let old = make_name(9);
    tracealloc::assert_no_leak!(drop(old));
    let msg = message(|| {
        tracealloc::assert_no_leak!(remember("abc"));
    });
    assert!(
        msg.starts_with("tracealloc: `remember(\"abc\")` left "),
        "{msg}"
    );
    assert!(
        msg.contains("still live, allocated on this thread at:"),
        "{msg}"
    );
    // The string and the cache's first buffer, at one line.
    assert!(
        msg.contains(&format!(
            "2 allocations, 99 B, at tests/assertions.rs:{} (",
            line_of("cached")
        )),
        "{msg}"
    );
    let msg = message(|| {
        tracealloc::assert_no_leak!(black_box(Box::leak(Box::new([0u8; 64]))).len());
    });
    assert!(msg.contains("left 1 block of 64 B live"), "{msg}");
}

/// Assertions nest: the inner one sees its own allocations, the outer one
/// all of them.
#[test]
fn nested_assertions() {
    let n = tracealloc::assert_allocs!(3, {
        let a = tracealloc::assert_allocs!(1, make_name(5));
        let b = tracealloc::assert_allocs!(2, (make_name(6), make_row(1)));
        a.len() + b.0.len()
    });
    assert_eq!(n, 12);
    let msg = message(|| {
        tracealloc::assert_no_alloc!({
            let _inner = tracealloc::assert_allocs!(1, make_row(3));
            make_name(7)
        });
    });
    assert!(
        msg.contains(&format!(
            "1 allocation, 24 B, at tests/assertions.rs:{}",
            line_of("row")
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "1 allocation, {} B, at tests/assertions.rs:{}",
            name_bytes(),
            line_of("name")
        )),
        "{msg}"
    );
}

/// Under a tracing session that samples (here nearly every block: the
/// tracer and the assertion record the same allocations), the counts stay
/// exact and the sites are named.
#[test]
fn counts_are_exact_while_a_sampled_session_runs() {
    // The only test here that starts a session.
    tracealloc::Config::new().frames(16).sample_bytes(1).start();
    let passed = catch_unwind(|| tracealloc::assert_allocs!(3, two_lines()));
    let msg = message(|| {
        tracealloc::assert_no_alloc!(two_lines());
    });
    tracealloc::stop();
    assert!(passed.is_ok());
    assert!(msg.contains("made 3 allocations, none expected"), "{msg}");
    assert!(
        msg.contains(&format!(
            "1 allocation, 128 B, at tests/assertions.rs:{} (",
            line_of("row")
        )),
        "{msg}"
    );
}

/// A block allocated before the assertion and resized inside: shrinking it
/// leaves nothing of the expression's live; growing it leaves the growth.
#[test]
fn resizing_an_older_block() {
    let mut v: Vec<u8> = black_box(vec![1; 4096]);
    v.truncate(1);
    tracealloc::assert_no_leak!(v.shrink_to_fit());
    let mut w: Vec<u8> = Vec::with_capacity(1000);
    w.extend_from_slice(&[1; 1000]);
    let msg = message(|| {
        tracealloc::assert_no_leak!(w.reserve_exact(1000)); // line: grow
    });
    assert!(msg.contains("left 1 block of 1000 B live"), "{msg}");
    assert!(
        msg.contains(&format!("tests/assertions.rs:{} (", line_of("grow")))
            && msg.contains("the asserted expression)"),
        "{msg}"
    );
}

/// Blocks the expression hands to other threads, freed there before it
/// ends (or as those threads exit, just after), are not leaks.
#[test]
fn blocks_freed_by_other_threads() {
    for _ in 0..20 {
        tracealloc::assert_no_leak!({
            let b = black_box(Box::new([3u8; 100]));
            std::thread::scope(|s| {
                s.spawn(move || drop(b));
            });
        });
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let t = std::thread::spawn(move || drop(rx.recv()));
        tracealloc::assert_no_leak!(tx.send(black_box(vec![7; 300])).unwrap());
        t.join().unwrap();
    }
}

fn baselines_dir() -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tracealloc-test-baselines");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A baseline assertion inside another assertion: its own file reading is
/// not the measured code's.
#[test]
fn a_baseline_inside_another_assertion() {
    let dir = baselines_dir();
    std::fs::write(
        dir.join("nothing.txt"),
        "allocations: 0\nbytes: 0\npeak: 0\nlive: 0\n",
    )
    .unwrap();
    tracealloc::assert_no_alloc!(tracealloc::assert_alloc_baseline!(
        "target/tracealloc-test-baselines/nothing.txt",
        black_box(1 + 1)
    ));
}

/// A baseline with a tolerance: figures may grow by that fraction, no
/// more; shrinking is fine.
#[test]
fn baseline_tolerance() {
    let dir = baselines_dir();
    let row = tracealloc::measure(|| make_row(16)).1;
    assert_eq!((row.allocs, row.bytes_allocated), (1, 128));
    // 120 B recorded: 128 is 6.7 % more (the returned row is live at the end).
    std::fs::write(
        dir.join("tolerance.txt"),
        "allocations: 1\nbytes: 120\npeak: 120\nlive: 120\n",
    )
    .unwrap();
    tracealloc::assert_alloc_baseline!(
        "target/tracealloc-test-baselines/tolerance.txt",
        make_row(16),
        tolerance = 0.1
    );
    let msg = message(|| {
        tracealloc::assert_alloc_baseline!(
            "target/tracealloc-test-baselines/tolerance.txt",
            make_row(16),
            tolerance = 0.05
        );
    });
    assert!(
        msg.contains("(within +5%): bytes: 120 -> 128, peak: 120 -> 128, live: 120 -> 128."),
        "{msg}"
    );
    let msg = message(|| {
        tracealloc::assert_alloc_baseline!(
            "target/tracealloc-test-baselines/tolerance.txt",
            make_row(16)
        );
    });
    assert!(
        msg.contains("(exactly): bytes: 120 -> 128, peak: 120 -> 128, live: 120 -> 128."),
        "{msg}"
    );
    // Fewer than recorded passes with a tolerance.
    tracealloc::assert_alloc_baseline!(
        "target/tracealloc-test-baselines/tolerance.txt",
        make_row(1),
        tolerance = 0.1
    );
}

/// Over the records one assertion keeps, a leak check refuses rather than
/// guesses; the counts still count every allocation.
#[test]
fn too_many_allocations_for_a_leak_check() {
    let msg = message(|| {
        tracealloc::assert_no_leak!({
            for i in 0..70_000u32 {
                drop(black_box(Box::new(i)));
            }
        })
    });
    assert!(
        msg.contains("cannot be checked for leaks: 4464 of its allocations could not be recorded"),
        "{msg}"
    );
    tracealloc::assert_allocs!(70_000, {
        for i in 0..70_000u32 {
            drop(black_box(Box::new(i)));
        }
    });
}

/// What the baseline test runs in a child process (ignored here).
#[test]
#[ignore]
fn baseline_subject() {
    let extra = std::env::var_os("SUBJECT_EXTRA").is_some();
    // The assertion is on the next line. // line: subject
    tracealloc::assert_alloc_baseline!("target/tracealloc-test-baselines/two_lines.txt", {
        let n = two_lines();
        if extra {
            black_box(make_row(2)); // line: extra
        }
        n
    });
}

fn run_subject(env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["baseline_subject", "--exact", "--ignored", "--nocapture"]);
    cmd.env_remove(tracealloc::BASELINE_ENV)
        .env_remove("SUBJECT_EXTRA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn baselines_are_recorded_on_request_and_then_hold() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tracealloc-test-baselines/two_lines.txt");
    let _ = std::fs::remove_file(&path);
    let (ok, text) = run_subject(&[]);
    assert!(
        !ok && text.contains("does not exist") && text.contains("TRACEALLOC_BASELINE=record"),
        "{text}"
    );
    assert!(!path.exists(), "a missing baseline must not record itself");
    let (ok, text) = run_subject(&[("TRACEALLOC_BASELINE", "record")]);
    assert!(ok, "{text}");
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        file.contains("allocations: 3\n") && file.contains("live: 0\n"),
        "{file}"
    );
    let (ok, text) = run_subject(&[]);
    assert!(ok, "{text}");
    let (ok, text) = run_subject(&[("SUBJECT_EXTRA", "1")]);
    assert!(!ok, "{text}");
    assert!(text.contains("allocations: 3 -> 4"), "{text}");
    let bytes = 2 * name_bytes() + 128;
    assert!(
        text.contains(&format!("bytes: {bytes} -> {}", bytes + 16)),
        "{text}"
    );
    // The new allocation: at make_row's line, from the added line.
    let row = format!(
        "2 allocations, {} B, at tests/assertions.rs:{}",
        128 + 16,
        line_of("row")
    );
    // The line in the expression where a debug build can name it; the
    // assertion's own line where an optimized one may have folded closures.
    let extra = if cfg!(debug_assertions) {
        format!(
            "1 allocation, 16 B, from:\n        tests/assertions.rs:{} (in the asserted expression)",
            line_of("extra")
        )
    } else {
        format!(
            "1 allocation, 16 B, from:\n        tests/assertions.rs:{} (the asserted expression)",
            line_of("subject") + 1
        )
    };
    assert!(
        text.contains(&row) && text.contains(&extra),
        "expected `{row}` and `{extra}` in:\n{text}"
    );
    // A value of the variable other than `record` is refused.
    let (ok, text) = run_subject(&[("TRACEALLOC_BASELINE", "update")]);
    assert!(
        !ok && text.contains("TRACEALLOC_BASELINE=\"update\" is not understood"),
        "{text}"
    );
    // A corrupt file is refused with what to do.
    std::fs::write(&path, "allocations: three\n").unwrap();
    let (ok, text) = run_subject(&[]);
    assert!(
        !ok && text.contains("is not a baseline file") && text.contains("line 1"),
        "{text}"
    );
    std::fs::remove_file(&path).unwrap();
}

/// An expression that panics ends its assertion's recording all the same:
/// a recording left open would grow with every later assertion on the
/// thread, until it recorded nothing more.
#[test]
fn a_panic_inside_leaves_no_recording_open() {
    for _ in 0..70 {
        let r = catch_unwind(|| {
            tracealloc::assert_no_alloc!({
                let rows: Vec<Vec<u64>> = (0..1000).map(|_| make_row(1)).collect();
                panic!("inside, after {} rows", rows.len());
            })
        });
        assert!(r.is_err());
    }
    let msg = message(|| {
        tracealloc::assert_no_alloc!(make_row(2));
    });
    assert!(
        msg.contains(&format!(
            "1 allocation, 16 B, at tests/assertions.rs:{} (",
            line_of("row")
        )),
        "{msg}"
    );
    assert!(!msg.contains("not recorded"), "{msg}");
}
