//! `TRACEALLOC`: a program with the allocator line and no call to this crate,
//! profiled through the environment variable alone.
//!
//! The test binary re-executes itself as the program under test (the test
//! `child`, with `TRACEALLOC_TEST_CHILD` naming what it does), with
//! different `TRACEALLOC` values, and checks the files it leaves, its
//! standard error and its exit status. The child calls nothing of
//! `tracealloc`: tracing starts at its first allocation (in the test
//! harness's start-up) and the outputs are written by the exit hook.
#![cfg(unix)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use tracealloc::{Snapshot, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// Names what the child does; unset in the parent.
const CHILD: &str = "TRACEALLOC_TEST_CHILD";

/// Five blocks of 100 000 to 100 004 bytes, leaked: live at exit.
#[inline(never)]
fn env_child_allocates() {
    for i in 0..5 {
        std::mem::forget(black_box(vec![1u8; 100_000 + i]));
    }
}

/// 100 blocks of 1000 bytes, each freed at once.
#[inline(never)]
fn env_child_churns() {
    for i in 0..100u8 {
        drop(black_box(vec![i; 1000]));
    }
}

/// The program under test (does nothing in the parent).
#[test]
fn child() {
    let Some(mode) = std::env::var_os(CHILD) else {
        return;
    };
    env_child_allocates();
    env_child_churns();
    match mode.to_str().unwrap() {
        "return" => {}
        "exit" => std::process::exit(3),
        "panic" => panic!("the child panics"),
        "chdir" => std::env::set_current_dir("/").unwrap(),
        "stop" => tracealloc::stop(),
        "report" => println!(
            "tracing={} limit={} method={:?}",
            tracealloc::is_tracing(),
            tracealloc::traceback_limit(),
            tracealloc::capture_method()
        ),
        "fork" => {
            // SAFETY: the child of the fork only allocates and exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                env_child_allocates();
                // The exit hook runs in the forked child too.
                std::process::exit(0);
            }
            println!("forked={pid}");
            let mut status = 0;
            // SAFETY: `pid` is our child; `status` is a valid place to write.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            // Without `%p` the forked child must have written nothing.
            if let Some(path) = std::env::var_os("TRACEALLOC_TEST_NO_FILE") {
                if Path::new(&path).exists() {
                    std::process::exit(7);
                }
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// A fresh, empty folder for one run.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tracealloc-env-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the child in `dir` with `TRACEALLOC` set to `value` (unset if
/// `None`); returns its output and pid.
fn run_child(mode: &str, value: Option<&str>, dir: &Path, extra: &[(&str, &str)]) -> (Output, u32) {
    run_child_os(mode, value.map(OsStr::new), dir, extra)
}

fn run_child_os(
    mode: &str,
    value: Option<&OsStr>,
    dir: &Path,
    extra: &[(&str, &str)],
) -> (Output, u32) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .current_dir(dir)
        .env(CHILD, mode)
        .env_remove("TRACEALLOC")
        .env_remove("RUST_BACKTRACE");
    if let Some(v) = value {
        cmd.env("TRACEALLOC", v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn files(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn names_function(t: &tracealloc::Traceback, name: &str) -> bool {
    t.frames().iter().any(|f| f.function().contains(name))
}

/// The snapshot dump holds the child's five kept blocks, at its function.
fn check_snapshot(path: &Path, frames: usize, sample: Option<u64>) {
    let s = Snapshot::load(path).unwrap();
    assert_eq!(s.traceback_limit(), frames);
    assert_eq!(s.sample_bytes(), sample);
    if sample.is_none() {
        let mut sizes: Vec<usize> = s
            .traces()
            .iter()
            .filter(|t| names_function(&t.traceback, "env_child_allocates"))
            .map(|t| t.size)
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [100_000, 100_001, 100_002, 100_003, 100_004]);
    }
}

#[test]
fn unset_or_empty_does_nothing() {
    for value in [None, Some(""), Some("  ")] {
        let dir = temp_dir();
        let (out, _) = run_child("return", value, &dir, &[]);
        assert!(out.status.success(), "{value:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{value:?}");
        assert!(files(&dir).is_empty(), "{value:?}: {:?}", files(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The `report` line the child prints.
fn report(value: Option<&str>) -> String {
    let dir = temp_dir();
    let (out, _) = run_child("report", value, &dir, &[]);
    assert!(out.status.success(), "{value:?}: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "{value:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout.lines().find(|l| l.starts_with("tracing="));
    line.unwrap_or_else(|| panic!("no report in {stdout}"))
        .to_string()
}

/// Tracing is on when the child's test function runs, with the options of
/// the value, though the child never called `start`.
#[test]
fn on_in_main_with_the_options_given() {
    assert_eq!(report(None), "tracing=false limit=1 method=None");
    assert_eq!(
        report(Some("frames=7,capture=unwind,out=x.json")),
        "tracing=true limit=7 method=Some(Unwinder)"
    );
    let auto = report(Some("out=x.json"));
    assert!(
        auto == "tracing=true limit=16 method=Some(Unwinder)"
            || auto == "tracing=true limit=16 method=Some(FramePointers)",
        "{auto}"
    );
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    assert_eq!(
        report(Some("frames=3,capture=fp,out=x.json")),
        "tracing=true limit=3 method=Some(FramePointers)"
    );
}

#[test]
fn snapshot_dump_at_return_from_main() {
    let dir = temp_dir();
    let (out, _) = run_child("return", Some("frames=8,out=heap.json"), &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(files(&dir), HashSet::from(["heap.json".to_string()]));
    check_snapshot(&dir.join("heap.json"), 8, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dhat_and_folded_at_process_exit() {
    let dir = temp_dir();
    let (out, pid) = run_child(
        "exit",
        Some("frames=16, out=heap.dhat.json, out=heap.folded"),
        &dir,
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    let text = std::fs::read_to_string(dir.join("heap.dhat.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["mode"], "rust-heap");
    assert_eq!(json["pid"], pid);
    let ftbl: Vec<&str> = json["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(ftbl[0], "[root]");
    let pps = json["pps"].as_array().unwrap();
    let site_of = |function: &str| {
        let ids: Vec<u64> = (0..ftbl.len() as u64)
            .filter(|&i| ftbl[i as usize].contains(function))
            .collect();
        assert!(!ids.is_empty(), "no frame names {function}");
        let sites: Vec<&serde_json::Value> = pps
            .iter()
            .filter(|pp| {
                let fs = pp["fs"].as_array().unwrap();
                fs.iter()
                    .all(|i| (i.as_u64().unwrap() as usize) < ftbl.len())
                    && fs.iter().any(|i| ids.contains(&i.as_u64().unwrap()))
            })
            .collect();
        assert_eq!(sites.len(), 1, "{function}: {sites:?}");
        sites[0]
    };
    let kept = site_of("env_child_allocates");
    assert_eq!(
        (kept["tbk"].as_u64(), kept["tb"].as_u64()),
        (Some(5), Some(500_010))
    );
    assert_eq!(
        (kept["ebk"].as_u64(), kept["eb"].as_u64()),
        (Some(5), Some(500_010))
    );
    let churn = site_of("env_child_churns");
    assert_eq!(
        (churn["tbk"].as_u64(), churn["tb"].as_u64()),
        (Some(100), Some(100_000))
    );
    assert_eq!(churn["ebk"].as_u64(), Some(0));

    let folded = std::fs::read_to_string(dir.join("heap.folded")).unwrap();
    let line = |function: &str| {
        let lines: Vec<&str> = folded.lines().filter(|l| l.contains(function)).collect();
        assert_eq!(lines.len(), 1, "{function}: {folded}");
        lines[0].rsplit_once(' ').unwrap().1.to_string()
    };
    assert_eq!(line("env_child_allocates"), "500010");
    assert_eq!(line("env_child_churns"), "100000");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A saved whole-run profile (`.profile.json`), for `Profile::load` and the
/// command-line tool, written into a folder that did not exist.
#[test]
fn saved_profile_in_a_new_folder() {
    let dir = temp_dir();
    let (out, _) = run_child("exit", Some("out=new/folder/heap.profile.json"), &dir, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let p = tracealloc::Profile::load(dir.join("new/folder/heap.profile.json")).unwrap();
    let kept = p
        .sites()
        .iter()
        .find(|s| names_function(&s.traceback, "env_child_allocates"))
        .unwrap_or_else(|| panic!("no site of env_child_allocates: {p}"));
    assert_eq!((kept.allocs, kept.bytes_allocated), (5, 500_010), "{p}");
    let churn = p
        .sites()
        .iter()
        .find(|s| names_function(&s.traceback, "env_child_churns"))
        .unwrap_or_else(|| panic!("no site of env_child_churns: {p}"));
    assert_eq!((churn.allocs, churn.live_blocks), (100, 0), "{p}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `timeline=`: a timeline sampled from before `main` to the exit, saved,
/// and an HTML report holding it and the live blocks at exit.
#[test]
fn timeline_and_html_report() {
    let dir = temp_dir();
    let (out, _) = run_child(
        "return",
        Some("timeline=1ms,out=run.timeline.json,out=run.html"),
        &dir,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let t = tracealloc::Timeline::load(dir.join("run.timeline.json")).unwrap();
    assert!(!t.samples.is_empty(), "no sample in {t:?}");
    // The child's five kept blocks (500 010 bytes) were live at some sample
    // or at the stop.
    assert!(t.peak() >= 500_010, "peak {}", t.peak());
    let html = std::fs::read_to_string(dir.join("run.html")).unwrap();
    for title in ["Timeline", "Live at exit, by line", "env_activation.rs"] {
        assert!(html.contains(title), "no {title:?} in the report");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The outputs behind features: pprof (gzip) and the SVG flame graph.
#[cfg(all(feature = "pprof", feature = "flamegraph"))]
#[test]
fn pprof_and_svg_with_their_features() {
    let dir = temp_dir();
    let (out, _) = run_child("return", Some("out=heap.pb.gz,out=heap.svg"), &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let pb = std::fs::read(dir.join("heap.pb.gz")).unwrap();
    assert_eq!(pb[..2], [0x1f, 0x8b], "not gzip");
    let svg = std::fs::read_to_string(dir.join("heap.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("env_child_allocates"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn written_after_a_panic_with_the_status_kept() {
    let dir = temp_dir();
    let (out, _) = run_child("panic", Some("out=heap.json,frames=4"), &dir, &[]);
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the child panics"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("tracealloc"), "{}", stderr(&out));
    check_snapshot(&dir.join("heap.json"), 4, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sampled_and_capture_methods() {
    for (value, frames, sample) in [
        ("sample=1k,out=heap.json", 16, Some(1024)),
        ("sample=0,frames=3,capture=fp,out=heap.json", 3, None),
        ("frames=5,capture=unwind,out=heap.json", 5, None),
    ] {
        let dir = temp_dir();
        let (out, _) = run_child("return", Some(value), &dir, &[]);
        assert!(out.status.success(), "{value}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{value}");
        check_snapshot(&dir.join("heap.json"), frames, sample);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn default_output_and_pid_in_the_name() {
    let dir = temp_dir();
    let (out, pid) = run_child("return", Some("frames=2"), &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let name = format!("tracealloc.{pid}.dhat.json");
    assert_eq!(files(&dir), HashSet::from([name.clone()]));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
    assert_eq!(json["pid"], pid);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn relative_paths_from_the_starting_folder() {
    let dir = temp_dir();
    std::fs::create_dir(dir.join("sub")).unwrap();
    let (out, _) = run_child("chdir", Some("out=sub/heap.%%.%p.json"), &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let written = files(&dir.join("sub"));
    assert_eq!(written.len(), 1, "{written:?}");
    let name = written.iter().next().unwrap();
    assert!(
        name.starts_with("heap.%.") && name.ends_with(".json"),
        "{name}"
    );
    check_snapshot(&dir.join("sub").join(name), 16, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_values_one_line_and_nothing_else() {
    let cases = [
        (
            "frames=0,out=heap.json",
            "frames=0: the frame limit must be a whole number from 1 to 256",
        ),
        (
            "sample=512kb,out=heap.json",
            "sample=512kb: unknown size suffix (use k, m, g or KiB, MiB, GiB: powers of 1024)",
        ),
        (
            "frmes=4,out=heap.json",
            "unknown key `frmes` (the keys are frames, sample, capture, timeline and out)",
        ),
        ("out=", "`out=` needs a value"),
        (
            "out=heap.txt",
            "out=heap.txt: the file name must end in .dhat.json, .profile.json, \
             .timeline.json, .html, .pb.gz, .folded, .svg or .json (it chooses the format)",
        ),
    ];
    for (value, what) in cases {
        for (mode, code) in [("return", 0), ("exit", 3)] {
            let dir = temp_dir();
            let (out, _) = run_child(mode, Some(value), &dir, &[]);
            assert_eq!(out.status.code(), Some(code), "{value}: {}", stderr(&out));
            assert_eq!(
                stderr(&out),
                format!("tracealloc: TRACEALLOC=\"{value}\": {what}; tracing stays off\n")
            );
            assert!(files(&dir).is_empty(), "{value}: {:?}", files(&dir));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn too_long_or_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let long = format!("out={}.json", "a".repeat(4992));
    let bad = OsStr::from_bytes(b"out=heap\xff.json");
    for (value, line) in [
        (
            OsStr::new(&long),
            format!(
                "tracealloc: TRACEALLOC=\"out={}...\": 5001 bytes long, over the limit of 4096; \
                 tracing stays off\n",
                "a".repeat(252)
            ),
        ),
        (
            bad,
            "tracealloc: TRACEALLOC=\"out=heap\u{fffd}.json\": not UTF-8; tracing stays off\n"
                .to_string(),
        ),
    ] {
        let dir = temp_dir();
        let (out, _) = run_child_os("exit", Some(value), &dir, &[]);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(stderr(&out), line);
        assert!(files(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_write_error_is_one_line() {
    let dir = temp_dir();
    // A folder that cannot be made: a file is in the way.
    std::fs::write(dir.join("missing"), "a file").unwrap();
    let missing = dir.join("missing").join("heap.json");
    let value = format!("out={},out=ok.json", missing.display());
    let (out, _) = run_child("exit", Some(&value), &dir, &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "tracealloc: cannot dump snapshot {}: ",
            missing.display()
        )),
        "{err}"
    );
    // The other output is still written.
    check_snapshot(&dir.join("ok.json"), 16, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stopped_before_exit_says_so() {
    let dir = temp_dir();
    let (out, _) = run_child("stop", Some("out=heap.json"), &dir, &[]);
    assert!(out.status.success());
    assert_eq!(
        stderr(&out),
        "tracealloc: TRACEALLOC: tracing was off at exit (tracealloc::stop() was called); \
         nothing written\n"
    );
    assert!(files(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn forked_pid(out: &Output) -> u32 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("forked="))
        .unwrap_or_else(|| panic!("no forked= line in {stdout}"))
        .parse()
        .unwrap()
}

#[test]
fn forked_child_writes_its_own_file_with_pid() {
    let dir = temp_dir();
    let (out, pid) = run_child("fork", Some("out=heap.%p.json"), &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let forked = forked_pid(&out);
    assert_eq!(
        files(&dir),
        HashSet::from([format!("heap.{pid}.json"), format!("heap.{forked}.json")])
    );
    check_snapshot(&dir.join(format!("heap.{pid}.json")), 16, None);
    // The forked child's blocks: the parent's five (inherited) and its own.
    let s = Snapshot::load(dir.join(format!("heap.{forked}.json"))).unwrap();
    let kept = s
        .traces()
        .iter()
        .filter(|t| names_function(&t.traceback, "env_child_allocates"))
        .count();
    assert_eq!(kept, 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forked_child_without_pid_writes_nothing() {
    let dir = temp_dir();
    let path = dir.join("heap.json");
    let (out, _) = run_child(
        "fork",
        Some("out=heap.json"),
        &dir,
        &[("TRACEALLOC_TEST_NO_FILE", path.to_str().unwrap())],
    );
    // 7: the forked child wrote the file.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(files(&dir), HashSet::from(["heap.json".to_string()]));
    check_snapshot(&path, 16, None);
    std::fs::remove_dir_all(&dir).unwrap();
}
