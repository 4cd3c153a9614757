//! The workloads of `benches/common` under `stats_alloc` (a peer): atomic
//! counters shared by all threads.
mod common;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    common::main(common::Mode {
        name: "stats_alloc".into(),
        snapshot: None,
    });
    std::hint::black_box(GLOBAL.stats());
}
