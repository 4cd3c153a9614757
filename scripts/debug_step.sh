#!/bin/bash
# The traced debug build's cost (docs/tracing.md, "Debug builds"): a small
# program depending on this crate by path fills a string-keyed cache from
# parsed lines (21 016 allocations a step) and prints the step's time,
# untraced and traced with start(16); each Cargo.toml variant is built in
# debug and run 15 times; the medians are printed.
#
#   bash scripts/debug_step.sh [CRATE_DIR]   (default: this repository)
set -euo pipefail
crate=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat > "$work/src/main.rs" <<'RS'
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static G: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

#[inline(never)]
fn parse_line(i: usize) -> (String, Vec<u32>) {
    let key = format!("key-{}", i % 5000);
    let vals: Vec<u32> = (0..(i % 7 + 1) as u32).collect();
    (key, vals)
}

#[inline(never)]
fn step(cache: &mut HashMap<String, Vec<u32>>, n: usize) {
    for i in 0..n {
        let (k, v) = parse_line(i);
        let s = format!("{k}:{}", v.len());
        black_box(&s);
        cache.insert(k, v);
    }
}

fn main() {
    let traced = std::env::args().nth(1).as_deref() == Some("trace");
    let mut cache = HashMap::new();
    if traced {
        tracealloc::start(16);
    }
    let t = Instant::now();
    step(&mut cache, 7000);
    println!("{:.3}", t.elapsed().as_secs_f64() * 1e3);
}
RS
base="[package]
name = \"debug-step\"
version = \"0.1.0\"
edition = \"2021\"

[dependencies]
tracealloc = { path = \"$crate\" }
"
variant() {
  printf '%s%b' "$base" "$2" > "$work/Cargo.toml"
  (cd "$work" && CARGO_TARGET_DIR="$work/target" cargo build -q)
  local t=() u=()
  for _ in $(seq 15); do
    t+=("$("$work/target/debug/debug-step" trace)")
    u+=("$("$work/target/debug/debug-step")")
  done
  python3 - "$1" "${t[*]}" "${u[*]}" <<'PY'
import statistics, sys
name, t, u = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"{name:<34} untraced {statistics.median(u):7.1f} ms   traced {statistics.median(t):7.1f} ms (min {min(t):.1f}, max {max(t):.1f})")
PY
}
line='\n[profile.dev.package.tracealloc]\nopt-level = 3\n'
two='[profile.dev.package.framehop]\nopt-level = 3\n[profile.dev.package.gimli]\nopt-level = 3\n'
variant "no profile lines" ''
variant "the tracealloc line" "$line"
variant "the Quick start's three lines" "$line$two"
