//! Statistics, diffs, filters and `Traceback::format` against what CPython
//! 3.11's `tracemalloc` prints for the same traces, byte for byte.
//!
//! The expected lines were generated once by
//! `tests/fixtures/tracemalloc/generate.py` (run it again with CPython 3.11
//! after changing it; this test needs no Python). Its cases: the examples of
//! issue 10 (kept frames shared by stacks of different depths, one line in
//! two functions), every size class from 0 B to TiB with ties, a source file
//! with a byte-order mark, CRLF line ends and odd white space, and random
//! snapshots over a few files, lines, depths and functions.
//!
//! The one documented difference: a `KeyType::Traceback` statistic's line
//! begins with the key's allocating frame, where tracemalloc writes the
//! oldest kept frame. Everything after that label, and the key's frames,
//! must be the same.

use serde_json::Value;
use tracealloc::{Filter, Frame, KeyType, Snapshot, Trace, Traceback};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tracemalloc/cases.json"
);

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(FIXTURE).expect("the fixture is committed");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["python"].as_str().map(|p| &p[..4]), Some("3.11"));
    v["cases"].as_array().expect("cases").clone()
}

fn traceback(frames: &Value, total: usize) -> Traceback {
    let frames = frames
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            Frame::new(
                f[0].as_str().unwrap(),
                f[1].as_u64().unwrap() as u32,
                f[2].as_str().unwrap(),
            )
        })
        .collect();
    Traceback::new(frames).with_total_nframe(total)
}

fn snapshot(traces: &Value, limit: usize) -> Snapshot {
    let traces = traces
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            Trace::new(
                t[0].as_u64().unwrap() as usize,
                traceback(&t[1], t[2].as_u64().unwrap() as usize),
            )
        })
        .collect();
    Snapshot::new(traces, limit)
}

fn key(name: &str) -> (KeyType, bool) {
    match name {
        "filename" => (KeyType::Filename, false),
        "filename_cumulative" => (KeyType::Filename, true),
        "lineno" => (KeyType::Lineno, false),
        "lineno_cumulative" => (KeyType::Lineno, true),
        "traceback" => (KeyType::Traceback, false),
        _ => panic!("unknown key {name}"),
    }
}

/// Checks our lines (with each key's traceback) against tracemalloc's.
fn check_lines(what: &str, ours: &[(String, &Traceback)], python: &Value, key_type: KeyType) {
    let python = python.as_array().unwrap();
    let ours_text: Vec<&str> = ours.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        ours.len(),
        python.len(),
        "{what}: {ours_text:#?}\n{python:#?}"
    );
    for (i, ((line, tb), want)) in ours.iter().zip(python).enumerate() {
        if key_type != KeyType::Traceback {
            assert_eq!(line, want.as_str().unwrap(), "{what} #{i}");
            continue;
        }
        let (want_line, want_key) = (want[0].as_str().unwrap(), want[1].as_array().unwrap());
        let key: Vec<(String, u64)> = want_key
            .iter()
            .map(|f| (f[0].as_str().unwrap().to_string(), f[1].as_u64().unwrap()))
            .collect();
        let ours_key: Vec<(String, u64)> = tb
            .frames()
            .iter()
            .map(|f| (f.filename().to_string(), f.lineno() as u64))
            .collect();
        assert_eq!(ours_key, key, "{what} #{i}: the key's frames");
        // tracemalloc labels with the oldest frame, we with the allocating
        // one: the rest of the line is the same.
        let label = |(f, l): &(String, u64)| format!("{f}:{l}:");
        let rest = want_line
            .strip_prefix(&label(key.last().unwrap()))
            .unwrap_or_else(|| panic!("{what} #{i}: {want_line:?}"));
        assert_eq!(line, &format!("{}{rest}", label(&key[0])), "{what} #{i}");
    }
}

#[test]
fn statistics_and_diffs_as_cpython_prints_them() {
    let mut lines = 0;
    for (n, case) in cases().iter().enumerate() {
        let limit = case["limit"].as_u64().unwrap() as usize;
        let new = snapshot(&case["new"], limit);
        let old = snapshot(&case["old"], limit);
        for (name, python) in case["statistics"].as_object().unwrap() {
            let (key_type, cumulative) = key(name);
            let stats = new.statistics(key_type, cumulative);
            let ours: Vec<(String, &Traceback)> = stats
                .iter()
                .map(|s| (s.to_string(), &s.traceback))
                .collect();
            check_lines(
                &format!("case {n} statistics {name}"),
                &ours,
                python,
                key_type,
            );
            lines += ours.len();
        }
        for (field, (a, b)) in [("compare", (&new, &old)), ("compare_back", (&old, &new))] {
            for (name, python) in case[field].as_object().unwrap() {
                let (key_type, cumulative) = key(name);
                let diffs = a.compare_to(b, key_type, cumulative);
                let ours: Vec<(String, &Traceback)> = diffs
                    .iter()
                    .map(|d| (d.to_string(), &d.traceback))
                    .collect();
                check_lines(&format!("case {n} {field} {name}"), &ours, python, key_type);
                lines += ours.len();
            }
        }
    }
    assert!(lines > 5000, "only {lines} lines compared");
}

#[test]
fn filters_as_cpython_applies_them() {
    for (n, case) in cases().iter().enumerate() {
        let limit = case["limit"].as_u64().unwrap() as usize;
        let new = snapshot(&case["new"], limit);
        for f in case["filters"].as_array().unwrap() {
            let filters: Vec<Filter> = f["filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|spec| {
                    let pattern = spec[1].as_str().unwrap();
                    let mut filter = if spec[0].as_bool().unwrap() {
                        Filter::include(pattern)
                    } else {
                        Filter::exclude(pattern)
                    };
                    if let Some(line) = spec[2].as_u64() {
                        filter = filter.lineno(line as u32);
                    }
                    filter.all_frames(spec[3].as_bool().unwrap())
                })
                .collect();
            let kept = new.filter_traces(&filters);
            let what = format!("case {n} filters {}", f["filters"]);
            assert_eq!(
                kept.traces().len() as u64,
                f["kept"].as_u64().unwrap(),
                "{what}"
            );
            let ours: Vec<String> = kept
                .statistics(KeyType::Lineno, false)
                .iter()
                .map(|s| s.to_string())
                .collect();
            let python: Vec<&str> = f["lineno"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            assert_eq!(ours, python, "{what}");
        }
    }
}

#[test]
fn traceback_format_as_cpython_writes_it() {
    let mut source_lines = 0;
    for (n, case) in cases().iter().enumerate() {
        for f in case["format"].as_array().unwrap() {
            let t = traceback(&f["frames"], 0);
            let limit = f["limit"].as_u64().map(|l| l as usize);
            let recent = f["most_recent_first"].as_bool().unwrap();
            let python: Vec<&str> = f["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            assert_eq!(
                t.format(limit, recent),
                python,
                "case {n}: {} limit {limit:?} most_recent_first {recent}",
                f["frames"]
            );
            source_lines += python.iter().filter(|l| l.starts_with("    ")).count();
        }
    }
    assert!(source_lines > 20, "source lines were compared too");
}
