//! Top-N reports on a real workload: parse a generated JSON document of about
//! 20 MiB into `serde_json::Value`, and show where the memory lives and what
//! the parse added, the way `tracemalloc`'s reports do.
//!
//! `cargo run --release --example top_n`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use tracealloc::{Filter, KeyType, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// A deterministic document: records with names, tags and numbers.
fn make_document(records: usize) -> String {
    let mut doc = String::with_capacity(records * 200);
    doc.push_str("{\"records\":[");
    for i in 0..records {
        if i > 0 {
            doc.push(',');
        }
        let _ = write!(
            doc,
            r#"{{"id":{i},"name":"record number {i}","score":{},"tags":["t{}","t{}","t{}"],"owner":{{"name":"user{}","active":{}}}}}"#,
            (i * 7919) % 1000,
            i % 13,
            i % 17,
            i % 19,
            i % 1000,
            i % 2 == 0
        );
    }
    doc.push_str("]}");
    doc
}

/// Builds an index over the parsed records: the part of "your code" in this
/// workload.
fn index_by_owner(v: &serde_json::Value) -> std::collections::HashMap<String, Vec<u64>> {
    let mut index: std::collections::HashMap<String, Vec<u64>> = std::collections::HashMap::new();
    for r in v["records"].as_array().into_iter().flatten() {
        let owner = r["owner"]["name"].as_str().unwrap_or("").to_string();
        index
            .entry(owner)
            .or_default()
            .push(r["id"].as_u64().unwrap_or(0));
    }
    index
}

fn main() {
    // Deep enough to reach from serde_json's recursive parser back to this file.
    tracealloc::start(32);

    let t = Instant::now();
    let doc = make_document(120_000);
    let before = tracealloc::take_snapshot();
    let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
    let index = index_by_owner(&value);
    let after = tracealloc::take_snapshot();
    let elapsed = t.elapsed();

    println!(
        "Parsed a {:.1} MiB JSON document into serde_json::Value ({} records) and indexed it by owner ({} owners), in {:.2?}.",
        doc.len() as f64 / (1 << 20) as f64,
        value["records"].as_array().map_or(0, Vec::len),
        index.len(),
        elapsed
    );
    let (traced, peak) = tracealloc::traced_memory();
    println!(
        "Traced memory now {:.1} MiB (peak {:.1} MiB); the tracer holds {:.1} MiB.\n",
        traced as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64,
        tracealloc::tracer_memory() as f64 / (1 << 20) as f64
    );

    println!("== Where the live memory is, by allocating line ==");
    print!("{}", after.top(10, KeyType::Lineno));

    println!("\n== What the parse and the index added (after - before) ==");
    print!("{}", after.top_diff(&before, 10, KeyType::Lineno));

    println!("\n== The same, as tracemalloc's StatisticDiff lines ==");
    for d in after
        .compare_to(&before, KeyType::Lineno, false)
        .iter()
        .take(5)
    {
        println!("{d}");
    }

    // Which lines of this example are responsible, counting every frame of
    // each traceback (cumulative) that lies in this file.
    let mine = after.filter_traces(&[Filter::include("examples/top_n.rs").all_frames(true)]);
    println!("\n== Lines of this example, cumulative over the tracebacks ==");
    for s in mine
        .statistics(KeyType::Lineno, true)
        .iter()
        .filter(|s| s.traceback.frames()[0].filename() == "examples/top_n.rs")
        .take(5)
    {
        println!("{s}");
    }

    // The same, without the filter: each block at the first line of this
    // example's own code in its stack, however deep serde's frames go.
    println!("\n== By the lines of your code (KeyType::UserLine) ==");
    print!("{}", after.top(5, KeyType::UserLine));

    // Is anything held twice? (The document and the parsed value hold the
    // same text in different forms: no two blocks hold the same bytes.)
    println!();
    print!("{}", after.duplicate_instances(1 << 20));

    tracealloc::stop();
    black_box((doc, value, index));
}
