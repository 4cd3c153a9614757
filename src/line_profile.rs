//! memory_profiler's line-by-line table: the runtime of `#[tracealloc::profile]`.
