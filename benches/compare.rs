//! Runs the allocator-mode bench binaries side by side and prints their
//! overhead as ratios against the plain system allocator, measured in the same
//! run.
//!
//! ```text
//! cargo bench --bench compare [-- --quick] [--rounds N] [--scale F] [--modes a,b,...] [--workloads a,b,...] [--instructions]
//! ```
//!
//! `--instructions` counts instructions instead of timing: each run goes
//! under `valgrind --tool=callgrind`, collecting inside the workload only
//! (`common::run`), at `--scale 0.02` unless told otherwise, one round
//! unless told otherwise. The counts do not drift as this VM's times do
//! (the same binary moves by 5–15 % between timed runs), so they can judge
//! a change of a few percent; they do not see cache misses, contention or
//! the cost of an atomic, which the timed runs do.
//!
//! It builds the mode binaries (`cargo bench --no-run`; the `-fp` modes in a
//! second build with `-C force-frame-pointers=yes`, under
//! `target/fp`), then for each round (4 by default) and workload runs every mode once,
//! reversing the order every other round (A B, B A, ...) so that the
//! machine's drift cancels. Per round it takes each mode's time over the
//! `system` mode's; the table gives the medians, and is also written as JSON
//! to `target/bench-compare.json`.

use std::collections::BTreeMap;
use std::process::Command;

#[allow(dead_code)] // only the workload list is used here
mod common;

struct Mode {
    name: &'static str,
    bench: &'static str,
    /// `TRACEALLOC_BENCH` for `alloc_tracing` (see that file).
    spec: &'static str,
    frame_pointers: bool,
}

const fn mode(
    name: &'static str,
    bench: &'static str,
    spec: &'static str,
    frame_pointers: bool,
) -> Mode {
    Mode {
        name,
        bench,
        spec,
        frame_pointers,
    }
}

/// Every mode; the first is the baseline.
const MODES: &[Mode] = &[
    mode("system", "alloc_system", "", false),
    mode("counting", "alloc_counting", "", false),
    mode(
        "sample-512k",
        "alloc_tracing",
        "frames=16,sample=524288",
        false,
    ),
    mode(
        "trace1-unwind",
        "alloc_tracing",
        "frames=1,capture=unwind",
        false,
    ),
    mode(
        "trace16-unwind",
        "alloc_tracing",
        "frames=16,capture=unwind",
        false,
    ),
    mode("system-fp", "alloc_system", "", true),
    mode(
        "sample-512k-fp",
        "alloc_tracing",
        "frames=16,sample=524288",
        true,
    ),
    mode("trace1-fp", "alloc_tracing", "frames=1,capture=fp", true),
    mode("trace16-fp", "alloc_tracing", "frames=16,capture=fp", true),
    mode(
        "trace16-unwind-fp",
        "alloc_tracing",
        "frames=16,capture=unwind",
        true,
    ),
    mode("dhat", "alloc_dhat", "", false),
    mode("stats_alloc", "alloc_stats_alloc", "", false),
];

struct Sample {
    secs: f64,
    peak_rss_kib: f64,
    checksum: String,
}

struct Args {
    quick: bool,
    rounds: usize,
    scale: Option<f64>,
    modes: Vec<&'static Mode>,
    workloads: Vec<&'static str>,
    /// Count instructions under callgrind instead of timing.
    instructions: bool,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<&str> {
        let i = args.iter().position(|a| a == flag)?;
        Some(
            args.get(i + 1)
                .map(String::as_str)
                .unwrap_or_else(|| fail(&format!("{flag} needs a value"))),
        )
    };
    let positive = |flag: &str| {
        value(flag).map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| fail(&format!("{flag} needs a positive number, got {v:?}")))
        })
    };
    let quick = args.iter().any(|a| a == "--quick");
    let instructions = args.iter().any(|a| a == "--instructions");
    let workloads: Vec<&'static str> = match value("--workloads") {
        None => common::WORKLOADS.to_vec(),
        Some(list) => list
            .split(',')
            .map(|w| {
                common::WORKLOADS
                    .iter()
                    .copied()
                    .find(|k| *k == w)
                    .unwrap_or_else(|| {
                        fail(&format!(
                            "unknown workload {w:?}; known: {}",
                            common::WORKLOADS.join(", ")
                        ))
                    })
            })
            .collect(),
    };
    let mut modes: Vec<&'static Mode> = match value("--modes") {
        None => MODES.iter().collect(),
        Some(list) => list
            .split(',')
            .map(|name| {
                MODES.iter().find(|m| m.name == name).unwrap_or_else(|| {
                    let known: Vec<&str> = MODES.iter().map(|m| m.name).collect();
                    fail(&format!(
                        "unknown mode {name:?}; known: {}",
                        known.join(", ")
                    ))
                })
            })
            .collect(),
    };
    // The baseline always runs, first.
    modes.retain(|m| m.name != MODES[0].name);
    modes.insert(0, &MODES[0]);
    let scale = value("--scale")
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|&f| f > 0.0)
                .unwrap_or_else(|| fail(&format!("--scale needs a positive number, got {v:?}")))
        })
        .or(if instructions && !quick {
            Some(0.02)
        } else {
            None
        });
    Args {
        quick,
        // Even, so that every mode runs as often before the baseline as after.
        rounds: positive("--rounds")
            .map_or(if quick || instructions { 1 } else { 4 }, |n| n as usize),
        scale,
        modes,
        workloads,
        instructions,
    }
}

