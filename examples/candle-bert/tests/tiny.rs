//! The candle example on the tiny config, in both orders: the registry
//! holds no duplicate; two loads (direct calls, and inside timing
//! closures) are one instance of two copies named at the example's two
//! lines, its saving within 1 % of the heap the second load added; the
//! lines of the user's code name the memory where the allocating line is
//! candle's; and the verdict does not depend on the order.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn run(args: &[&str], name: &str) -> (String, Vec<Value>) {
    let results = std::env::temp_dir().join(format!(
        "tracealloc-candle-{}-{name}.json",
        std::process::id()
    ));
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_tracealloc-candle-bert"))
        .args(args)
        .arg("--results")
        .arg(&results)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&results).expect("the results file");
    let _ = std::fs::remove_file(&results);
    let v: Value = serde_json::from_str(&text).expect("JSON results");
    assert!(
        !target
            .join("tracealloc-candle/tiny/model.safetensors")
            .exists(),
        "the model written for the run is removed"
    );
    (stdout, v.as_array().expect("an array").clone())
}

fn get<'a>(results: &'a [Value], strategy: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["strategy"] == strategy)
        .unwrap_or_else(|| panic!("no {strategy} result"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The example's source, to check that a named line is a load's.
fn source_line(frame: &str) -> String {
    let (file, line) = frame.rsplit_once(':').expect("file:line");
    assert!(file.ends_with("src/main.rs"), "{frame}");
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs")).unwrap();
    src.lines()
        .nth(line.parse::<usize>().unwrap() - 1)
        .unwrap()
        .to_string()
}

fn check(results: &[Value]) {
    let reg = get(results, "registry");
    assert_eq!(reg["same"], true);
    assert_eq!(reg["instances"].as_array().unwrap().len(), 0, "{reg}");
    for strategy in ["twice", "closures", "mapped"] {
        let r = get(results, strategy);
        assert_eq!(r["same"], false);
        let instances = r["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 1, "{strategy}: {r}");
        let i = &instances[0];
        assert_eq!(u(i, "copies"), 2, "{strategy}: {i}");
        // Every tensor of 4 KiB and more: in each of the 2 layers, 6
        // matrices and the intermediate bias (1024 floats); the word and
        // position embeddings (the token types' are 2 KiB).
        assert_eq!(u(i, "blocks"), 2 * (6 + 1) + 2, "{strategy}: {i}");
        let measured = u(r, "heap_two") - u(r, "heap_one");
        let off = (u(r, "saved") as f64 - measured as f64).abs() / measured as f64;
        assert!(
            off < 0.01,
            "{strategy}: saving {} against {measured} measured",
            u(r, "saved")
        );
        // Named at the two lines of the user's code that loaded a copy.
        let callers: Vec<&str> = i["callers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(callers.len(), 2);
        assert_ne!(callers[0], callers[1], "{strategy}: {callers:?}");
        // (In closures: the line that calls `step` with the load.)
        for c in &callers {
            let line = source_line(c);
            assert!(
                line.contains("BertModel::load(") || line.contains("step(\"model"),
                "{strategy}: {c}: {line}"
            );
        }
        assert!(
            i["allocated_at"][0]
                .as_str()
                .unwrap()
                .starts_with("candle-core-0.11.1/src/"),
            "{i}"
        );
        // By the lines of the user's code: the two loads' lines first; by
        // the allocating line, candle's.
        let top: Vec<&str> = r["user_top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        // (The first line of the user's in the stack: in closures, the
        // closure's line, where the duplicates name the line that called
        // `step` with it.)
        for t in &top[..2] {
            let frame = t.split(' ').next().unwrap();
            let line = source_line(frame);
            assert!(
                line.contains("BertModel::load("),
                "{strategy}: {top:?}: {line}"
            );
        }
        assert_ne!(top[0].split(' ').next(), top[1].split(' ').next());
        assert!(
            r["line_top"]
                .as_str()
                .unwrap()
                .starts_with("candle-core-0.11.1/"),
            "{r}"
        );
    }
}

/// The verdict's lines without times (which vary from run to run).
fn verdict_without_times(out: &str) -> Vec<String> {
    out.split("Verdict")
        .nth(1)
        .expect("a verdict")
        .lines()
        .filter(|l| !l.contains(" ms") && !l.contains("RSS"))
        .map(str::to_string)
        .collect()
}

#[test]
fn duplicates_and_user_lines_hold_in_both_orders_and_at_two_limits() {
    let (forward, a) = run(&[], "forward");
    check(&a);
    let (reverse, b) = run(&["--reverse"], "reverse");
    check(&b);
    assert_eq!(
        b.iter().map(|r| r["strategy"].clone()).collect::<Vec<_>>(),
        ["mapped", "registry", "closures", "twice"]
    );
    // Heap figures are exact: the same in either order.
    for s in ["twice", "closures", "registry", "mapped"] {
        for k in ["heap_one", "heap_two", "saved"] {
            assert_eq!(get(&a, s)[k], get(&b, s)[k], "{s} {k}");
        }
    }
    assert_eq!(
        verdict_without_times(&forward),
        verdict_without_times(&reverse)
    );
    // A deeper limit changes nothing the reports say.
    let (_, c) = run(&["--frames", "16"], "frames16");
    check(&c);
}
