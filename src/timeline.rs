//! A timeline: heap, peak and RSS sampled over time, with labelled marks (mprof's `run` and `plot`).
