//! A DHAT file from a real traced run: blocks allocated at known lines of
//! this file (some freed, some kept), written by `Profile::write_dhat` and
//! read back as JSON. The files it writes are those
//! `scripts/dh_view_check.js` loads into valgrind's `dh_view.html` in
//! headless Chromium: set `TRACEALLOC_DHAT_OUT=/path/run.json` to keep them
//! (`run.json`, and beside it `run-live.json`, the live blocks of a
//! snapshot taken at the end, and `run-empty.json`, an empty profile).
//!
//! Tracing is process-wide: this file holds a single test.

use std::hint::black_box;

use serde_json::Value;
use tracealloc::{Profile, Snapshot};

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// One block of 100 000 bytes, kept.
#[inline(never)]
fn load_model() -> (Vec<u8>, u32) {
    (black_box(vec![7u8; 100_000]), line!())
}

/// Ten blocks of 1000 bytes, each freed at once.
#[inline(never)]
fn churn() -> u32 {
    let mut line = 0;
    for _ in 0..10 {
        let (v, l) = (black_box(vec![0u8; 1000]), line!());
        line = l;
        drop(v);
    }
    line
}

/// Three blocks of 2048 bytes, kept.
#[inline(never)]
fn fill_cache() -> (Vec<Vec<u8>>, u32) {
    let mut cache = Vec::with_capacity(3);
    let mut line = 0;
    for _ in 0..3 {
        let (v, l) = (black_box(vec![1u8; 2048]), line!());
        line = l;
        cache.push(v);
    }
    (cache, line)
}

/// The program point whose allocating frame is `function` (this file's,
/// `dhat_view::function`; release builds' line tables name it without its
/// module) at `line` of this file.
fn pp<'a>(v: &'a Value, function: &str, line: u32) -> &'a Value {
    let ftbl = v["ftbl"].as_array().unwrap();
    let at = format!("{function} (tests/dhat_view.rs:{line}:0)");
    let found: Vec<&Value> = v["pps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pp| {
            let i = pp["fs"][0].as_u64().unwrap_or(0) as usize;
            let text = ftbl[i].as_str().unwrap();
            let (address, rest) = text.split_once(": ").unwrap();
            assert!(address.starts_with("0x"), "{text}");
            rest == at || rest == format!("dhat_view::{at}")
        })
        .collect();
    assert_eq!(found.len(), 1, "one program point at {at}; ftbl: {ftbl:#?}");
    found[0]
}

#[test]
fn a_traced_run_as_a_dhat_file() {
    tracealloc::start(8);
    let (model, model_line) = load_model();
    let churn_line = churn();
    let (cache, cache_line) = fill_cache();
    let profile = tracealloc::profile();
    let snapshot = tracealloc::take_snapshot();
    tracealloc::stop();

    let keep = std::env::var_os("TRACEALLOC_DHAT_OUT");
    let path = match &keep {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::temp_dir().join(format!("dhat-view-{}.json", std::process::id())),
    };
    profile.write_dhat(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, profile.dhat());
    // Beside it, for the viewer check: the run's live blocks (a snapshot's
    // profile: no peak, no lifetimes) and an empty profile.
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let live = Profile::from_snapshot(&snapshot);
    let empty = Profile::from_snapshot(&Snapshot::new(Vec::new(), 1));
    let beside = [
        (path.with_file_name(format!("{stem}-live.json")), &live),
        (path.with_file_name(format!("{stem}-empty.json")), &empty),
    ];
    for (p, profile) in &beside {
        profile.write_dhat(p).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(v["tg"], 0, "the peak's time is unknown");
        assert_eq!(v["pps"].as_array().unwrap().len(), profile.sites().len());
    }
    if keep.is_none() {
        std::fs::remove_file(&path).unwrap();
        for (p, _) in &beside {
            std::fs::remove_file(p).unwrap();
        }
    } else {
        eprintln!("DHAT file written to {}", path.display());
    }

    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["dhatFileVersion"], 2);
    assert_eq!(v["mode"], "rust-heap");
    assert_eq!(v["pid"], std::process::id());
    let ftbl = v["ftbl"].as_array().unwrap();
    assert_eq!(ftbl[0], "[root]");
    for pp in v["pps"].as_array().unwrap() {
        for i in pp["fs"].as_array().unwrap() {
            let i = i.as_u64().unwrap() as usize;
            assert!(0 < i && i < ftbl.len(), "{pp}");
        }
    }
    let tb: u64 = v["pps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pp| pp["tb"].as_u64().unwrap())
        .sum();
    assert_eq!(tb, profile.bytes_allocated());

    let figures = |pp: &Value| {
        ["tb", "tbk", "eb", "ebk"].map(|k| pp[k].as_u64().unwrap_or_else(|| panic!("{k}: {pp}")))
    };
    let model_pp = pp(&v, "load_model", model_line);
    assert_eq!(figures(model_pp), [100_000, 1, 100_000, 1]);
    let churn_pp = pp(&v, "churn", churn_line);
    assert_eq!(figures(churn_pp), [10_000, 10, 0, 0]);
    let cache_pp = pp(&v, "fill_cache", cache_line);
    assert_eq!(figures(cache_pp), [3 * 2048, 3, 3 * 2048, 3]);
    // The caller's frame follows the allocating one.
    let caller = ftbl[model_pp["fs"][1].as_u64().unwrap() as usize]
        .as_str()
        .unwrap();
    assert!(
        caller.contains("a_traced_run_as_a_dhat_file (tests/dhat_view.rs:"),
        "{caller}"
    );

    drop((model, cache));
}
