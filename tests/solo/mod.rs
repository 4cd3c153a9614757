//! A minimal test harness for test binaries that assert on process-wide
//! figures (`stats()`, RSS): with `harness = false` and this runner, the
//! process has no test-runner thread that could allocate while a test reads
//! its totals. Each test runs on the main thread, one after another.
//!
//! It speaks enough of libtest's command line for `cargo test` and
//! `cargo nextest` (`--list --format terse`, `--ignored`, `--exact`, name
//! filters) and prints libtest's closing line.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

/// libtest options that take a value, so that the value is not read as a
/// test-name filter.
const WITH_VALUE: &[&str] = &[
    "--format",
    "--color",
    "--test-threads",
    "--logfile",
    "--skip",
    "-Z",
    "--report-time",
    "--shuffle-seed",
];

/// Runs the selected `(name, test)` pairs and reports as libtest does.
pub fn run(tests: &[(&str, fn())]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if WITH_VALUE.contains(&a.as_str()) {
            if a == "--skip" {
                skips.extend(args.get(i + 1).cloned());
            }
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            filters.push(a.clone());
        }
        i += 1;
    }
    let exact = has("--exact");
    let matches = |name: &str, pat: &str| {
        if exact {
            name == pat
        } else {
            name.contains(pat)
        }
    };
    let selected: Vec<&(&str, fn())> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|(name, _)| !skips.iter().any(|s| matches(name, s)))
        .collect();
    // None of these tests is #[ignore]d.
    let selected = if has("--ignored") {
        Vec::new()
    } else {
        selected
    };

    if has("--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }

    let start = Instant::now();
    println!(
        "\nrunning {} test{}",
        selected.len(),
        if selected.len() == 1 { "" } else { "s" }
    );
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let ok = catch_unwind(AssertUnwindSafe(test)).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        tests.len() - selected.len(),
        start.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
