//! After `fork()`, the child allocates and counts normally, even when another
//! thread of the parent was inside the allocator at the moment of the fork:
//! the counters hold no lock that the child could inherit held.
#![cfg(unix)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracealloc::{measure, stats, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

#[test]
fn child_of_fork_counts_normally() {
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                black_box(vec![0u8; 1 + n % 1000]);
                n += 1;
            }
        })
    };
    for _ in 0..20 {
        // SAFETY: the child only allocates, reads counters and calls `_exit`;
        // it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let before = stats();
            let (v, d) = measure(|| black_box(vec![9u8; 4321]));
            let after = stats();
            let ok = d.allocs == 1
                && d.bytes_allocated == 4321
                && after.total_allocs == before.total_allocs + 1
                && after.current_bytes == before.current_bytes + 4321
                && v[4320] == 9;
            // SAFETY: ends the child at once with the verdict as its status.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid place to write.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally: {status:#x}"
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "child miscounted");
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
}
