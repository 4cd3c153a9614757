//! Allocations after `main` returns: in an `atexit` handler and in the main
//! thread's thread-local destructors. Both must keep working, be counted, and
//! (tracing was started in `main` and never stopped) be traced.
//! A test with its own `main` (`harness = false`); the verdict is the exit code.

use std::cell::RefCell;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// Checks one late allocation of `size` bytes; exits the process with status 1
/// on a miscount (a panic here would abort without saying what was wrong).
fn check_late_allocation(when: &str, size: usize) {
    let before = tracealloc::stats();
    let (v, d) = tracealloc::measure(|| black_box(vec![7u8; size]));
    let after = tracealloc::stats();
    let traced = tracealloc::object_traceback(v.as_ptr()).is_some();
    let ok = traced
        && v.len() == size
        && v.iter().all(|&b| b == 7)
        && d.allocs == 1
        && d.bytes_allocated == size as u64
        && after.total_allocs == before.total_allocs + 1
        && after.current_bytes == before.current_bytes + size as u64;
    eprintln!("{when}: {d}; traced: {traced}; stats {before} -> {after}");
    if !ok {
        eprintln!("{when}: FAILED (expected 1 traced allocation of {size} B)");
        // SAFETY: `_exit` ends the process at once, which is what is wanted
        // here: no further destructor runs.
        unsafe { libc::_exit(1) };
    }
    PASSED.fetch_add(1, Ordering::SeqCst);
}

static PASSED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn at_exit() {
    check_late_allocation("atexit handler", 12_345);
    let passed = PASSED.load(Ordering::SeqCst);
    // glibc runs the main thread's thread-local destructors in `exit`, before
    // the atexit handlers; elsewhere they may not run at all.
    let expected: usize = if cfg!(all(target_os = "linux", target_env = "gnu")) {
        2
    } else {
        1
    };
    eprintln!(
        "after_main: {passed} passed, {} failed",
        expected.saturating_sub(passed)
    );
    if passed < expected {
        // SAFETY: ends the process at once with a failure status.
        unsafe { libc::_exit(1) };
    }
}

struct AllocOnDrop;

impl Drop for AllocOnDrop {
    fn drop(&mut self) {
        check_late_allocation("main thread's TLS destructor", 23_456);
    }
}

thread_local! {
    static LATE: RefCell<Option<AllocOnDrop>> = const { RefCell::new(None) };
}

fn main() -> ExitCode {
    // SAFETY: `at_exit` is an `extern "C" fn()` that lives for the whole
    // program.
    if unsafe { libc::atexit(at_exit) } != 0 {
        eprintln!("after_main: atexit failed");
        return ExitCode::FAILURE;
    }
    LATE.with(|l| *l.borrow_mut() = Some(AllocOnDrop));
    tracealloc::start(4);
    ExitCode::SUCCESS
}
