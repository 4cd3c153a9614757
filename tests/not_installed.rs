//! A test file that forgot `#[global_allocator]`: every reading that would be
//! a zero meaning nothing fails with the line to add, instead of passing.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, which must panic with a message naming `what` and the missing
/// lines.
fn fails_with_the_line(what: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err(what);
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let call = what.split("::").last().unwrap();
    assert!(
        msg.starts_with(&format!("tracealloc: {call} needs")),
        "{what}: {msg}"
    );
    assert!(
        msg.contains("needs tracealloc::TraceAlloc as the global allocator"),
        "{what}: {msg}"
    );
    assert!(
        msg.contains(
            "#[global_allocator]\n    static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();"
        ),
        "{what}: {msg}"
    );
}

#[test]
fn is_installed_says_no_and_stats_fails() {
    assert!(!tracealloc::is_installed());
    fails_with_the_line("stats", || {
        tracealloc::stats();
    });
}

#[test]
fn measure_and_the_assertions_fail_loudly() {
    fails_with_the_line("measure", || {
        let _ = tracealloc::measure(|| std::hint::black_box(vec![0u8; 1 << 20]));
    });
    // This would pass with all-zero counts: it must not.
    fails_with_the_line("assert_no_alloc!", || {
        tracealloc::assert_no_alloc!(std::hint::black_box(vec![0u8; 1 << 20]));
    });
    fails_with_the_line("assert_max_allocs!", || {
        tracealloc::assert_max_allocs!(3, 1 + 1);
    });
    fails_with_the_line("assert_allocs!", || {
        tracealloc::assert_allocs!(0, 1 + 1);
    });
    fails_with_the_line("assert_max_bytes!", || {
        tracealloc::assert_max_bytes!(0, 1 + 1);
    });
    fails_with_the_line("assert_no_leak!", || {
        tracealloc::assert_no_leak!(1 + 1);
    });
    // Before the baseline file is looked at (it does not exist).
    fails_with_the_line("assert_alloc_baseline!", || {
        tracealloc::assert_alloc_baseline!("target/no-such-baseline.txt", 1 + 1);
    });
}

#[test]
fn tracing_does_not_start() {
    fails_with_the_line("start", || tracealloc::start(1));
    fails_with_the_line("Config::start", || {
        tracealloc::Config::new().frames(4).start()
    });
    assert!(!tracealloc::is_tracing());
    fails_with_the_line("take_snapshot", || {
        tracealloc::take_snapshot();
    });
}
