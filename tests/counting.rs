//! `TraceAlloc` over a probe allocator: exact counts for known allocations,
//! forwarding of every call (realloc stays realloc), the null path, `measure`
//! under a noisy second thread, nesting, and the assertion macros.
//!
//! Every assertion is thread-scoped (`measure`, and the probe's per-thread
//! call counts), so these tests run in parallel with each other.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracealloc::{measure, Delta, TraceAlloc};

/// Forwards to `System`, counts the calls it receives on each thread, and can
/// be told to fail (return null) on this thread.
struct Probe;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Calls {
    alloc: u64,
    alloc_zeroed: u64,
    realloc: u64,
    dealloc: u64,
}

thread_local! {
    static CALLS: Cell<Calls> = const { Cell::new(Calls { alloc: 0, alloc_zeroed: 0, realloc: 0, dealloc: 0 }) };
    static FAIL: Cell<bool> = const { Cell::new(false) };
}

fn note(f: impl FnOnce(&mut Calls)) {
    let _ = CALLS.try_with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

fn failing() -> bool {
    FAIL.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to `System` unchanged, or returns null (allowed for every
// allocating method) when told to fail.
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(|c| c.alloc += 1);
        if failing() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(|c| c.alloc_zeroed += 1);
        if failing() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(|c| c.realloc += 1);
        if failing() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(|c| c.dealloc += 1);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: TraceAlloc<Probe> = TraceAlloc::new(Probe);

/// Runs `f`, returning what `measure` counted and the calls the probe saw.
fn observe<R>(f: impl FnOnce() -> R) -> (R, Delta, Calls) {
    let before = CALLS.with(Cell::get);
    let (r, d) = measure(f);
    let after = CALLS.with(Cell::get);
    let calls = Calls {
        alloc: after.alloc - before.alloc,
        alloc_zeroed: after.alloc_zeroed - before.alloc_zeroed,
        realloc: after.realloc - before.realloc,
        dealloc: after.dealloc - before.dealloc,
    };
    (r, d, calls)
}

fn delta(
    allocs: u64,
    frees: u64,
    reallocs: u64,
    bytes_allocated: u64,
    bytes_freed: u64,
    peak_bytes: u64,
) -> Delta {
    let mut d = Delta::default();
    d.allocs = allocs;
    d.frees = frees;
    d.reallocs = reallocs;
    d.bytes_allocated = bytes_allocated;
    d.bytes_freed = bytes_freed;
    d.peak_bytes = peak_bytes;
    d
}

#[test]
fn known_allocations_are_counted_exactly() {
    let (b, d, calls) = observe(|| black_box(Box::new([7u64; 16])));
    assert_eq!(d, delta(1, 0, 0, 128, 0, 128));
    assert_eq!(
        calls,
        Calls {
            alloc: 1,
            ..Calls::default()
        }
    );
    assert_eq!(b[15], 7);

    let ((), d, calls) = observe(|| drop(b));
    assert_eq!(d, delta(0, 1, 0, 0, 128, 0));
    assert_eq!(
        calls,
        Calls {
            dealloc: 1,
            ..Calls::default()
        }
    );

    // Three blocks live at once, then freed: peak is their sum.
    let ((), d, _) = observe(|| {
        let a = black_box(vec![1u8; 100]);
        let b = black_box(vec![2u8; 200]);
        let c = black_box(String::from("tracealloc"));
        drop((a, b, c));
    });
    assert_eq!(d, delta(3, 3, 0, 310, 310, 310));
    assert_eq!(d.net_bytes(), 0);
}

#[test]
fn alloc_zeroed_is_forwarded_and_counted() {
    let layout = Layout::from_size_align(4096, 64).unwrap();
    let (p, d, calls) = observe(|| {
        // SAFETY: `layout` has a non-zero size.
        black_box(unsafe { alloc_zeroed(layout) })
    });
    assert!(!p.is_null());
    assert_eq!(p as usize % 64, 0, "alignment kept");
    // SAFETY: `p` is a live block of `layout.size()` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert_eq!(d, delta(1, 0, 0, 4096, 0, 4096));
    assert_eq!(
        calls,
        Calls {
            alloc_zeroed: 1,
            ..Calls::default()
        }
    );
    // SAFETY: `p` was allocated above with `layout`.
    unsafe { dealloc(p, layout) };

    // `vec![0; n]` takes the zeroed path too.
    let (v, d, calls) = observe(|| black_box(vec![0u32; 1000]));
    assert_eq!((d.allocs, d.bytes_allocated), (1, 4000));
    assert_eq!(calls.alloc_zeroed, 1);
    drop(v);
}

#[test]
fn realloc_growth_and_shrink_stay_reallocs() {
    let layout = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: `layout` has a non-zero size.
    let p = black_box(unsafe { alloc(layout) });
    assert!(!p.is_null());
    // SAFETY: `p` is a live block of at least 100 bytes.
    unsafe { p.write_bytes(0xAB, 100) };

    // SAFETY: `p` is live with `layout`; 5000 is a valid size for align 8.
    let (q, d, calls) = observe(|| black_box(unsafe { realloc(p, layout, 5000) }));
    assert!(!q.is_null());
    assert_eq!(d, delta(0, 0, 1, 4900, 0, 4900));
    assert_eq!(
        calls,
        Calls {
            realloc: 1,
            ..Calls::default()
        },
        "realloc forwarded as realloc"
    );
    // SAFETY: the first 100 bytes were carried over by realloc.
    assert!(unsafe { std::slice::from_raw_parts(q, 100) }
        .iter()
        .all(|&b| b == 0xAB));

    let grown = Layout::from_size_align(5000, 8).unwrap();
    // SAFETY: `q` is live with `grown`; 10 is a valid size for align 8.
    let (r, d, calls) = observe(|| black_box(unsafe { realloc(q, grown, 10) }));
    assert!(!r.is_null());
    assert_eq!(d, delta(0, 0, 1, 0, 4990, 0));
    assert_eq!(d.net_bytes(), -4990);
    assert_eq!(
        calls,
        Calls {
            realloc: 1,
            ..Calls::default()
        }
    );
    // SAFETY: the first 10 bytes were carried over by realloc.
    assert!(unsafe { std::slice::from_raw_parts(r, 10) }
        .iter()
        .all(|&b| b == 0xAB));

    let small = Layout::from_size_align(10, 8).unwrap();
    let ((), d, _) = observe(|| {
        // SAFETY: `r` is live with `small`.
        unsafe { dealloc(r, small) }
    });
    assert_eq!(d, delta(0, 1, 0, 0, 10, 0));

    // A Vec growing by pushes: one alloc, then reallocs, all counted.
    let (v, d, calls) = observe(|| {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..1000 {
            v.push(black_box(i));
        }
        v
    });
    assert_eq!(d.allocs, 1);
    assert!(d.reallocs >= 5, "{d}");
    assert_eq!(calls.realloc, d.reallocs);
    assert_eq!(d.net_bytes(), (v.capacity() * 8) as i64);
    assert_eq!(d.peak_bytes, v.capacity() as u64 * 8);
}

#[test]
fn null_from_the_inner_allocator_is_returned_and_not_counted() {
    let layout = Layout::from_size_align(256, 16).unwrap();
    // SAFETY: `layout` has a non-zero size.
    let live = black_box(unsafe { alloc(layout) });
    assert!(!live.is_null());
    // SAFETY: `live` is a block of 256 bytes.
    unsafe { live.write_bytes(0x5A, 256) };

    FAIL.with(|f| f.set(true));
    let ((a, z, r), d, calls) = observe(|| {
        // SAFETY: `layout` has a non-zero size; `live` is live with `layout`.
        black_box(unsafe {
            (
                alloc(layout),
                alloc_zeroed(layout),
                realloc(live, layout, 1 << 20),
            )
        })
    });
    FAIL.with(|f| f.set(false));

    assert!(a.is_null() && z.is_null() && r.is_null());
    assert_eq!(d, Delta::default(), "a failed call counts nothing");
    assert_eq!(
        calls,
        Calls {
            alloc: 1,
            alloc_zeroed: 1,
            realloc: 1,
            dealloc: 0
        }
    );
    // A failed realloc leaves the block as it was.
    // SAFETY: `live` is still a live block of 256 bytes.
    assert!(unsafe { std::slice::from_raw_parts(live, 256) }
        .iter()
        .all(|&b| b == 0x5A));
    let ((), d, _) = observe(|| {
        // SAFETY: `live` is live with `layout`.
        unsafe { dealloc(live, layout) }
    });
    assert_eq!(d, delta(0, 1, 0, 0, 256, 0));
}

#[test]
fn measure_is_exact_while_another_thread_churns() {
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let noise = {
        let (stop, progress) = (Arc::clone(&stop), Arc::clone(&progress));
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut keep = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                keep.push(black_box(vec![n as u8; 1 + (n % 300) as usize]));
                if keep.len() > 100 {
                    keep.clear();
                }
                n += 1;
                progress.store(n, Ordering::Relaxed);
            }
        })
    };
    // Measure only while the noise really runs: from its first thousand
    // allocations until it has made 20 000 more (and at least 2000 rounds).
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < 1000 {
        assert!(Instant::now() < deadline, "the noisy thread never ran");
        std::thread::yield_now();
    }
    let noise_at_start = progress.load(Ordering::Relaxed);
    let mut i = 0usize;
    while i < 2000 || progress.load(Ordering::Relaxed) < noise_at_start + 20_000 {
        assert!(Instant::now() < deadline, "the noisy thread stalled");
        i += 1;
        let size = 1 + i % 5000;
        let (v, d) = measure(|| {
            let a = black_box(vec![0u8; size]);
            let b = black_box(vec![1u16; size]);
            drop(a);
            b
        });
        assert_eq!(
            d,
            delta(2, 1, 0, 3 * size as u64, size as u64, 3 * size as u64),
            "round {i}"
        );
        drop(v);
    }
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
}