fn main() {
    let args = parse_args();
    let exes: Vec<String> = {
        let plain = build(&args.modes, false);
        let fp = build(&args.modes, true);
        args.modes
            .iter()
            .map(|m| if m.frame_pointers { &fp } else { &plain }[m.bench].clone())
            .collect()
    };

    // samples[workload][mode] = one sample per round
    let mut samples: BTreeMap<&str, BTreeMap<&str, Vec<Sample>>> = BTreeMap::new();
    for round in 0..args.rounds {
        for &workload in &args.workloads {
            let mut order: Vec<usize> = (0..args.modes.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let m = args.modes[i];
                let result = run(&exes[i], m, workload, &args);
                let label = format!(
                    "round {}/{} {workload:11} {:16}",
                    round + 1,
                    args.rounds,
                    m.name
                );
                let runs = samples
                    .entry(workload)
                    .or_default()
                    .entry(m.name)
                    .or_default();
                match result {
                    Some(s) if args.instructions => {
                        eprintln!("{label} {:.1} M instructions", s.secs / 1e6);
                        runs.push(s);
                    }
                    Some(s) => {
                        eprintln!("{label} {:.3} s", s.secs);
                        runs.push(s);
                    }
                    None => eprintln!("{label} skipped"),
                }
            }
        }
    }
    report(&samples, &args);
}

fn fail(msg: &str) -> ! {
    eprintln!("compare: {msg}");
    std::process::exit(2);
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Builds the bench binaries the modes need, with or without frame
/// pointers; returns bench name -> executable.
fn build(modes: &[&Mode], frame_pointers: bool) -> BTreeMap<&'static str, String> {
    let mut benches: Vec<&str> = modes
        .iter()
        .filter(|m| m.frame_pointers == frame_pointers)
        .map(|m| m.bench)
        .collect();
    benches.sort_unstable();
    benches.dedup();
    if benches.is_empty() {
        return BTreeMap::new();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["bench", "--no-run", "--message-format=json"]);
    for b in &benches {
        cmd.args(["--bench", b]);
    }
    if frame_pointers {
        let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        cmd.env("RUSTFLAGS", format!("{flags} -C force-frame-pointers=yes"));
        cmd.arg("--target-dir").arg(target_dir().join("fp"));
        eprintln!("building the frame-pointer modes (first time: a full build)...");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo: {e}")));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        fail("building the bench binaries failed");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    benches
        .iter()
        .map(|&b| {
            let exe = stdout
                .lines()
                .filter(|l| l.contains(&format!("\"name\":\"{b}\"")))
                .find_map(|l| json_string_field(l, "executable"))
                .unwrap_or_else(|| fail(&format!("no executable for bench {b}")));
            (b, exe)
        })
        .collect()
}

/// The value of `"key":"value"` in one line of cargo's JSON (paths carry no
/// escaped quotes on the systems this runs on).
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].replace("\\\\", "\\"))
}

