//! What loading a large model twice costs, against sharing one instance
//! through a keyed singleton ([`tracealloc::Registry`]) and against mapping
//! the file twice (`memmap2`, as real `.safetensors` loaders do): heap, peak,
//! RSS and time after each step, then the tracer's view (the loader's line
//! holding two copies; no block for a map) and a verdict computed from the
//! figures.
//!
//! ```text
//! cargo run --release --example singleton_vs_duplicate
//! cargo run --release --example singleton_vs_duplicate -- --size-mib 16
//! cargo run --release --example singleton_vs_duplicate -- --model PATH
//! cargo run --release --example singleton_vs_duplicate -- --help
//! ```
//!
//! With no `--model`, a deterministic demo model (`--size-mib` MiB of f32
//! weights, default 256, in 22 tensors named and shaped as a small BERT's,
//! many of one shape, and a vocabulary of one word
//! per row of its word embeddings) is written under `target/tracealloc-demo/`
//! for the run and removed at exit (writing 256 MiB takes 1 to 2 s, a fifth
//! of the run; a cache would keep 256 MiB of disk for every size ever run).
//! Demo models that earlier runs left there are removed. `--model` loads any
//! `.safetensors` file (F32, F16 or BF16 tensors) instead, e.g. a downloaded
//! `BAAI/bge-large-zh-v1.5/model.safetensors`; the two options exclude each
//! other. A file that is not a model is refused in one line before anything
//! runs, as is a model whose loads would not fit in the available memory
//! (about three times its weights at the peak). The HTML report and the
//! timeline are written to `target/tracealloc-demo/` and kept.

#[allow(dead_code)] // the rest serves tests/singleton_cost.rs
mod model;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser};
use model::{FileMappings, MappedModel, Model};
use tracealloc::{KeyType, Registry, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// The keyed singleton: one instance per model path, freed when its last
/// user drops it (the seed's "weak references" and "lazy loading").
static MODELS: Registry<PathBuf, Model> = Registry::weak();

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `bytes` in the unit that suits it ("16.0 MiB", "8.3 KiB"), for prose.
fn size(bytes: u64) -> String {
    model::human_bytes(bytes)
}

/// One row of a strategy's table.
struct Row {
    step: String,
    heap: u64,
    peak: u64,
    rss: Option<u64>,
    time: Option<Duration>,
}

/// The heap and RSS at `row`, against `start`.
fn growth(row: &Row, start: &Row) -> (u64, Option<u64>) {
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
        print!("{}", wrap(n, "  "));
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
    heap: u64,
    /// RSS growth after both loads.
    rss: Option<u64>,
    /// The two loads' times.
    times: (Duration, Duration),
    /// Bytes of weights and vocabulary entries of one model.
    weights: usize,
    words: usize,
}

fn load(path: &Path) -> Model {
    Model::load(path).unwrap_or_else(|e| fail(&e))
}

/// Maps the file, then reads every weight once through the map (a checksum,
/// as a first inference would read them): the pages are touched, so RSS
/// shows them.
fn load_mapped(path: &Path) -> MappedModel {
    let m = MappedModel::load(path).unwrap_or_else(|e| fail(&e));
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

/// The command line. clap's help is not wrapped (that would take its
/// `wrap_help` feature), so the texts carry their own line breaks.
#[derive(Parser, Debug)]
#[command(
    name = "singleton_vs_duplicate",
    about = "What loading a model twice costs, against sharing one instance or mapping it",
    long_about = "What loading a model twice costs, against sharing one instance through\n\
                  tracealloc::Registry and against mapping the file (memmap2): heap, peak,\n\
                  RSS and time of each strategy, the tracer's view of the loads, and a\n\
                  verdict computed from the figures."
)]
struct Args {
    /// The demo model's size.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 256,
        // Parsed as i64 so that "-1" is "not in 1..=65536", not a bad digit.
        value_parser = clap::builder::RangedI64ValueParser::<u64>::new().range(1..=65536),
        conflicts_with = "model",
        allow_negative_numbers = true,
        help = "Demo model's f32 weights, in MiB (1 to 65536)",
        long_help = "Size of the demo model's f32 weights, in MiB (1 to 65536). The demo\n\
                     model (22 tensors, many of one shape, and a vocabulary) is written\n\
                     for this run and removed at exit."
    )]
    size_mib: u64,

    /// The model file to load instead.
    #[arg(
        long,
        value_name = "PATH",
        help = "Load this .safetensors file instead of the demo model",
        long_help = "Load this .safetensors file (F32, F16 or BF16 tensors) instead of\n\
                     the demo model. A file that is not a model is refused before\n\
                     anything runs."
    )]
    model: Option<PathBuf>,
}

