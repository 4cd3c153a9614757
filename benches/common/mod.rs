//! Workloads shared by every allocator-mode bench binary, so that each mode
//! runs identical code. A bench binary sets its `#[global_allocator]` and calls
//! [`main`]; `benches/compare.rs` runs the binaries and sets them side by side.
//!
//! Protocol: `<binary> WORKLOAD [--quick | --scale F]` runs one workload once
//! and prints one line:
//! `result mode=M workload=W secs=S ops=N checksum=C peak_rss_kib=K`, where
//! `secs` times the workload's own work (not the process start), or
//! `result mode=M workload=W skipped` when the mode cannot run it.
//! `--scale F` multiplies every workload's size (default 1, sized to take
//! 0.5–2 s under the system allocator on a 2-core machine; `--quick` is
//! 0.05).

#[allow(dead_code)] // used by the tracing modes only
pub mod many_stacks;
mod unchosen;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Every workload, in the order the runner shows them.
pub const WORKLOADS: &[&str] = &[
    "churn",
    "btree",
    "json",
    "threads",
    "threads-all",
    "big",
    "dense",
    "ring",
    "shuffle",
    "deep",
    "snapshot",
];

/// What a mode's binary adds to the shared workloads.
pub struct Mode {
    /// The name printed in the result line.
    pub name: String,
    /// Runs the `snapshot` workload (tracing modes only): given the live
    /// blocks are allocated, times taking, grouping, dumping and loading a
    /// snapshot, returning the time and a checksum.
    pub snapshot: Option<fn() -> (Duration, u64)>,
}

/// xorshift64*: deterministic, allocation-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
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

/// Builds a `BTreeMap<String, Vec<u32>>` of `n` entries, then drops it.
fn btree(n: u64) -> u64 {
    let mut rng = Rng(0xb7ee);
    let mut map: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for i in 0..n {
        let r = rng.next();
        let key = format!("key-{:016x}-{i}", r);
        let len = 1 + (r % 8) as usize;
        map.insert(key, (0..len as u32).collect());
    }
    let sum = map.values().map(|v| v.len() as u64).sum::<u64>() + map.len() as u64;
    drop(black_box(map));
    sum
}

/// A deterministic JSON document of about `bytes` bytes.
fn json_document(bytes: usize) -> String {
    let mut doc = String::with_capacity(bytes + 1024);
    doc.push_str("{\"items\":[");
    let mut i = 0u64;
    while doc.len() < bytes {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            r#"{{"id":{i},"name":"item {i}","price":{}.{:02},"tags":["a{}","b{}"],"dims":{{"w":{},"h":{}}},"ok":{}}}"#,
            i % 1000,
            i % 100,
            i % 7,
            i % 11,
            i % 50,
            i % 30,
            i.is_multiple_of(3)
        ));
        i += 1;
    }
    doc.push_str("]}");
    doc
}

/// Allocates (zeroed), touches every page of, and frees `n` buffers of
/// 1–8 MiB: the shape of loading a model's tensors.
fn big(n: u64) -> u64 {
    let mut rng = Rng(0xb16);
    let mut sum = 0u64;
    for _ in 0..n {
        let size = (1 << 20) + (rng.next() % (7 << 20)) as usize;
        let mut v = vec![0u8; size];
        for page in v.chunks_mut(4096) {
            page[0] = 1;
        }
        sum = sum.wrapping_add(
            black_box(&v)
                .iter()
                .step_by(4096)
                .map(|&b| b as u64)
                .sum::<u64>(),
        );
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
pub fn main(mode: Mode) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scale = 1.0f64;
    let mut workload = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => scale = 0.05,
            "--scale" => {
                i += 1;
                scale = args
                    .get(i)
                    .and_then(|n| n.parse().ok())
                    .filter(|&f: &f64| f > 0.0)
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
        Some(w) => run(&mode, &w, scale),
        // `cargo bench` runs every bench binary without arguments: run them all.
        None => WORKLOADS.iter().for_each(|w| run(&mode, w, scale)),
    }
}

fn sized(base: f64, scale: f64) -> u64 {
    ((base * scale) as u64).max(1)
}

fn run(mode: &Mode, workload: &str, scale: f64) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let start = Instant::now();
    let (ops, checksum, secs) = match workload {
        "churn" => {
            let steps = sized(20e6, scale);
            let sum = churn(black_box(0x5eed), steps);
            (steps, sum, start.elapsed())
        }
        "btree" => {
            let n = sized(500e3, scale);
            let sum = btree(n) + btree(n);
            (2 * n, sum, start.elapsed())
        }
        "json" => {
            let doc = json_document(sized(30e6, scale) as usize);
            let start = Instant::now();
            let mut sum = 0u64;
            for _ in 0..3 {
                let v: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
                sum = sum.wrapping_add(v["items"].as_array().map_or(0, |a| a.len() as u64));
                drop(black_box(v));
            }
            (3 * doc.len() as u64, sum, start.elapsed())
        }
        // Churn on 2 threads; and on every core, where there are more.
        "threads" | "threads-all" => {
            let n = if workload == "threads" { 2 } else { threads };
            if workload == "threads-all" && threads <= 2 {
                println!("result mode={} workload={workload} skipped", mode.name);
                return;
            }
            let steps = sized(20e6, scale);
            let handles: Vec<_> = (0..n as u64)
                .map(|t| std::thread::spawn(move || churn(black_box(0x5eed + t), steps)))
                .collect();
            let sum = handles
                .into_iter()
                .map(|h| h.join().expect("worker"))
                .fold(0, u64::wrapping_add);
            (n as u64 * steps, sum, start.elapsed())
        }
        // The live table's hardest case under glibc: its smallest blocks
        // packed side by side, then freed in random order.
        "dense" => {
            let n = sized(4e6, scale) as usize;
            let mut v: Vec<Box<[u64; 2]>> = (0..n as u64).map(|i| Box::new([i, i])).collect();
            let mut r = Rng(0x5eed);
            for i in (1..n).rev() {
                v.swap(i, (r.next() % (i as u64 + 1)) as usize);
            }
            let sum = v.iter().map(|b| b[0]).fold(0, u64::wrapping_add);
            drop(v);
            (n as u64, sum, start.elapsed())
        }
        "big" => {
            // glibc soon serves these from its heap rather than fresh maps
            // (its mmap threshold rises as they are freed), so most of the
            // cost is zeroing: thousands of buffers to reach the target time.
            let n = sized(8000.0, scale);
            (n, big(n), start.elapsed())
        }
        "ring" => {
            let steps = sized(3e6, scale);
            (
                steps,
                unchosen::ring(black_box(0x717e), steps),
                start.elapsed(),
            )
        }
        "shuffle" => {
            let rounds = sized(40.0, scale);
            let sum = unchosen::shuffle(50_000, rounds);
            (rounds * 50_000, sum, start.elapsed())
        }
        "deep" => {
            let descents = sized(120e3, scale);
            (descents * 64, unchosen::deep(descents), start.elapsed())
        }
        "snapshot" => match mode.snapshot {
            Some(f) => {
                let (secs, sum) = f();
                (1, sum, secs)
            }
            None => {
                println!("result mode={} workload=snapshot skipped", mode.name);
                return;
            }
        },
        other => {
            eprintln!("unknown workload {other:?}; known: {WORKLOADS:?}");
            std::process::exit(2);
        }
    };
    println!(
        "result mode={} workload={workload} secs={:.6} ops={ops} checksum={checksum} peak_rss_kib={}",
        mode.name,
        secs.as_secs_f64(),
        peak_rss_kib()
    );
}
