//! Runs the allocator-mode bench binaries side by side and prints their
//! overhead as ratios against the plain system allocator, measured in the same
//! run.
//!
//! `cargo bench --bench compare [-- --quick] [-- --rounds N]`
//!
//! It builds the mode binaries (`cargo bench --no-run`), then for each round
//! and workload runs every mode once, flipping the order each round
//! (A B, B A, ...) so that the machine's drift cancels. Per round it takes each
//! mode's time over the system allocator's; the table gives the medians, and is
//! also written as JSON to `target/bench-compare.json`.

use std::collections::BTreeMap;
use std::process::Command;

#[allow(dead_code)] // only the workload list is used here
mod common;

/// (mode, bench target); the first is the baseline.
const MODES: &[(&str, &str)] = &[("system", "alloc_system"), ("counting", "alloc_counting")];

struct Sample {
    secs: f64,
    peak_rss_kib: f64,
    checksum: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = match args.iter().position(|a| a == "--rounds") {
        Some(i) => match args
            .get(i + 1)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
        {
            Some(n) => n,
            None => fail("--rounds needs a positive number"),
        },
        None if quick => 1,
        None => 7,
    };
    let exes = build();

    // samples[workload][mode] = one sample per round
    let mut samples: BTreeMap<&str, BTreeMap<&str, Vec<Sample>>> = BTreeMap::new();
    for round in 0..rounds {
        for &workload in common::WORKLOADS {
            let mut order: Vec<usize> = (0..MODES.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let (mode, _) = MODES[i];
                let s = run(&exes[i], workload, quick);
                eprintln!(
                    "round {}/{rounds} {workload:8} {mode:10} {:.3} s",
                    round + 1,
                    s.secs
                );
                samples
                    .entry(workload)
                    .or_default()
                    .entry(mode)
                    .or_default()
                    .push(s);
            }
        }
    }
    report(&samples, rounds, quick);
}

fn fail(msg: &str) -> ! {
    eprintln!("compare: {msg}");
    std::process::exit(2);
}

/// Builds the mode binaries in the bench profile; returns their paths in
/// `MODES` order.
fn build() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["bench", "--no-run", "--message-format=json"]);
    for (_, target) in MODES {
        cmd.args(["--bench", target]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo: {e}")));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        fail("building the bench binaries failed");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    MODES
        .iter()
        .map(|(_, target)| {
            stdout
                .lines()
                .filter(|l| l.contains(&format!("\"name\":\"{target}\"")))
                .find_map(|l| json_string_field(l, "executable"))
                .unwrap_or_else(|| fail(&format!("no executable for bench {target}")))
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

fn run(exe: &str, workload: &str, quick: bool) -> Sample {
    let mut cmd = Command::new(exe);
    cmd.arg(workload);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {exe}: {e}")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("result "))
        .filter(|_| out.status.success());
    let Some(line) = line else {
        eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!("{exe} {workload} gave no result"));
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
    Sample {
        secs: num("secs"),
        peak_rss_kib: num("peak_rss_kib"),
        checksum: field("checksum"),
    }
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

fn report(samples: &BTreeMap<&str, BTreeMap<&str, Vec<Sample>>>, rounds: usize, quick: bool) {
    let (base, _) = MODES[0];
    println!();
    println!(
        "{rounds} round(s){}; time and peak RSS as ratios to `{base}` in the same round (median over rounds)",
        if quick { ", quick sizes" } else { "" }
    );
    println!(
        "{:<10} {:<10} {:>12} {:>10} {:>10}",
        "workload", "mode", "median s", "time ×", "RSS ×"
    );
    let mut json = Vec::new();
    for &workload in common::WORKLOADS {
        let by_mode = &samples[workload];
        let base_runs = &by_mode[base];
        for (mode, _) in MODES {
            let runs = &by_mode[mode];
            if runs
                .iter()
                .zip(base_runs)
                .any(|(a, b)| a.checksum != b.checksum)
            {
                fail(&format!(
                    "{workload}: {mode} computed another checksum than {base}"
                ));
            }
            let secs = median(runs.iter().map(|s| s.secs).collect());
            let ratio = median(
                runs.iter()
                    .zip(base_runs)
                    .map(|(a, b)| a.secs / b.secs)
                    .collect(),
            );
            let rss = median(
                runs.iter()
                    .zip(base_runs)
                    .map(|(a, b)| a.peak_rss_kib / b.peak_rss_kib)
                    .collect(),
            );
            println!("{workload:<10} {mode:<10} {secs:>12.4} {ratio:>10.3} {rss:>10.3}");
            json.push(format!(
                "{{\"workload\":\"{workload}\",\"mode\":\"{mode}\",\"median_secs\":{secs:.6},\"time_ratio\":{ratio:.4},\"peak_rss_ratio\":{rss:.4}}}"
            ));
        }
    }
    let doc = format!(
        "{{\"rounds\":{rounds},\"quick\":{quick},\"results\":[\n{}\n]}}\n",
        json.join(",\n")
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("bench-compare.json");
    match std::fs::write(&path, doc) {
        Ok(()) => println!("\nwritten: {}", path.display()),
        Err(e) => fail(&format!("cannot write {}: {e}", path.display())),
    }
}
