//! What loading a large model twice costs, against sharing one instance
//! through a keyed singleton ([`tracealloc::Registry`]) and against mapping
//! the file twice (`memmap2`, as real `.safetensors` loaders do): heap, peak,
//! RSS and time after each step, then the tracer's view (the loader's line
//! holding two copies; no block for a map) and a verdict computed from the
//! figures.
//!
//! ```text
//! cargo run --release --example singleton_vs_duplicate [-- --size-mib N] [-- --model PATH]
//! ```
//!
//! With no `--model`, a deterministic demo model (`--size-mib`, default 256,
//! of f32 weights in four named tensors, plus a 30 000-word vocabulary) is
//! written once under `target/tracealloc-demo/` and reused. `--model` loads
//! any `.safetensors` file (F32, F16 or BF16 tensors), e.g. a downloaded
//! `BAAI/bge-large-zh-v1.5/model.safetensors`.

#[allow(dead_code)] // the rest serves tests/singleton_cost.rs
mod model;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::{FileMappings, MappedModel, Model};
use tracealloc::{KeyType, Registry, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// The keyed singleton: one instance per model path, freed when its last
/// user drops it (the seed's "weak references" and "lazy loading").
static MODELS: Registry<PathBuf, Model> = Registry::weak();

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// One row of a strategy's table.
struct Row {
    step: String,
    heap: usize,
    peak: usize,
    rss: Option<usize>,
    time: Option<Duration>,
}

/// The heap and RSS at `row`, against `start`.
fn growth(row: &Row, start: &Row) -> (usize, Option<usize>) {
    (
        row.heap.saturating_sub(start.heap),
        row.rss.zip(start.rss).map(|(a, b)| a.saturating_sub(b)),
    )
}

fn row(step: &str, time: Option<Duration>) -> Row {
    let s = tracealloc::stats();
    Row {
        step: step.to_string(),
        heap: s.current_bytes,
        peak: s.peak_bytes,
        rss: tracealloc::rss(),
        time,
    }
}

fn print_table(title: &str, rows: &[Row], same: bool, notes: &[String]) {
    println!("{title}");
    println!(
        "  {:<34} {:>12} {:>12} {:>12} {:>10}",
        "step", "heap now", "heap peak", "RSS", "time"
    );
    for r in rows {
        let rss = r
            .rss
            .map_or_else(|| "n/a".to_string(), |b| format!("{:.1} MiB", mib(b)));
        let time = r
            .time
            .map_or_else(String::new, |t| format!("{:.1} ms", t.as_secs_f64() * 1e3));
        println!(
            "  {:<34} {:>8.1} MiB {:>8.1} MiB {:>12} {:>10}",
            r.step,
            mib(r.heap),
            mib(r.peak),
            rss,
            time
        );
    }
    println!("  model1 is model2: {same}");
    for n in notes {
        println!("  {n}");
    }
    println!();
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// What a strategy's two loads held and took, for the verdict.
struct Outcome {
    /// Heap held after both loads, over the start.
    heap: usize,
    /// RSS growth after both loads.
    rss: Option<usize>,
    /// The two loads' times.
    times: (Duration, Duration),
    /// Bytes of weights and vocabulary entries of one model.
    weights: usize,
    words: usize,
}

fn load(path: &Path) -> Model {
    Model::load(path).unwrap_or_else(|e| {
        eprintln!("singleton_vs_duplicate: {e}");
        std::process::exit(1);
    })
}

/// Maps the file, then reads every weight once through the map (a checksum,
/// as a first inference would read them): the pages are touched, so RSS
/// shows them.
fn load_mapped(path: &Path) -> MappedModel {
    let m = MappedModel::load(path).unwrap_or_else(|e| {
        eprintln!("singleton_vs_duplicate: {e}");
        std::process::exit(1);
    });
    black_box(m.checksum());
    m
}

/// Whether smaps shows the file's pages counted in Rss once per mapping
/// (Rss at least 1.5 times Pss over two or more mappings), which the notes
/// then explain.
fn per_mapping(m: &FileMappings) -> bool {
    m.mappings >= 2 && 2 * m.rss >= 3 * m.pss
}

/// Strategy 1: `Model::load` twice.
#[tracealloc::profile(rss)]
fn load_twice(path: &Path) -> Outcome {
    tracealloc::reset_peak();
    let mut rows = vec![row("start", None)];
    let (model1, t1) = timed(|| Arc::new(load(path)));
    rows.push(row("model1 = Model::load(path)", Some(t1)));
    let (model2, t2) = timed(|| Arc::new(load(path)));
    rows.push(row("model2 = Model::load(path)", Some(t2)));
    let same = Arc::ptr_eq(&model1, &model2);
    let (weights, words) = (model1.weight_bytes(), model1.vocab.len());
    drop(model1);
    rows.push(row("drop(model1)", None));
    drop(model2);
    rows.push(row("drop(model2)", None));
    print_table(
        "Strategy 1: load the model twice (Model::load, twice)",
        &rows,
        same,
        &[],
    );
    let (heap, rss) = growth(&rows[2], &rows[0]);
    Outcome {
        heap,
        rss,
        times: (t1, t2),
        weights,
        words,
    }
}

/// Strategy 2: the registry, twice.
#[tracealloc::profile(rss)]
fn share_one(path: &Path) -> Outcome {
    tracealloc::reset_peak();
    let mut rows = vec![row("start", None)];
    let (model1, t1) = timed(|| MODELS.get_or_load(path.to_path_buf(), || load(path)));
    rows.push(row("model1 = MODELS.get_or_load(path)", Some(t1)));
    let (model2, t2) = timed(|| MODELS.get_or_load(path.to_path_buf(), || load(path)));
    rows.push(row("model2 = MODELS.get_or_load(path)", Some(t2)));
    let same = Arc::ptr_eq(&model1, &model2);
    let (weights, words) = (model1.weight_bytes(), model1.vocab.len());
    drop(model1);
    rows.push(row("drop(model1)", None));
    drop(model2);
    rows.push(row("drop(model2)  (last user: freed)", None));
    print_table(
        "Strategy 2: share one instance (Registry::weak, get_or_load twice)",
        &rows,
        same,
        &[],
    );
    let (heap, rss) = growth(&rows[2], &rows[0]);
    Outcome {
        heap,
        rss,
        times: (t1, t2),
        weights,
        words,
    }
}

/// Strategy 3: map the file twice, reading every weight through each map.
#[tracealloc::profile(rss)]
fn map_twice(path: &Path) -> (Outcome, Option<FileMappings>) {
    tracealloc::reset_peak();
    let mut rows = vec![row("start", None)];
    let (model1, t1) = timed(|| Arc::new(load_mapped(path)));
    rows.push(row("model1 = MappedModel::load(path)", Some(t1)));
    let (model2, t2) = timed(|| Arc::new(load_mapped(path)));
    rows.push(row("model2 = MappedModel::load(path)", Some(t2)));
    let same = Arc::ptr_eq(&model1, &model2);
    let (weights, words) = (model1.weight_bytes(), model1.vocab.len());
    let maps = model::file_mappings(path);
    drop(model1);
    rows.push(row("drop(model1)", None));
    drop(model2);
    rows.push(row("drop(model2)", None));
    let mut notes = Vec::new();
    if let Some(m) = &maps {
        notes.push(format!(
            "/proc/self/smaps, the file's {} mappings: Rss {:.1} MiB, Pss {:.1} MiB, Shared {:.1} MiB, Private {:.1} MiB",
            m.mappings,
            mib(m.rss),
            mib(m.pss),
            mib(m.shared),
            mib(m.private)
        ));
        if per_mapping(m) {
            notes.push("(RSS counts a file page once per mapping that holds it; Pss divides it among them: one copy, in the page cache)".to_string());
        }
    }
    print_table(
        "Strategy 3: map the file (memmap2), twice",
        &rows,
        same,
        &notes,
    );
    let (heap, rss) = growth(&rows[2], &rows[0]);
    (
        Outcome {
            heap,
            rss,
            times: (t1, t2),
            weights,
            words,
        },
        maps,
    )
}

struct Args {
    model: Option<PathBuf>,
    size_mib: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        size_mib: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => args.model = Some(it.next().ok_or("--model needs a path")?.into()),
            "--size-mib" => {
                let v = it.next().ok_or("--size-mib needs a number")?;
                args.size_mib = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| (1..=65536).contains(&n))
                    .ok_or(format!(
                        "--size-mib needs a number from 1 to 65536, got {v:?}"
                    ))?;
            }
            "-h" | "--help" => {
                println!("usage: singleton_vs_duplicate [--size-mib N] [--model PATH]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("singleton_vs_duplicate: {e}");
        std::process::exit(2);
    });
    let path = match &args.model {
        Some(p) => p.clone(),
        None => {
            let p = model::demo_path(args.size_mib);
            if !p.exists() {
                println!(
                    "Writing a {} MiB demo model to {} (once)...",
                    args.size_mib,
                    p.display()
                );
                let (r, t) = timed(|| model::write_demo(&p, args.size_mib << 20, 30_000));
                if let Err(e) = r {
                    eprintln!("singleton_vs_duplicate: {e}");
                    std::process::exit(1);
                }
                println!("  written in {:.1} s\n", t.as_secs_f64());
            }
            p
        }
    };
    let file_bytes = std::fs::metadata(&path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    println!(
        "Model: {} ({:.1} MiB). Strategies 1 and 2 read it: the file's bytes are copied into the heap and",
        path.display(),
        mib(file_bytes)
    );
    println!("each tensor is decoded into its own Vec<f32>, so the weights are heap memory and count in RSS.");
    println!("Strategy 3 maps it: the weights stay in the page cache and are read through the map (each load");
    println!("reads every weight once), so they count in RSS, not in the heap; the vocabulary is on the heap in all three.\n");

    // mprof's timeline: heap, peak and RSS every 10 ms, with each profiled
    // strategy's entry and exit as brackets; and memory_profiler's line
    // table of each strategy, printed here after its own step table.
    let sampler = tracealloc::Timeline::start(Duration::from_millis(10));
    tracealloc::line_profile_output(tracealloc::LineOutput::Off)
        .expect("turning the line tables' printing off cannot fail");
    let line_table = |title: &str| {
        let t = tracealloc::line_tables()
            .pop()
            .expect("the strategy is profiled: it left a line table");
        println!("{title}, line by line (#[tracealloc::profile(rss)]: memory_profiler's table)");
        print!("{}", indent(&t.to_string()));
        println!();
        t
    };
    let dup = load_twice(&path);
    let table_dup = line_table("Strategy 1");
    let reg = share_one(&path);
    let table_reg = line_table("Strategy 2");
    let (map, maps) = map_twice(&path);
    let table_map = line_table("Strategy 3");

    // The tracer's view: the diff of snapshots around the two loads.
    tracealloc::start(8);
    let mut report_diffs = Vec::new();
    let mut sites = Vec::new();
    let mut map_traced = (0, 0);
    for (name, how) in [("duplicate loading", 1), ("registry", 2), ("memory map", 3)] {
        tracealloc::mark!("traced: {name}");
        let before = tracealloc::take_snapshot();
        let pair: Box<dyn std::any::Any> = match how {
            1 => Box::new((Arc::new(load(&path)), Arc::new(load(&path)))),
            2 => Box::new((
                MODELS.get_or_load(path.clone(), || load(&path)),
                MODELS.get_or_load(path.clone(), || load(&path)),
            )),
            _ => Box::new((load_mapped(&path), load_mapped(&path))),
        };
        let after = tracealloc::take_snapshot();
        println!("Tracing, {name}: what the two loads hold (snapshot diff, by line)");
        print!(
            "{}",
            indent(&after.top_diff(&before, 4, KeyType::Lineno).to_string())
        );
        let dups = after.duplicates(1 << 20);
        print!("{}", indent(&dups.to_string()));
        println!();
        let diff = after.compare_to(&before, KeyType::Lineno, false);
        if how == 3 {
            map_traced = diff.iter().fold((0, 0), |(s, c), d| {
                (
                    s + d.size_diff.max(0) as usize,
                    c + d.count_diff.max(0) as usize,
                )
            });
        }
        sites.push((diff.into_iter().next(), dups.saved_bytes()));
        report_diffs.push((name, after, before, dups));
        black_box(pair);
    }
    // What the three traced pairs of loads allocated over the run, by
    // stack, as a flame graph for the report.
    let flame = tracealloc::profile().flamegraph(tracealloc::Metric::BytesAllocated);
    tracealloc::stop();
    tracealloc::mark!("tracing off");
    let timeline = sampler.stop();

    // The verdict, from the figures above.
    let (weights, words) = (dup.weights, dup.words);
    let saved = dup.heap.saturating_sub(reg.heap);
    let load_dup = dup.times.0 + dup.times.1;
    let load_reg = reg.times.0 + reg.times.1;
    let rss_part = match (dup.rss, reg.rss) {
        (Some(d), Some(r)) => format!(" (RSS grew by {:.1} MiB against {:.1} MiB)", mib(d), mib(r)),
        _ => String::new(),
    };
    let site_part = match (&sites[0].0, &sites[1].0) {
        (Some(d), Some(r)) => format!(
            " The tracer puts it at {}: {} blocks holding {:.1} MiB when loading twice, {} blocks holding {:.1} MiB through the registry; its duplicate report found {:.1} MiB that sharing would save.",
            d.traceback,
            d.count,
            mib(d.size),
            r.count,
            mib(r.size),
            mib(sites[0].1)
        ),
        _ => String::new(),
    };
    println!("Verdict");
    println!(
        "Loading the model ({:.1} MiB of weights, {} vocabulary entries) twice held {:.1} MiB of heap; \
sharing one instance through the registry held {:.1} MiB{rss_part}, {:.1} MiB ({:.0} %) less. \
The two loads took {:.0} ms against {:.0} ms: the second get_or_load returned the same instance in {:.3} ms \
instead of loading again ({:.0} ms saved).{site_part}",
        mib(weights),
        words,
        mib(dup.heap),
        mib(reg.heap),
        mib(saved),
        100.0 * saved as f64 / dup.heap.max(1) as f64,
        load_dup.as_secs_f64() * 1e3,
        load_reg.as_secs_f64() * 1e3,
        reg.times.1.as_secs_f64() * 1e3,
        (load_dup.saturating_sub(load_reg)).as_secs_f64() * 1e3
    );
    // Besides their weights, the two read models held their vocabularies and
    // tensor lists: the mapped models' heap should be that and no more.
    let read_rest = dup.heap.saturating_sub(2 * weights);
    let map_rss = match map.rss {
        Some(r) => format!("; RSS grew by {:.1} MiB", mib(r)),
        None => String::new(),
    };
    let smaps_part = match &maps {
        Some(m) if per_mapping(m) => format!(
            " (/proc/self/smaps: Rss {:.1} MiB over the file's {} mappings, Pss {:.1} MiB: Linux counts a mapped file page in RSS once per mapping, and the two maps share one copy in the page cache)",
            mib(m.rss),
            m.mappings,
            mib(m.pss)
        ),
        _ => String::new(),
    };
    // The tracer's diff around the two maps: blocks, bytes, and whether any
    // is beyond what the read models hold besides their weights.
    let tracer_part = format!(
        "the tracer's diff around them holds {} blocks of {:.1} MiB in all{}",
        map_traced.1,
        mib(map_traced.0),
        if map_traced.0 <= read_rest + (1 << 20) {
            ", the vocabularies and tensor lists: no block for the weights"
        } else {
            ""
        }
    );
    println!(
        "Mapping the file twice ({:.1} MiB of weights in the file) held {:.1} MiB of heap: what the two read models \
hold besides their weights ({:.1} MiB: vocabularies, tensor lists) plus {:.1} MiB{map_rss}{smaps_part}. \
The two maps took {:.0} ms, reading every weight; {tracer_part}.",
        mib(map.weights),
        mib(map.heap),
        mib(read_rest),
        mib(map.heap.saturating_sub(read_rest)),
        (map.times.0 + map.times.1).as_secs_f64() * 1e3,
    );
    println!(
        "So each tool sees something else: the heap counters (stats, measure) see the copies of loading \
({:.1} MiB twice, {:.1} MiB shared) and nothing of a map's weights; RSS sees the pages touched, \
a map's file pages included, once per mapping; the tracer sees no block for a map.",
        mib(dup.heap),
        mib(reg.heap)
    );

    // The timeline and one HTML report, under target/.
    let dir = model::demo_dir();
    let timeline_path = dir.join("timeline.json");
    let svg_path = dir.join("timeline.svg");
    let report_path = dir.join("report.html");
    let mut report =
        tracealloc::Report::new("tracealloc: one model, loaded twice, shared, or mapped")
            .timeline(
                "Timeline: heap, peak and RSS every 10 ms, each strategy bracketed",
                &timeline,
            )
            .text(
                "Strategy 1: load the model twice, line by line",
                &table_dup.to_string(),
            )
            .text(
                "Strategy 2: share one instance, line by line",
                &table_reg.to_string(),
            )
            .text(
                "Strategy 3: map the file twice, line by line",
                &table_map.to_string(),
            );
    for (name, after, before, dups) in &report_diffs {
        report = report
            .snapshot_top(
                &format!("Tracing, {name}: the biggest lines live after the two loads"),
                after,
                8,
                KeyType::Lineno,
            )
            .snapshot_diff(
                &format!("Tracing, {name}: what the two loads hold (by line)"),
                after,
                before,
                8,
                KeyType::Lineno,
            )
            .duplicates(&format!("Tracing, {name}: duplicates"), dups);
    }
    report = report.svg("Bytes allocated by the traced loads (flame graph)", &flame);
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| timeline.save(&timeline_path).map_err(|e| e.to_string()))
        .and_then(|()| {
            std::fs::write(&svg_path, timeline.svg(1200, 500)).map_err(|e| e.to_string())
        })
        .and_then(|()| report.write(&report_path).map_err(|e| e.to_string()));
    println!();
    match written {
        Ok(()) => {
            println!(
                "Timeline: {} (chart: {})",
                timeline_path.display(),
                svg_path.display()
            );
            println!(
                "Report:   {} (one file: open it in a browser)",
                report_path.display()
            );
        }
        Err(e) => eprintln!("singleton_vs_duplicate: {e}"),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
