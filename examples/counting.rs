//! The counters at a glance: process-wide `stats()` and RSS after each step of
//! loading a little "model" (one large weight buffer plus a vocabulary of many
//! small strings), and what `measure` counts for the load itself.
//!
//! `cargo run --release --example counting`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use tracealloc::{measure, rss, stats, Delta, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// A stand-in for a model: weights and a vocabulary.
struct Model {
    weights: Vec<f32>,
    vocab: HashMap<String, u32>,
}

impl Model {
    fn load(weights: usize, words: u32) -> Model {
        let weights: Vec<f32> = (0..weights).map(|i| (i % 97) as f32 * 0.01).collect();
        let vocab = (0..words).map(|i| (format!("token{i}"), i)).collect();
        Model { weights, vocab }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn row(step: &str, secs: f64) {
    let s = stats();
    let rss = rss().map_or_else(|| "n/a".to_string(), mib);
    println!(
        "{step:<22} {:>12} {:>12} {:>10} {:>12} {:>9.1} ms",
        mib(s.current_bytes),
        mib(s.peak_bytes),
        s.current_blocks,
        rss,
        secs * 1e3
    );
}

fn describe(what: &str, d: &Delta) {
    println!(
        "  {what}: {} allocations, {} reallocations, {} frees; net {:+.1} MiB, peak {}",
        d.allocs,
        d.reallocs,
        d.frees,
        d.net_bytes() as f64 / (1 << 20) as f64,
        mib(d.peak_bytes)
    );
}

fn main() {
    const WEIGHTS: usize = 16 << 20; // 64 MiB of f32
    const WORDS: u32 = 100_000;

    println!(
        "{:<22} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "step", "heap now", "heap peak", "blocks", "RSS", "time"
    );
    row("start", 0.0);

    let t = Instant::now();
    let (model, load) = measure(|| black_box(Model::load(WEIGHTS, WORDS)));
    row("after load", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (model2, load2) = measure(|| black_box(Model::load(WEIGHTS, WORDS)));
    row("after second load", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let ((), freed) = measure(|| drop(model2));
    row("after dropping one", t.elapsed().as_secs_f64());

    println!();
    println!("measure() of this thread's work:");
    describe("first load", &load);
    describe("second load", &load2);
    describe("drop", &freed);
    println!(
        "  the model: {} weights, {} words",
        model.weights.len(),
        model.vocab.len()
    );
    println!();
    println!("stats(): {}", stats());
}
