//! The main example's command line, as a new user meets it: `--help` lists
//! the options and their defaults; conflicting options, sizes out of range
//! and files that are not models are refused with one line on stderr, a
//! non-zero exit and no banner before it; a 1 MiB demo run shows the
//! weights as the duplicated line, wraps its verdict and removes its demo
//! model.
//!
//! The example binary must be built: `cargo test` builds it, or
//! `cargo build --example singleton_vs_duplicate` before
//! `cargo test --test singleton_vs_duplicate_cli` (add `--release` to both
//! for a release run).

mod example_binary;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// This test's example, built (see `example_binary/mod.rs`).
fn example_binary() -> PathBuf {
    example_binary::example_binary("singleton_vs_duplicate", None)
}

/// A directory of this test's own (its files, and the example's output
/// directory through `CARGO_TARGET_DIR`).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tracealloc-example-cli-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the example with `args`, its output directory under `target`.
fn run(args: &[&str], target: &Path) -> Output {
    Command::new(example_binary())
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("the example starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// A refusal: exit status `code`, nothing on stdout (no banner), and the
/// error first on stderr; returns stderr.
fn refused(args: &[&str], code: i32, target: &Path) -> String {
    let o = run(args, target);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(out, "", "{args:?}: nothing on stdout before the error");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

/// A file that is not a model: refused in one line naming the file and
/// saying what was wrong, exit status 1.
fn not_a_model(path: &Path, target: &Path, wrong: &str) {
    let err = refused(&["--model", path.to_str().unwrap()], 1, target);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let want = format!("error: {}: {wrong}", path.display());
    assert!(err.starts_with(&want), "want {want:?}, got {err:?}");
}

#[test]
fn help_lists_the_options_and_their_defaults() {
    let target = temp_dir("help");
    for flag in ["--help", "-h"] {
        let o = run(&[flag], &target);
        assert!(o.status.success(), "{flag}");
        let out = text(&o.stdout);
        for want in [
            "Usage: singleton_vs_duplicate",
            "--size-mib <MIB>",
            "--model <PATH>",
        ] {
            assert!(out.contains(want), "{flag}: no {want:?} in\n{out}");
        }
        assert!(out.contains("[default: 256]"), "{flag}:\n{out}");
        assert!(out.contains("report.html"), "{flag}: the outputs:\n{out}");
        let dir = target.join("tracealloc-demo");
        assert!(
            out.contains(&dir.display().to_string()),
            "{flag}: where:\n{out}"
        );
    }
    let long = text(&run(&["--help"], &target).stdout);
    assert!(long.contains("removed at exit"), "{long}");
    assert!(long.contains("F32, F16 or BF16"), "{long}");
    std::fs::remove_dir_all(&target).unwrap();
}

#[test]
fn conflicting_options_and_bad_sizes_are_refused() {
    let target = temp_dir("args");
    let model = target.join("model.safetensors");
    let m = model.to_str().unwrap();
    let err = refused(&["--size-mib", "16", "--model", m], 2, &target);
    assert!(
        err.contains("'--size-mib <MIB>' cannot be used with '--model <PATH>'"),
        "{err}"
    );
    let err = refused(&["--model", m, "--size-mib", "16"], 2, &target);
    assert!(err.contains("cannot be used with"), "{err}");
    for bad in ["0", "65537", "-1", "lots"] {
        let err = refused(&["--size-mib", bad], 2, &target);
        assert!(err.contains(&format!("invalid value '{bad}'")), "{err}");
    }
    for bad in ["0", "65537", "-1"] {
        let err = refused(&["--size-mib", bad], 2, &target);
        assert!(err.contains(&format!("{bad} is not in 1..=65536")), "{err}");
    }
    let err = refused(&["--frobnicate"], 2, &target);
    assert!(err.contains("unexpected argument '--frobnicate'"), "{err}");
    std::fs::remove_dir_all(&target).unwrap();
}

#[test]
fn files_that_are_not_models_are_refused_in_one_line() {
    let target = temp_dir("files");
    let write = |name: &str, bytes: &[u8]| {
        let p = target.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // Text: its first 8 bytes, read as a header length, say exabytes.
    let readme = write("README.md", b"# tracealloc\n\nA global allocator.\n");
    not_a_model(
        &readme,
        &target,
        "not a .safetensors file: its 8-byte header length says 6.1 EiB, and the file has 34 B",
    );
    let empty = write("empty.safetensors", b"");
    not_a_model(
        &empty,
        &target,
        "not a .safetensors file: it has 0 bytes, fewer than the 8 of a header length",
    );
    let mut bad_json = 5u64.to_le_bytes().to_vec();
    bad_json.extend_from_slice(b"{abcd");
    let bad_json = write("json.safetensors", &bad_json);
    not_a_model(
        &bad_json,
        &target,
        "not a .safetensors file: its 5-byte header is not valid safetensors JSON (",
    );
    let mut no_tensors = 2u64.to_le_bytes().to_vec();
    no_tensors.extend_from_slice(b"{}");
    let no_tensors = write("none.safetensors", &no_tensors);
    not_a_model(
        &no_tensors,
        &target,
        "a .safetensors file with no tensors: nothing to load",
    );
    not_a_model(&target, &target, "is a directory, not a .safetensors file");
    let missing = target.join("missing.safetensors");
    let err = refused(&["--model", missing.to_str().unwrap()], 1, &target);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot open {}", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&target).unwrap();
}

#[test]
fn a_small_demo_run_shows_the_weights_wraps_its_verdict_and_cleans_up() {
    let target = temp_dir("run");
    let o = run(&["--size-mib", "1"], &target);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}\n{out}");
    // The duplicates report of the two plain loads: one duplicated
    // instance, the whole model (its 22 tensors, 16 of one shape, and its
    // vocabulary's table), loaded at two lines of the example's main.
    let dups = out
        .split("Tracing, duplicate loading")
        .nth(1)
        .and_then(|s| s.split("Duplicated instances:").nth(1))
        .expect("a duplicates report for the two loads");
    let lines: Vec<&str> = dups.lines().skip(1).take(4).collect();
    // (22 tensors by content, and the vocabulary's table, a HashMap laid
    // out by a seed of its own in each copy, held alike: 23 blocks of 4 KiB
    // and more.)
    assert!(
        lines[0].contains("2 copies of 22 blocks"),
        "the model, once: {dups}"
    );
    assert!(
        lines[1].contains("and 1 block of ") && lines[1].contains("held alike"),
        "the vocabulary's table: {dups}"
    );
    assert!(
        lines[2..]
            .iter()
            .all(|l| l.contains("loaded at examples/singleton_vs_duplicate.rs:")),
        "each copy's line: {dups}"
    );
    // Through the registry: none.
    let reg = out
        .split("Tracing, registry")
        .nth(1)
        .expect("the registry's part");
    assert!(reg.contains("No duplicated instances"), "{reg}");
    // The verdict's paragraphs are wrapped at 80 columns.
    let verdict = out.split("\nVerdict\n").nth(1).expect("a verdict");
    let prose = verdict.split("\n\nTimeline:").next().unwrap();
    assert!(prose.lines().count() > 8, "{prose}");
    for line in prose.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
    }
    // Figures stay whole: no line ends in a number whose unit starts the next.
    let lines: Vec<&str> = prose.lines().collect();
    for pair in lines.windows(2) {
        let unit = pair[1].split([' ', ',', ')']).next().unwrap_or("");
        assert!(
            !(pair[0].ends_with(|c: char| c.is_ascii_digit())
                && ["B", "KiB", "MiB", "GiB", "ms", "%"].contains(&unit)),
            "a figure split: {pair:?}"
        );
    }
    let joined = prose.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        joined.contains("The tracer puts it at examples/model/mod.rs:"),
        "{prose}"
    );
    // The demo model was removed; the report kept.
    let dir = target.join("tracealloc-demo");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(left.contains(&"report.html".to_string()), "{left:?}");
    assert!(
        !left.iter().any(|f| f.contains("safetensors")),
        "the demo model is removed at exit: {left:?}"
    );
    assert!(out.contains("Removed the demo model"), "{out}");
    std::fs::remove_dir_all(&target).unwrap();
}

/// The verdict's sentences that hold no time and no RSS figure (those vary
/// from run to run; the heap figures are exact).
fn verdict_without_times(out: &str) -> Vec<String> {
    let verdict = out.split("\nVerdict\n").nth(1).expect("a verdict");
    let prose = verdict.split("\n\nTimeline:").next().unwrap();
    let joined = prose.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .split(". ")
        .filter(|s| !s.contains(" ms") && !s.contains(" µs") && !s.contains("RSS"))
        .map(str::to_string)
        .collect()
}

/// Each strategy runs in a process of its own: run in reverse order, the
/// strategies give the same verdict (heap figures, the tracer's sites and
/// the duplicates' saving), and the output says which order ran.
#[test]
fn the_verdict_is_the_same_in_reverse_order() {
    let target = temp_dir("reverse");
    let forward = run(&["--size-mib", "1"], &target);
    let reverse = run(&["--size-mib", "1", "--reverse"], &target);
    let (f, r) = (text(&forward.stdout), text(&reverse.stdout));
    assert!(
        forward.status.success() && reverse.status.success(),
        "{f}\n{r}"
    );
    assert!(r.contains("in reverse order"), "{r}");
    let order = |out: &str| -> Vec<usize> {
        ["Strategy 1:", "Strategy 2:", "Strategy 3:"]
            .iter()
            .map(|s| out.find(s).expect("each strategy's table"))
            .collect()
    };
    let (of, or) = (order(&f), order(&r));
    assert!(of[0] < of[1] && of[1] < of[2], "forward order");
    assert!(or[0] > or[1] && or[1] > or[2], "reverse order");
    let (vf, vr) = (verdict_without_times(&f), verdict_without_times(&r));
    // The heap sentence and the tracer's, at least.
    assert!(vf.len() >= 2, "{vf:?}");
    assert!(vf[0].starts_with("Loading the model"), "{vf:?}");
    assert_eq!(vf, vr);
    std::fs::remove_dir_all(&target).unwrap();
}
