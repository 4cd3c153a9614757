//! Workloads shared by every allocator-mode bench binary, so that each mode
//! runs identical code. A bench binary sets its `#[global_allocator]` and calls
//! [`main`]; `benches/compare.rs` runs the binaries and sets them side by side.
//!
//! Protocol: `<binary> WORKLOAD [--quick | --scale N]` runs one workload once
//! and prints one line:
//! `result mode=M workload=W secs=S ops=N checksum=C peak_rss_kib=K`.
//! `--scale N` runs N million steps per thread (default 20; `--quick` is 1).

use std::hint::black_box;
use std::time::Instant;

/// Every workload, in the order the runner shows them.
pub const WORKLOADS: &[&str] = &["churn", "threads"];

/// xorshift64*: deterministic, allocation-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Many short-lived 16..=512-byte blocks with a small live set (64 blocks):
/// each step frees one block and allocates another. Returns a checksum.
fn churn(seed: u64, steps: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<Box<[u8]>> = (0..64).map(|_| vec![0u8; 16].into_boxed_slice()).collect();
    let mut sum = 0u64;
    for _ in 0..steps {
        let r = rng.next();
        let size = 16 + (r % 497) as usize;
        let slot = (r >> 32) as usize % live.len();
        let mut block = vec![0u8; size].into_boxed_slice();
        block[size - 1] = r as u8;
        let old = std::mem::replace(&mut live[slot], black_box(block));
        sum = sum.wrapping_add(old[old.len() - 1] as u64 + old.len() as u64);
    }
    sum
}

/// The peak RSS of this process, from `/proc/self/status` (Linux), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the workload named on the command line and prints its result line.
pub fn main(mode: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scale = 20;
    let mut workload = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => scale = 1,
            "--scale" => {
                i += 1;
                scale = args
                    .get(i)
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        eprintln!("--scale needs a positive number");
                        std::process::exit(2)
                    });
            }
            // `cargo bench` passes `--bench`; ignore such flags.
            a if a.starts_with("--") => {}
            a => workload = Some(a.to_string()),
        }
        i += 1;
    }
    match workload {
        Some(w) => run(mode, &w, scale),
        // `cargo bench` runs every bench binary without arguments: run them all.
        None => WORKLOADS.iter().for_each(|w| run(mode, w, scale)),
    }
}

fn run(mode: &str, workload: &str, scale: u64) {
    let start = Instant::now();
    let (ops, checksum) = match workload {
        "churn" => {
            let steps = 1_000_000 * scale;
            (steps, churn(black_box(0x5eed), steps))
        }
        "threads" => {
            let steps = 1_000_000 * scale;
            let handles: Vec<_> = (0..2u64)
                .map(|t| std::thread::spawn(move || churn(black_box(0x5eed + t), steps)))
                .collect();
            let sum = handles
                .into_iter()
                .map(|h| h.join().expect("worker"))
                .fold(0, u64::wrapping_add);
            (2 * steps, sum)
        }
        other => {
            eprintln!("unknown workload {other:?}; known: {WORKLOADS:?}");
            std::process::exit(2);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "result mode={mode} workload={workload} secs={secs:.6} ops={ops} checksum={checksum} peak_rss_kib={}",
        peak_rss_kib()
    );
}
