#![cfg(feature = "cli")]
//! The `tracealloc` binary, run as users run it: on good snapshot dumps and
//! saved profiles (the reports must be the library's, byte for byte), and on
//! bad input (a missing, empty, truncated or corrupt file, a directory, the
//! wrong kind of file for the command): one line on stderr starting
//! `tracealloc: `, exit status 1 (2 for a bad command line), never a panic.
//! Also: `Profile::load` keeps within its memory bound, measured here.
//!
//! The saved profile is `tests/fixtures/cli/profile.json`, written by
//! `Profile::save` from the unit tests' sample profile (every field used);
//! the unit test `profile_dump::tests::cli_fixture` checks it is current
//! and rewrites it with `TRACEALLOC_WRITE_FIXTURES=1 cargo test --lib
//! profile_dump::tests::cli_fixture`.
//!
//! Run: `cargo test --features cli --test cli` (the million-block timing:
//! `cargo test --release --features cli --test cli -- --ignored`).

mod mutants;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mutants::{replace_number, Rng};
use tracealloc::{
    measure, Content, Frame, KeyType, Metric, Profile, Snapshot, Trace, TraceAlloc, Traceback,
};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracealloc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli/profile.json")
}

fn tracealloc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracealloc"))
        .args(args)
        // Source lines are read relative to the working directory: none
        // exist in an empty one, so reports print the same here and in the
        // library.
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs a command that must succeed, with nothing on stderr; its stdout.
fn ok(args: &[&str]) -> String {
    let o = tracealloc(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    assert_eq!(stderr(&o), "", "{args:?}");
    stdout(&o)
}

/// Runs a command that must fail with `code`: nothing on stdout, one line
/// on stderr that starts `tracealloc: ` and contains `want`.
fn refused(args: &[&str], code: i32, want: &str) {
    let o = tracealloc(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(stdout(&o), "", "{args:?}");
    assert!(err.starts_with("tracealloc: "), "{args:?}: {err}");
    assert!(
        err.ends_with('\n') && err.lines().count() == 1,
        "{args:?}: {err:?}"
    );
    assert!(err.contains(want), "{args:?}: {err} (wanted {want:?})");
}

/// A snapshot: two stacks through `main`, blocks of known sizes; the first
/// site holds three 64 KiB blocks (duplicates).
fn snapshot(extra: usize) -> Snapshot {
    let a = Traceback::new(vec![
        Frame::new("src/model.rs", 42, "model::load"),
        Frame::new("src/main.rs", 9, "main"),
    ]);
    let b = Traceback::new(vec![
        Frame::new("src/buf.rs", 3, "buf::fill"),
        Frame::new("src/main.rs", 10, "main"),
    ]);
    let mut traces = vec![
        Trace::new(64 << 10, a.clone()),
        Trace::new(64 << 10, a.clone()),
        Trace::new(64 << 10, a),
    ];
    traces.extend((0..10 + extra).map(|i| Trace::new(100 + i, b.clone())));
    Snapshot::new(traces, 2)
}

fn dumped(s: &Snapshot, name: &str) -> PathBuf {
    let path = temp(name);
    s.dump(&path).unwrap();
    path
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn help_describes_every_command() {
    let help = ok(&["--help"]);
    for line in [
        "Usage: tracealloc <COMMAND>",
        "  top         The biggest call sites of a snapshot dump",
        "  diff        What changed between two snapshot dumps",
        "  duplicates  Things a snapshot dump holds more than once",
        "  export      Converts a snapshot dump or a saved profile to DHAT JSON",
    ] {
        assert!(help.contains(line), "{line:?} in\n{help}");
    }
    for command in ["top", "diff", "duplicates", "export"] {
        let help = ok(&[command, "--help"]);
        assert!(
            help.contains(&format!("Usage: tracealloc {command}")),
            "{help}"
        );
    }
    assert!(ok(&["--version"]).starts_with("tracealloc 0."));
}

#[test]
fn top_of_a_snapshot_is_the_librarys_report() {
    let s = snapshot(0);
    let path = dumped(&s, "top.json");
    assert_eq!(
        ok(&["top", p(&path)]),
        s.top(10, KeyType::Lineno).to_string()
    );
    for (key, key_type) in [
        ("lineno", KeyType::Lineno),
        ("filename", KeyType::Filename),
        ("function", KeyType::Function),
        ("traceback", KeyType::Traceback),
    ] {
        assert_eq!(
            ok(&["top", p(&path), "-n", "1", "--key", key]),
            s.top(1, key_type).to_string(),
            "{key}"
        );
    }
    // Cumulative: tracemalloc's statistics lines, each frame counted.
    let out = ok(&["top", p(&path), "--cumulative", "-n", "2"]);
    let stats = s.statistics(KeyType::Lineno, true);
    let want = format!(
        "Top 2 lines (cumulative)\n#1: {}\n#2: {}\n{} other\n",
        stats[0],
        stats[1],
        stats.len() - 2
    );
    assert_eq!(out, want);
    assert!(
        out.starts_with("Top 2 lines (cumulative)\n#1: src/model.rs:42: size=192 KiB, count=3"),
        "{out}"
    );
}

#[test]
fn top_of_a_profile_is_a_table_of_the_whole_run() {
    let f = fixture();
    let out = ok(&["top", p(&f)]);
    assert_eq!(
        out,
        "Whole-run profile: 3 sites, 7.8 KiB allocated in 80 blocks; pid 4242, `prog --name=a b ü`, \
         3.25 s run; peak 5.0 MiB at 1.50 s; sampled every 512.0 KiB on average\n\
         Top 10 lines by bytes allocated\n   \
         #   allocated     blocks        live    max live     at peak   avg life  site\n   \
         1     4.9 KiB         50       500 B     1.5 KiB      1000 B   102.5 ms  src/model.rs:42\n   \
         2     2.9 KiB         30       300 B       900 B       600 B   108.2 ms  src/buf.rs:3\n\
         (max live of several sites adds their maxima: an upper bound of what they held at once)\n"
    );
    // One row per site, with its stack.
    let out = ok(&["top", p(&f), "--key", "traceback", "-n", "1"]);
    assert!(
        out.contains("Top 1 tracebacks by bytes allocated\n"),
        "{out}"
    );
    assert!(
        out.contains("   1     4.9 KiB         50       500 B     1.5 KiB      1000 B   102.5 ms  src/model.rs:42\n"),
        "{out}"
    );
    assert!(
        out.contains("  src/model.rs:42 model::load\n") && out.contains("  src/main.rs:9 main\n"),
        "{out}"
    );
    assert!(out.ends_with("2 other: 2.9 KiB allocated\n"), "{out}");
    // Cumulative: main's line holds two sites.
    let out = ok(&["top", p(&f), "--cumulative", "--key", "function", "-n", "1"]);
    assert!(
        out.contains(
            "   1     6.8 KiB         70       700 B     2.1 KiB     1.4 KiB   103.5 ms  main\n"
        ),
        "{out}"
    );
}

#[test]
fn diff_is_compare_to_between_snapshots() {
    let old = snapshot(0);
    let new = snapshot(5);
    let (o, n) = (dumped(&old, "old.json"), dumped(&new, "new.json"));
    assert_eq!(
        ok(&["diff", p(&o), p(&n)]),
        new.top_diff(&old, 10, KeyType::Lineno).to_string()
    );
    assert_eq!(
        ok(&["diff", p(&o), p(&n), "-n", "1", "--key", "filename"]),
        new.top_diff(&old, 1, KeyType::Filename).to_string()
    );
    let out = ok(&["diff", p(&o), p(&n), "--cumulative"]);
    let diffs = new.compare_to(&old, KeyType::Lineno, true);
    assert!(
        out.starts_with(&format!(
            "Top 10 differences (lines, cumulative)\n#1: {}\n",
            diffs[0]
        )),
        "{out}"
    );
    assert!(
        out.contains("src/buf.rs:3: size=1605 B (+560 B), count=15 (+5)"),
        "{out}"
    );
}

#[test]
fn duplicates_of_a_snapshot() {
    // A model of three blocks of one size and different contents, at one
    // line, loaded at two lines of main: one duplicated instance, not three
    // equal blocks. The contents go through the dump.
    let at = |caller: u32| {
        Traceback::new(vec![
            Frame::new("src/model.rs", 42, "model::load"),
            Frame::new("src/main.rs", caller, "main"),
        ])
    };
    let traces = [9, 11]
        .into_iter()
        .flat_map(|c| {
            (0..3).map(move |k| Trace::new(64 << 10, at(c)).with_content(Content::Hash(100 + k)))
        })
        .collect();
    let s = Snapshot::new(traces, 2);
    let path = dumped(&s, "dups.json");
    let out = ok(&["duplicates", p(&path)]);
    assert_eq!(out, s.duplicate_instances(1024).to_string());
    assert!(
        out.contains("2 copies of 3 blocks, 192 KiB each; sharing one would save 192 KiB"),
        "{out}"
    );
    assert!(out.contains("loaded at src/main.rs:9 (main)"), "{out}");
    assert!(out.contains("loaded at src/main.rs:11 (main)"), "{out}");
    assert_eq!(
        ok(&["duplicates", p(&path), "--min-size", "65K"]),
        s.duplicate_instances(65 << 10).to_string()
    );
    assert!(
        ok(&["duplicates", p(&path), "--min-size", "65537"]).starts_with("No duplicated instances")
    );
    // One load alone: none.
    let once = dumped(&snapshot(0), "dups-once.json");
    assert!(ok(&["duplicates", p(&once)]).starts_with("No duplicated instances"));
}

#[test]
fn export_writes_each_format_from_either_kind_of_file() {
    let s = snapshot(0);
    let snap = dumped(&s, "export-snapshot.json");
    let f = fixture();
    let profile = Profile::load(&f).unwrap();
    for (input, from) in [
        (snap.clone(), Profile::from_snapshot(&s)),
        (f.clone(), profile.clone()),
    ] {
        let out = temp("out.dhat.json");
        let said = ok(&["export", p(&input), "--to", "dhat", "-o", p(&out)]);
        assert_eq!(
            said,
            format!(
                "Wrote {}: DHAT JSON, {} sites\n",
                out.display(),
                from.sites().len()
            )
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(json["dhatFileVersion"], 2);
        assert_eq!(json["mode"], "rust-heap");
        assert_eq!(json["ftbl"][0], "[root]");

        let out = temp("out.pb.gz");
        ok(&["export", p(&input), "--to", "pprof", "-o", p(&out)]);
        assert_eq!(std::fs::read(&out).unwrap()[..2], [0x1f, 0x8b], "gzip");

        for (arg, metric) in [
            ("allocated", Metric::BytesAllocated),
            ("blocks", Metric::Blocks),
            ("live", Metric::LiveBytes),
            ("max-live", Metric::MaxLiveBytes),
        ] {
            let out = temp("out.folded");
            ok(&[
                "export",
                p(&input),
                "--to",
                "folded",
                "-o",
                p(&out),
                "--metric",
                arg,
            ]);
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                from.folded(metric),
                "{arg}"
            );
            let out = temp("out.svg");
            ok(&[
                "export",
                p(&input),
                "--to",
                "svg",
                "-o",
                p(&out),
                "--metric",
                arg,
            ]);
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                from.flamegraph(metric),
                "{arg}"
            );
        }
    }
    // The default metric is bytes allocated; a profile has peak figures.
    let out = temp("default.folded");
    ok(&["export", p(&f), "--to", "folded", "-o", p(&out)]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        profile.folded(Metric::BytesAllocated)
    );
    let out = temp("peak.svg");
    let said = ok(&[
        "export",
        p(&f),
        "--to",
        "svg",
        "-o",
        p(&out),
        "--metric",
        "peak",
    ]);
    assert!(
        said.ends_with(": flame graph of bytes live at the peak, 3 sites\n"),
        "{said}"
    );
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(
        svg.starts_with("<?xml")
            && svg.contains("Bytes live at the peak")
            && svg.contains("model::load")
    );
}

#[test]
fn bad_input_is_one_clear_line_and_status_1() {
    let dir = temp("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = temp("missing.json");
    let write = |name: &str, text: &[u8]| {
        let path = temp(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good_profile = std::fs::read_to_string(fixture()).unwrap();
    let snap = dumped(&snapshot(0), "bad-base.json");
    let good_snapshot = std::fs::read_to_string(&snap).unwrap();
    let empty = write("empty.json", b"");
    let not_json = write("not-json.json", b"\x00\x01 binary \xff");
    let truncated_profile = write(
        "truncated-profile.json",
        &good_profile.as_bytes()[..good_profile.len() / 2],
    );
    let truncated_snapshot = write(
        "truncated-snapshot.json",
        &good_snapshot.as_bytes()[..good_snapshot.len() / 2],
    );
    let version = write(
        "version.json",
        good_profile
            .replace("\"version\":1", "\"version\":7")
            .as_bytes(),
    );
    let other = write("other.json", br#"{"format":"speedscope","version":1}"#);

    for command in [
        &["top"][..],
        &["duplicates"],
        &["export", "--to", "svg", "-o", "/tmp/never.svg"],
    ] {
        let run = |file: &Path, code: i32, want: &str| {
            let mut args = vec![command[0], p(file)];
            args.extend(&command[1..]);
            refused(&args, code, want);
        };
        run(
            &missing,
            1,
            &format!(
                "cannot load file {}: cannot open: No such file",
                missing.display()
            ),
        );
        run(&dir, 1, "cannot open: is a directory");
        run(&empty, 1, "not a tracealloc snapshot or profile file");
        run(&not_json, 1, "not a tracealloc snapshot or profile file");
        run(&truncated_profile, 1, "cannot load profile");
        run(&truncated_snapshot, 1, "not a valid snapshot file");
        run(
            &version,
            1,
            "format version 7 is not supported (this build reads 1)",
        );
        run(&other, 1, "format is \"speedscope\", neither");
    }
    assert!(!Path::new("/tmp/never.svg").exists());

    // The wrong kind of file for the command.
    let f = fixture();
    refused(&["diff", p(&f), p(&snap)], 1, "diff reads snapshot dumps");
    refused(
        &["diff", p(&snap), p(&f)],
        1,
        "is a saved whole-run profile",
    );
    refused(
        &["duplicates", p(&f)],
        1,
        "duplicates reads snapshot dumps (it needs each live block's size)",
    );
    refused(
        &[
            "export",
            p(&snap),
            "--to",
            "folded",
            "-o",
            p(&temp("x.folded")),
            "--metric",
            "peak",
        ],
        1,
        "is a snapshot dump: it has no peak figures",
    );
    // An output that cannot be written.
    let nowhere = temp("no/such/dir/out.svg");
    refused(
        &["export", p(&f), "--to", "svg", "-o", p(&nowhere)],
        1,
        &format!("cannot write flame graph {}", nowhere.display()),
    );
    refused(
        &["export", p(&f), "--to", "folded", "-o", p(&nowhere)],
        1,
        "cannot write",
    );
    refused(
        &["export", p(&f), "--to", "dhat", "-o", p(&dir)],
        1,
        "cannot",
    );

    // Usage errors: status 2.
    refused(
        &["top", p(&f), "--key", "traceback", "--cumulative"],
        2,
        "--cumulative needs --key lineno",
    );
    refused(
        &[
            "export",
            p(&f),
            "--to",
            "dhat",
            "-o",
            "x",
            "--metric",
            "live",
        ],
        2,
        "--metric applies to",
    );
    let o = tracealloc(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: unrecognized subcommand 'frobnicate'"),
        "{}",
        stderr(&o)
    );
    let o = tracealloc(&["top", p(&f), "-n", "many"]);
    assert_eq!(o.status.code(), Some(2));
    let o = tracealloc(&["duplicates", p(&snap), "--min-size", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a size"), "{}", stderr(&o));
}

/// xorshift64*, seeded: the mutants are the same on every run.
const HOSTILE: &[&str] = &[
    "0",
    "-1",
    "4097",
    "1000000000",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    "null",
    "\"\"",
    "[]",
    "{}",
];

fn mutate(good: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut m = good.to_vec();
    // Mostly numbers replaced (the files are small: most byte changes
    // break the JSON, and the loaders' checks are what is tested).
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(m.len());
        match rng.below(8) {
            0 => m[at] = rng.next() as u8,
            1 => {
                let end = (at + 1 + rng.below(20)).min(m.len());
                m.drain(at..end);
            }
            2..=6 => replace_number(&mut m, at, rng, HOSTILE),
            _ => m.truncate(at),
        }
    }
    m
}

/// Seeded mutants of a saved profile and of a snapshot dump, through `top`
/// and `export`: status 0 with a report, or 1 with one line; never a panic
/// (status 101).
#[test]
fn mutated_files_never_make_it_panic() {
    let profile = std::fs::read(fixture()).unwrap();
    let snapshot = std::fs::read(dumped(&snapshot(0), "mutant-base.json")).unwrap();
    let mut rng = Rng(0xc11_7e57_5eed);
    let mutant = temp("mutant.json");
    let out = temp("mutant.svg");
    let (mut good, mut bad) = (0, 0);
    for i in 0..150 {
        let base = if i % 2 == 0 { &profile } else { &snapshot };
        let m = mutate(base, &mut rng);
        std::fs::write(&mutant, &m).unwrap();
        for args in [
            &["top", p(&mutant), "--key", "traceback"][..],
            &["export", p(&mutant), "--to", "svg", "-o", p(&out)],
        ] {
            let o = tracealloc(args);
            let err = stderr(&o);
            match o.status.code() {
                Some(0) => {
                    good += 1;
                    assert_eq!(err, "");
                }
                Some(1) => {
                    bad += 1;
                    assert!(
                        err.starts_with("tracealloc: ") && err.lines().count() == 1,
                        "{err}"
                    );
                }
                code => panic!(
                    "mutant {i}, {args:?}: status {code:?}: {err}\n{}",
                    String::from_utf8_lossy(&m[..m.len().min(300)])
                ),
            }
        }
    }
    eprintln!("300 runs on mutants: {good} succeeded, {bad} refused");
    assert!(good > 20 && bad > 20, "{good} succeeded, {bad} refused");
}

/// The stated bound of `Profile::load` for a file of `len` bytes.
fn bound(len: u64) -> u64 {
    16 * len + (16 << 20)
}

fn load_within_bound(path: &Path) -> (Result<Profile, tracealloc::Error>, u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let (result, delta) = measure(|| Profile::load(path));
    let peak = delta.peak_bytes;
    assert!(
        peak <= bound(len),
        "{}: loading a file of {len} bytes took {peak} bytes at its peak, over {}",
        path.display(),
        bound(len)
    );
    (result, peak)
}

/// Profiles of one kind of element each, as dense as JSON allows, and one
/// whose sites each repeat a frame 4096 times: whatever `Profile::load` does
/// with them, it stays within its bound.
#[test]
fn profile_loads_stay_within_the_bound() {
    let header = r#"{"format":"tracealloc-profile","version":1,"info":{"pid":1,"command":[],"traceback_limit":4096,"sample_bytes":null,"capture_method":null,"tracer_memory":0,"started":[0,0],"duration":[0,0],"peak_bytes":0,"peak_at":null}"#;
    let n = (1 << 19) + 1;
    let many = |item: &str| vec![item; n].join(",");
    let refs = vec!["0"; 4096].join(",");
    let cases = [
        (
            "strings",
            format!(
                r#"{header},"strings":[{}],"frames":[],"sites":[]}}"#,
                many(r#""""#)
            ),
        ),
        (
            "command",
            format!(
                r#"{},"strings":[],"frames":[],"sites":[]}}"#,
                header.replace(
                    r#""command":[]"#,
                    &format!(r#""command":[{}]"#, many(r#""""#))
                )
            ),
        ),
        (
            "frames",
            format!(
                r#"{header},"strings":[""],"frames":[{}],"sites":[]}}"#,
                many("[0,0,0,0]")
            ),
        ),
        (
            "sites",
            format!(
                r#"{header},"strings":[""],"frames":[[0,0,0,0]],"sites":[{}]}}"#,
                many("[0,[],0,0,0,0,0,0,0,0,0,[0,0]]")
            ),
        ),
        (
            "repeated frames",
            format!(
                r#"{header},"strings":[""],"frames":[[0,0,0,0]],"sites":[{}]}}"#,
                vec![format!("[4096,[{refs}],1,0,8,1,8,8,1,0,0,[0,0]]"); 1200].join(",")
            ),
        ),
    ];
    for (name, text) in cases {
        let path = temp(&format!("dense-{}.json", name.replace(' ', "-")));
        std::fs::write(&path, &text).unwrap();
        let (result, peak) = load_within_bound(&path);
        eprintln!(
            "dense {name}: {} bytes of file, {peak} bytes at the peak ({:.1}x): {}",
            text.len(),
            peak as f64 / text.len() as f64,
            match &result {
                Ok(p) => format!("loaded, {} sites", p.sites().len()),
                Err(e) => e.to_string(),
            }
        );
    }
    // A real profile loads in a few times its size.
    let (result, peak) = load_within_bound(&fixture());
    assert!(result.is_ok());
    eprintln!("the fixture: {peak} bytes at the peak");
}

/// `top` on a dump of a million blocks over 1000 tracebacks of 8 frames.
/// Timed in release builds (`cargo test --release --features cli --test
/// cli -- --ignored`), where it must take under a second.
#[test]
#[ignore = "slow in debug builds; run in release with --ignored"]
fn top_of_a_million_blocks_in_under_a_second() {
    let tb = |i: usize| {
        Traceback::new(
            (0..8)
                .map(|d| {
                    Frame::new(
                        &format!("src/module_{}/file_{}.rs", i % 37, (i + d) % 11),
                        (10 + i * 7 + d) as u32 % 5000,
                        &format!("crate::module_{}::function_{}", i % 37, d),
                    )
                })
                .collect(),
        )
    };
    let stacks: Vec<Traceback> = (0..1000).map(tb).collect();
    let traces = (0..1_000_000)
        .map(|i: usize| Trace::new(8 + (i * 37) % 4096, stacks[(i * 7919) % 1000].clone()))
        .collect();
    let s = Snapshot::new(traces, 8);
    let path = temp("million.json");
    s.dump(&path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let t = std::time::Instant::now();
    let out = ok(&["top", p(&path)]);
    let took = t.elapsed();
    assert_eq!(out, s.top(10, KeyType::Lineno).to_string());
    eprintln!("top of 1 000 000 blocks ({len} bytes of dump): {took:?}");
    if !cfg!(debug_assertions) {
        assert!(took.as_secs_f64() < 1.0, "{took:?}");
    }
}

/// Without `-o` (or with `-o -`), the export goes to the standard output,
/// to be piped into a flame-graph tool.
#[test]
fn export_to_the_standard_output() {
    let f = fixture();
    let profile = Profile::load(&f).unwrap();
    let folded = profile.folded(Metric::BytesAllocated);
    assert_eq!(ok(&["export", p(&f), "--to", "folded"]), folded);
    assert_eq!(ok(&["export", p(&f), "--to", "folded", "-o", "-"]), folded);
    assert_eq!(ok(&["export", p(&f), "--to", "dhat"]), profile.dhat());
}

/// A DHAT file given where a dump or a profile is wanted: the message says
/// what it is and where to open it.
#[test]
fn a_dhat_file_is_named_as_such() {
    let f = fixture();
    let dhat = temp("given.dhat.json");
    std::fs::write(&dhat, Profile::load(&f).unwrap().dhat()).unwrap();
    refused(&["top", p(&dhat)], 1, "a DHAT file");
    refused(&["top", p(&dhat)], 1, "dh_view.html");
}
