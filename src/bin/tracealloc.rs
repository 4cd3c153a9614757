//! The `tracealloc` command-line tool (feature `cli`).

fn main() {}
