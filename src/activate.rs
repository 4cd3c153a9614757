//! Profiling a program with one environment variable (TRACEALLOC).
