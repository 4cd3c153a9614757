//! Serves the current heap as pprof at `/debug/pprof/heap`.

fn main() {}
