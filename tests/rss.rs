//! `rss()` follows the memory the process touches. Process-wide, so alone in
//! its own test binary.

use std::hint::black_box;

use tracealloc::{rss, stats, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

#[test]
#[cfg(target_os = "linux")]
fn rss_grows_with_touched_memory_and_heap_agrees() {
    const SIZE: u64 = 64 << 20;
    let rss0 = rss().expect("Linux reports RSS");
    let heap0 = stats().current_bytes;
    let mut v = black_box(Vec::<u8>::with_capacity(SIZE as usize));
    // Untouched pages are not resident yet; touch every one.
    v.resize(SIZE as usize, 1);
    let rss1 = rss().unwrap();
    let heap1 = stats().current_bytes;
    assert!(
        rss1 >= rss0 + SIZE * 15 / 16,
        "RSS {rss0} -> {rss1} after touching {SIZE} B"
    );
    assert!(heap1 >= heap0 + SIZE);
    drop(black_box(v));
    // glibc returns a block this large to the system at once.
    let rss2 = rss().unwrap();
    assert!(
        rss2 + SIZE * 15 / 16 <= rss1,
        "RSS {rss1} -> {rss2} after freeing {SIZE} B"
    );
}

#[test]
#[cfg(not(target_os = "linux"))]
fn rss_is_none_where_unsupported() {
    assert_eq!(rss(), None);
}