/// One run of one mode on one workload; `None` when the mode skips it.
fn run(exe: &str, m: &Mode, workload: &str, args: &Args) -> Option<Sample> {
    let mut cmd = if args.instructions {
        let mut c = Command::new("valgrind");
        c.args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--toggle-collect=*::common::run",
            exe,
        ]);
        c
    } else {
        Command::new(exe)
    };
    cmd.arg(workload).env("TRACEALLOC_BENCH", m.spec);
    if args.quick {
        cmd.arg("--quick");
    }
    if let Some(scale) = args.scale {
        cmd.args(["--scale", &scale.to_string()]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {exe}: {e}")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("result "))
        .filter(|_| out.status.success());
    if line.is_some_and(|l| l.ends_with(" skipped")) {
        return None;
    }
    let Some(line) = line else {
        eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!("{} {workload} gave no result", m.name));
    };
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| fail(&format!("no {k} in {line:?}")))
            .to_string()
    };
    let num = |k: &str| {
        field(k)
            .parse::<f64>()
            .unwrap_or_else(|_| fail(&format!("bad {k} in {line:?}")))
    };
    let secs = if args.instructions {
        // callgrind's summary on stderr: "==pid== Collected : N".
        let stderr = String::from_utf8_lossy(&out.stderr);
        stderr
            .lines()
            .find_map(|l| {
                l.split_once("Collected :")
                    .map(|(_, n)| n.trim().to_string())
            })
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| fail(&format!("no instruction count from callgrind: {stderr}")))
    } else {
        num("secs")
    };
    Some(Sample {
        secs,
        peak_rss_kib: if args.instructions {
            f64::NAN
        } else {
            num("peak_rss_kib")
        },
        checksum: field("checksum"),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(samples: &BTreeMap<&str, BTreeMap<&str, Vec<Sample>>>, args: &Args) {
    let base = MODES[0].name;
    println!();
    if args.instructions {
        println!(
            "instructions inside the workload (callgrind), as ratios to `{base}`; peak RSS not measured"
        );
    } else {
        println!(
            "{} round(s){}; time and peak RSS as ratios to `{base}` in the same round (median over rounds)",
            args.rounds,
            if args.quick { ", quick sizes" } else { "" }
        );
    }
    let (value_name, ratio_name) = if args.instructions {
        ("median instr", "instr ×")
    } else {
        ("median s", "time ×")
    };
    println!(
        "{:<12} {:<16} {:>12} {:>10} {:>10}",
        "workload", "mode", value_name, ratio_name, "RSS ×"
    );
    let mut json = Vec::new();
    let empty = Vec::new();
    for &workload in &args.workloads {
        let Some(by_mode) = samples.get(workload) else {
            continue;
        };
        let base_runs = by_mode.get(base).unwrap_or(&empty);
        for m in &args.modes {
            let runs = by_mode.get(m.name).unwrap_or(&empty);
            if runs.is_empty() {
                continue;
            }
            if runs
                .iter()
                .zip(base_runs)
                .any(|(a, b)| a.checksum != b.checksum)
            {
                fail(&format!(
                    "{workload}: {} computed another checksum than {base}",
                    m.name
                ));
            }
            let secs = median(runs.iter().map(|s| s.secs).collect());
            let ratio = |f: fn(&Sample) -> f64| {
                (!base_runs.is_empty()).then(|| {
                    median(
                        runs.iter()
                            .zip(base_runs)
                            .map(|(a, b)| f(a) / f(b))
                            .collect(),
                    )
                })
            };
            let time = ratio(|s| s.secs);
            let rss = ratio(|s| s.peak_rss_kib);
            let show = |r: Option<f64>| {
                r.filter(|r| r.is_finite())
                    .map_or_else(|| "n/a".to_string(), |r| format!("{r:.3}"))
            };
            if args.instructions {
                println!(
                    "{workload:<12} {:<16} {:>12.0} {:>10} {:>10}",
                    m.name,
                    secs,
                    show(time),
                    show(rss)
                );
            } else {
                println!(
                    "{workload:<12} {:<16} {secs:>12.4} {:>10} {:>10}",
                    m.name,
                    show(time),
                    show(rss)
                );
            }
            let num = |r: Option<f64>| {
                r.filter(|r| r.is_finite())
                    .map_or_else(|| "null".to_string(), |r| format!("{r:.4}"))
            };
            json.push(format!(
                "{{\"workload\":\"{workload}\",\"mode\":\"{}\",\"{}\":{secs:.6},\"{}\":{},\"peak_rss_ratio\":{}}}",
                m.name,
                if args.instructions { "median_instructions" } else { "median_secs" },
                if args.instructions { "instructions_ratio" } else { "time_ratio" },
                num(time),
                num(rss)
            ));
        }
    }
    let doc = format!(
        "{{\"rounds\":{},\"quick\":{},\"instructions\":{},\"results\":[\n{}\n]}}\n",
        args.rounds,
        args.quick,
        args.instructions,
        json.join(",\n")
    );
    let path = target_dir().join("bench-compare.json");
    match std::fs::write(&path, doc) {
        Ok(()) => println!("\nwritten: {}", path.display()),
        Err(e) => fail(&format!("cannot write {}: {e}", path.display())),
    }
}