#[test]
fn nested_measure_gives_inner_and_outer_figures() {
    let ((inner, keep), outer) = measure(|| {
        let a = black_box(vec![0u8; 1000]);
        let (keep, inner) = measure(|| {
            let big = black_box(vec![0u8; 50_000]);
            drop(big);
            black_box(vec![0u8; 10])
        });
        drop(a);
        (inner, keep)
    });
    assert_eq!(inner, delta(2, 1, 0, 50_010, 50_000, 50_000));
    assert_eq!(outer, delta(3, 2, 0, 51_010, 51_000, 51_000));
    assert_eq!(outer.net_bytes(), 10);
    drop(keep);

    // A panic inside leaves `measure` usable, and the outer one still counts.
    let ((), outer) = measure(|| {
        let r = std::panic::catch_unwind(|| {
            measure(|| {
                let v = black_box(vec![0u8; 64]);
                std::mem::forget(v);
                panic!("boom");
            })
        });
        assert!(r.is_err());
    });
    assert!(outer.allocs >= 1, "{outer}");
    assert!(outer.bytes_allocated >= 64, "{outer}");
}

#[test]
fn assert_no_alloc_passes_and_reports() {
    let mut v = Vec::with_capacity(8);
    tracealloc::assert_no_alloc!(v.push(1));
    let n =
        tracealloc::assert_max_allocs!(2, black_box(vec![1, 2]).len() + black_box(vec![3]).len());
    assert_eq!(n, 3);

    let err = std::panic::catch_unwind(|| {
        tracealloc::assert_no_alloc!(black_box(vec![0u8; 24]));
    })
    .expect_err("an allocation must fail the assertion");
    let msg = err.downcast_ref::<String>().expect("a formatted message");
    assert!(
        msg.starts_with("tracealloc: `black_box(vec![0u8; 24])` made 1 allocation, none expected: 1 allocs, 0 frees, 0 reallocs, 24 B allocated, 0 B freed (net +24 B, peak +24 B)"),
        "{msg}"
    );

    let err = std::panic::catch_unwind(|| {
        let mut s = String::with_capacity(1);
        tracealloc::assert_max_allocs!(1, {
            s.push_str("more than one byte");
            black_box(vec![1u8]);
        });
    })
    .expect_err("a realloc plus an alloc is two");
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("made 2 allocations (1 new block and 1 realloc), at most 1 expected"),
        "{msg}"
    );
}
