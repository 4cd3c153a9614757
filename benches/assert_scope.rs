//! What an allocation assertion costs: per allocation inside an asserted
//! expression (its thread's stacks are recorded), and per allocation on
//! another thread while the assertion is open (nothing is recorded there).
//! Printed as ratios to the same loop outside any assertion, measured in the
//! same run, alternating, median of the rounds:
//!
//! ```sh
//! cargo bench --bench assert_scope              # release, this build's capture method
//! RUSTFLAGS="-C force-frame-pointers=yes" cargo bench --bench assert_scope --target-dir target/fp
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// Allocations per asserted expression (an assertion keeps at most 65 536
/// records; a test's expression makes far fewer).
const PER_SCOPE: u64 = 1000;
const ROUNDS: usize = 7;

#[inline(never)]
fn work(n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        let v = black_box(vec![i as u8; 64]);
        sum += v.len() as u64;
    }
    sum
}

/// Nanoseconds per allocation (and free) of `scopes` runs of `work`, each
/// inside `wrap`.
fn time(scopes: u64, wrap: &dyn Fn() -> u64) -> f64 {
    let start = Instant::now();
    let mut total = 0;
    for _ in 0..scopes {
        total += wrap();
    }
    black_box(total);
    start.elapsed().as_nanos() as f64 / (scopes * PER_SCOPE) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let scopes = 2000;
    let plain = || work(PER_SCOPE);
    let measured = || tracealloc::measure(|| work(PER_SCOPE)).0;
    let asserted = || tracealloc::assert_allocs!(PER_SCOPE, work(PER_SCOPE));
    // Warm up: the capture method is chosen at the first assertion.
    black_box(asserted());
    let (mut base, mut m, mut a) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.push(time(scopes, &plain));
        m.push(time(scopes, &measured));
        a.push(time(scopes / 10, &asserted));
    }
    let (base, m, a) = (median(base), median(m), median(a));
    println!(
        "capture method: {:?}",
        tracealloc::capture_method().map_or("none".into(), |c| format!("{c:?}"))
    );
    println!("this thread, per allocation and free of 64 B:");
    println!("  no scope                 {base:8.1} ns");
    println!("  inside measure           {m:8.1} ns  ({:.2}x)", m / base);
    println!(
        "  inside an assertion      {a:8.1} ns  ({:.2}x): the stack captured and recorded",
        a / base
    );

    // Another thread allocates while this one holds an assertion open, or
    // while it does nothing; alternating, the other thread's time per
    // allocation.
    let open = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let per_alloc_bits = Arc::new(AtomicU64::new(0));
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    for round in 0..2 * ROUNDS {
        let asserting = round % 2 == 1;
        stop.store(false, SeqCst);
        open.store(false, SeqCst);
        let other = {
            let (open, stop, out) = (open.clone(), stop.clone(), per_alloc_bits.clone());
            std::thread::spawn(move || {
                while !open.load(SeqCst) {
                    std::hint::spin_loop();
                }
                let t = time(scopes, &|| work(PER_SCOPE));
                out.store(t.to_bits(), SeqCst);
                stop.store(true, SeqCst);
            })
        };
        if asserting {
            tracealloc::assert_max_allocs!(u64::MAX, {
                open.store(true, SeqCst);
                while !stop.load(SeqCst) {
                    std::thread::yield_now();
                }
            });
        } else {
            open.store(true, SeqCst);
            while !stop.load(SeqCst) {
                std::thread::yield_now();
            }
        }
        other.join().unwrap();
        let t = f64::from_bits(per_alloc_bits.load(SeqCst));
        if asserting {
            busy.push(t)
        } else {
            idle.push(t)
        }
    }
    let (idle, busy) = (median(idle), median(busy));
    println!("another thread, per allocation and free of 64 B:");
    println!("  no assertion open        {idle:8.1} ns");
    println!(
        "  an assertion open here   {busy:8.1} ns  ({:.2}x)",
        busy / idle
    );
}