/// The command line, with the output directory in the help.
fn parse_args() -> Args {
    let after = format!(
        "Writes report.html (open it in a browser), timeline.json and timeline.svg\n\
         to {}\n\
         (<CARGO_TARGET_DIR>/tracealloc-demo when CARGO_TARGET_DIR is set).\n\
         Needs about three times the weights in memory at its peak: a model that\n\
         would not fit in the available memory is refused.\n\n\
         Examples:\n  \
         cargo run --release --example singleton_vs_duplicate\n  \
         cargo run --release --example singleton_vs_duplicate -- --size-mib 16\n  \
         cargo run --release --example singleton_vs_duplicate -- --model PATH",
        model::demo_dir().display()
    );
    let matches = Args::command().after_help(after).get_matches();
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The demo model this run wrote, removed at exit (by [`fail`] too, which
/// exits without running destructors).
static DEMO_MODEL: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Removes the demo model this run wrote, if any; its size, if it was removed.
fn remove_demo_model() -> Option<u64> {
    let path = DEMO_MODEL.lock().ok()?.take()?;
    // A write that failed leaves its temporary file (see model::write_demo).
    let _ = std::fs::remove_file(path.with_extension("safetensors.tmp"));
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    std::fs::remove_file(&path).ok().map(|()| size)
}

/// Removes the demo model when `main` returns or unwinds.
struct DemoModelGuard;

impl Drop for DemoModelGuard {
    fn drop(&mut self) {
        remove_demo_model();
    }
}

/// Prints `error: {message}` (one line), removes the demo model, exits 1.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    remove_demo_model();
    std::process::exit(1);
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (Linux).
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Refuses a model whose loads would not fit: strategy 1 holds one decoded
/// copy while the second load holds the file's bytes and decodes another.
fn check_memory(what: &str, decoded: u64, file: u64) {
    let need = 2 * decoded + file;
    if let Some(available) = mem_available() {
        if need > available {
            fail(&format!(
                "{what}: loading it twice holds about {} at the peak (two decoded \
                 copies of the weights and the file's bytes), and /proc/meminfo says {} \
                 is available",
                model::human_bytes(need),
                model::human_bytes(available)
            ));
        }
    }
}

/// Prose wrapped at `WIDTH` columns, each line after `indent`; breaks only
/// at spaces, and never inside a figure: a number stays with the unit after
/// it ("16.0 MiB", "171 ms", "50 %").
fn wrap(text: &str, indent: &str) -> String {
    const WIDTH: usize = 80;
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "ms", "s", "%", "µs"];
    // Words, with a figure's number and unit joined into one.
    let mut words: Vec<String> = Vec::new();
    for w in text.split(' ').filter(|w| !w.is_empty()) {
        let unit = w.trim_end_matches(|c: char| ",.;:)".contains(c));
        match words.last_mut() {
            Some(prev) if UNITS.contains(&unit) && prev.ends_with(|c: char| c.is_ascii_digit()) => {
                prev.push(' ');
                prev.push_str(w);
            }
            _ => words.push(w.to_string()),
        }
    }
    let mut out = String::new();
    let mut line = String::new();
    for w in words {
        let len = |s: &str| s.chars().count();
        if !line.is_empty() && len(indent) + len(&line) + 1 + len(&w) > WIDTH {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&w);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The model to load, once the command line and the file are known good:
/// its path and a line saying what it is.
struct Input {
    path: PathBuf,
    /// Bytes of the file.
    file_bytes: u64,
    /// Bytes of the weights once decoded to f32 (what a read model holds).
    decoded: u64,
    /// Vocabulary entries.
    words: usize,
    /// The demo model's size, when this run writes one.
    demo_mib: Option<u64>,
}

/// Checks the command line's model (or the demo model's size) before
/// anything is printed: a file that is not a model, or a model too big for
/// the memory, ends the run with one line.
fn input(args: &Args) -> Input {
    match &args.model {
        Some(path) => {
            // Parses the header and checks every tensor's offsets and dtype
            // against the file; reads no weight.
            let m = MappedModel::load(path).unwrap_or_else(|e| fail(&e));
            if m.tensors.is_empty() {
                fail(&format!(
                    "{}: a .safetensors file with no tensors: nothing to load",
                    path.display()
                ));
            }
            let decoded: u64 = m.tensors.iter().map(|t| 4 * t.len() as u64).sum();
            let file_bytes = std::fs::metadata(path).map_or(0, |md| md.len());
            let words = m.vocab.len();
            drop(m);
            check_memory(&path.display().to_string(), decoded, file_bytes);
            Input {
                path: path.clone(),
                file_bytes,
                decoded,
                words,
                demo_mib: None,
            }
        }
        None => {
            let bytes = args.size_mib << 20;
            check_memory(&format!("--size-mib {}", args.size_mib), bytes, bytes);
            Input {
                path: model::demo_path(args.size_mib),
                file_bytes: bytes,
                decoded: bytes,
                words: model::demo_words(bytes as usize),
                demo_mib: Some(args.size_mib),
            }
        }
    }
}

fn main() {
    let args = parse_args();
    let input = input(&args);
    let _demo_model = DemoModelGuard;
    let path = input.path.clone();
    let mut demo_written = None;
    if let Some(size) = input.demo_mib {
        for (leftover, bytes) in model::remove_leftover_demos() {
            let line = format!(
                "Removed {} ({:.1} MiB), a demo model an earlier run left.",
                leftover.display(),
                mib(bytes)
            );
            print!("{}", wrap(&line, ""));
        }
        *DEMO_MODEL.lock().expect("not poisoned") = Some(path.clone());
        let bytes = (size << 20) as usize;
        let (r, t) = timed(|| model::write_demo(&path, bytes, model::demo_words(bytes)));
        if let Err(e) = r {
            fail(&e);
        }
        demo_written = Some(t);
    }
    let file_bytes = std::fs::metadata(&path).map_or(input.file_bytes, |m| m.len());
    let words = input.words;
    let what = match demo_written {
        Some(t) => format!(
            "Demo model: {} MiB of f32 weights in 22 tensors (16 of one shape, as a \
             small BERT's attention) and {words} vocabulary \
             entries, written to {} ({:.1} MiB) in {:.0} ms for this run and removed at exit \
             (--model PATH loads a .safetensors file of yours instead).",
            args.size_mib,
            path.display(),
            mib(file_bytes),
            t.as_secs_f64() * 1e3
        ),
        None => format!(
            "Model: {} ({:.1} MiB; {:.1} MiB of weights once decoded to f32, {words} \
             vocabulary entries).",
            path.display(),
            mib(file_bytes),
            mib(input.decoded)
        ),
    };
    print!("{}", wrap(&what, ""));
    print!(
        "{}",
        wrap(
            "Strategies 1 and 2 read it: the file's bytes are copied into the heap and each \
             tensor is decoded into its own Vec<f32>, so the weights are heap memory and count \
             in RSS. Strategy 3 maps it: the weights stay in the page cache and are read through \
             the map (each load reads every weight once), so they count in RSS, not in the heap; \
             the vocabulary is on the heap in all three.",
            ""
        )
    );
    println!();

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

    // The tracer's view: the diff of snapshots around the two loads. The
    // duplicates report counts blocks of 4 KiB and more: every weight
    // matrix of a real model (a small model's attention tensors are a few
    // hundred KiB), not the vocabulary's words.
    let dup_min = 4 << 10;
    // What the mapped models' diff may hold beyond the read models' rest.
    let map_slack = prev_power_of_two(dup.weights / 64).clamp(4 << 10, 1 << 20);
    print!(
        "{}",
        wrap(
            "Tracing each strategy's two loads again (snapshots before and after), \
             each load on a line of its own. Duplicated instances: calls that hold \
             the same blocks of 4 KiB and more, by call path and size.",
            ""
        )
    );
    println!();
    tracealloc::start(8);
    let mut report_diffs = Vec::new();
    let mut sites = Vec::new();
    let mut map_traced = (0, 0);
    for (name, how) in [("duplicate loading", 1), ("registry", 2), ("memory map", 3)] {
        tracealloc::mark!("traced: {name}");
        let before = tracealloc::take_snapshot();
        // Each load on a line of its own, as a program would write them:
        // the duplicate report names the line that loaded each copy.
        let pair: Box<dyn std::any::Any> = match how {
            1 => {
                let model1 = Arc::new(load(&path));
                let model2 = Arc::new(load(&path));
                Box::new((model1, model2))
            }
            2 => {
                let model1 = MODELS.get_or_load(path.clone(), || load(&path));
                let model2 = MODELS.get_or_load(path.clone(), || load(&path));
                Box::new((model1, model2))
            }
            _ => {
                let model1 = load_mapped(&path);
                let model2 = load_mapped(&path);
                Box::new((model1, model2))
            }
        };
        let after = tracealloc::take_snapshot();
        println!("Tracing, {name}: what the two loads hold (snapshot diff, by line)");
        print!(
            "{}",
            indent(&after.top_diff(&before, 4, KeyType::Lineno).to_string())
        );
        let dups = after.duplicate_instances(dup_min);
        print!("{}", indent(&dups.to_string()));
        println!();
        let diff = after.compare_to(&before, KeyType::Lineno, false);
        if how == 3 {
            map_traced = diff.iter().fold((0, 0), |(s, c), d| {
                (
                    s + d.size_diff.max(0) as u64,
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
    // The tracer's own weight, apart from the figures above (the strategies
    // ran before any snapshot): its heap (tables, and the symbolizer's
    // share), and the debug information the snapshots read to name the
    // lines, given back now.
    let (tracer_heap, symbolizer) = (tracealloc::tracer_memory(), tracealloc::symbolizer_memory());
    tracealloc::release_symbols();
    print!(
        "{}",
        wrap(
            &format!(
                "The tracer's own memory, apart from the strategies' figures: its heap \
                 was {} (its tables, and the debug information the snapshots parsed to \
                 name the lines); the symbolizer held {} in all, its heap and the debug \
                 sections it mapped. tracealloc::release_symbols() gave the symbolizer's \
                 share back: the tracer's heap is {} now.",
                size(tracer_heap as u64),
                size(symbolizer as u64),
                size(tracealloc::tracer_memory() as u64),
            ),
            ""
        )
    );
    println!();
    tracealloc::mark!("tracing off");
    let timeline = sampler.stop();

    // The verdict, from the figures above.
    let (weights, words) = (dup.weights, dup.words);
    let saved = dup.heap.saturating_sub(reg.heap);
    let load_dup = dup.times.0 + dup.times.1;
    let load_reg = reg.times.0 + reg.times.1;
    let rss_part = match (dup.rss, reg.rss) {
        (Some(d), Some(r)) => format!(
            " RSS grew by {} when loading twice and by {} when sharing.",
            size(d),
            size(r)
        ),
        _ => String::new(),
    };
    let site_part = match (&sites[0].0, &sites[1].0) {
        (Some(d), Some(r)) => format!(
            " The tracer puts it at {}: {} blocks holding {} when loading twice, {} blocks holding {} through the registry; its duplicate report found {} that sharing one instance would save ({:.1} % off the measured difference{}).",
            d.traceback,
            d.count,
            size(d.size as u64),
            r.count,
            size(r.size as u64),
            size(sites[0].1 as u64),
            100.0 * (sites[0].1 as f64 - saved as f64).abs() / saved.max(1) as f64,
            if (sites[0].1 as f64) < 0.98 * saved as f64 {
                ": the rest is in blocks under 4 KiB, which it does not count"
            } else {
                ""
            }
        ),
        _ => String::new(),
    };
    println!("Verdict");
    let paragraph = format!(
        "Loading the model ({} of weights, {} vocabulary entries) twice held {} of heap; \
sharing one instance through the registry held {}, {} ({:.0} %) less.{rss_part} \
The two loads took {:.0} ms against {:.0} ms: the second get_or_load returned the same instance in {:.3} ms \
instead of loading again (the second plain load took {:.0} ms).{site_part}",
        size(weights as u64),
        words,
        size(dup.heap),
        size(reg.heap),
        size(saved),
        100.0 * saved as f64 / dup.heap.max(1) as f64,
        load_dup.as_secs_f64() * 1e3,
        load_reg.as_secs_f64() * 1e3,
        reg.times.1.as_secs_f64() * 1e3,
        dup.times.1.as_secs_f64() * 1e3
    );
    print!("{}", wrap(&paragraph, ""));
    println!();
    // Besides their weights, the two read models held their vocabularies and
    // tensor lists: the mapped models' heap should be that and no more.
    let read_rest = dup.heap.saturating_sub(2 * weights as u64);
    let map_rss = match map.rss {
        Some(r) => format!("; RSS grew by {}", size(r)),
        None => String::new(),
    };
    let smaps_part = match &maps {
        Some(m) if per_mapping(m) => format!(
            " (/proc/self/smaps: Rss {} over the file's {} mappings, Pss {}: Linux counts a mapped file page in RSS once per mapping, and the two maps share one copy in the page cache)",
            size(m.rss),
            m.mappings,
            size(m.pss)
        ),
        _ => String::new(),
    };
    // The tracer's diff around the two maps: blocks, bytes, and whether any
    // is beyond what the read models hold besides their weights.
    let tracer_part = format!(
        "the tracer's diff around them holds {} blocks of {} in all{}",
        map_traced.1,
        size(map_traced.0),
        if map_traced.0 <= read_rest + map_slack as u64 {
            ", the vocabularies and tensor lists: no block for the weights"
        } else {
            ""
        }
    );
    let map_dups = if sites[2].1 > 0 {
        format!(
            " Its duplicate report finds {} held twice: each map keeps its own vocabulary and tensor list.",
            size(sites[2].1 as u64)
        )
    } else {
        String::new()
    };
    let paragraph = format!(
        "Mapping the file twice ({} of weights in the file) held {} of heap: what the two read models \
hold besides their weights ({}: vocabularies, tensor lists) plus {}{map_rss}{smaps_part}. \
The two maps took {:.0} ms, reading every weight; {tracer_part}.{map_dups}",
        size(map.weights as u64),
        size(map.heap),
        size(read_rest),
        size(map.heap.saturating_sub(read_rest)),
        (map.times.0 + map.times.1).as_secs_f64() * 1e3,
    );
    print!("{}", wrap(&paragraph, ""));
    println!();
    let paragraph = format!(
        "So each tool sees something else: the heap counters (stats, measure) see the copies of loading \
({} twice, {} shared) and nothing of a map's weights; RSS sees the pages touched, \
a map's file pages included, once per mapping; the tracer sees no block for a map.",
        size(dup.heap),
        size(reg.heap)
    );
    print!("{}", wrap(&paragraph, ""));

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
            .text(
                &format!("Tracing, {name}: duplicated instances"),
                &dups.to_string(),
            );
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
            println!("Timeline: {}", timeline_path.display());
            println!("Chart:    {}", svg_path.display());
            println!(
                "Report:   {} (one file: open it in a browser)",
                report_path.display()
            );
        }
        Err(e) => fail(&e),
    }
    if let Some(bytes) = remove_demo_model() {
        println!(
            "Removed the demo model ({:.1} MiB): the next run writes it again.",
            mib(bytes)
        );
    }
}

/// The largest power of two at most `n` (1 for 0).
fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
