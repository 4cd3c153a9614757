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
use serde_json::{json, Value};
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

    /// Run the strategies in reverse order (each runs in a fresh process:
    /// the verdict should not change).
    #[arg(long)]
    reverse: bool,

    /// Run one strategy (1, 2 or 3) in this process: what the program runs
    /// itself with, once per strategy.
    #[arg(long, hide = true, requires = "model", value_parser = clap::value_parser!(u8).range(1..=3))]
    strategy: Option<u8>,
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
         cargo run --release --example singleton_vs_duplicate -- --reverse\n  \
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
    if let (Some(n), Some(path)) = (args.strategy, &args.model) {
        let dir = std::env::var_os("TRACEALLOC_DEMO_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(model::demo_dir);
        child(n, path, &dir);
        return;
    }
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

    // Each strategy in a fresh process of its own (this program, run again
    // with --strategy): RSS, the allocator's cached pages and the first
    // load's warm-up do not carry from one to the next.
    let mut order = vec![1u8, 2, 3];
    if args.reverse {
        order.reverse();
    }
    print!(
        "{}",
        wrap(
            &format!(
                "Each strategy runs in a fresh process of its own{}: its step table, its \
                 line table, then its two loads traced again (snapshots before and after, \
                 each load on a line of its own; duplicated instances: the same content \
                 held more than once, in blocks of 4 KiB and more).",
                if args.reverse {
                    ", in reverse order"
                } else {
                    ""
                }
            ),
            ""
        )
    );
    println!();
    let dir = model::demo_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(&format!("{}: {e}", dir.display()));
    }
    let mut results: [Option<Value>; 3] = [None, None, None];
    for &n in &order {
        results[n as usize - 1] = Some(run_strategy(n, &path, &dir));
    }
    let [dup, reg, map] = results.map(|r| r.expect("every strategy ran"));

    // The tracer's own weight, apart from the figures above (each
    // strategy's table was made before its process traced anything).
    print!(
        "{}",
        wrap(
            &format!(
                "The tracer's own memory, apart from the strategies' figures (in strategy \
                 1's process): its heap was {} (its tables, and the debug information the \
                 snapshots parsed to name the lines); the symbolizer held {} in all, its \
                 heap and the debug sections it mapped. tracealloc::release_symbols() gave \
                 the symbolizer's share back: the tracer's heap is {} now.",
                size(u(&dup, "tracer_heap")),
                size(u(&dup, "symbolizer")),
                size(u(&dup, "tracer_heap_after")),
            ),
            ""
        )
    );
    println!();

    // The verdict, from the figures above.
    let (weights, words) = (u(&dup, "weights"), u(&dup, "words"));
    let (dup_heap, reg_heap, map_heap) = (u(&dup, "heap"), u(&reg, "heap"), u(&map, "heap"));
    let saved = dup_heap.saturating_sub(reg_heap);
    let t = |r: &Value, i: usize| r["times_ms"][i].as_f64().unwrap_or(0.0);
    let rss_part = match (dup["rss"].as_u64(), reg["rss"].as_u64()) {
        (Some(d), Some(r)) => format!(
            " RSS grew by {} when loading twice and by {} when sharing.",
            size(d),
            size(r)
        ),
        _ => String::new(),
    };
    let dup_saved = u(&dup, "saved");
    let site_part = match (dup["site"].as_object(), reg["site"].as_object()) {
        (Some(d), Some(r)) => format!(
            " The tracer puts it at {}: {} blocks holding {} when loading twice, {} blocks holding {} through the registry; its duplicate report found {} that sharing one instance would save ({:.1} % off the measured difference{}).",
            d["at"].as_str().unwrap_or("?"),
            d["count"],
            size(d["size"].as_u64().unwrap_or(0)),
            r["count"],
            size(r["size"].as_u64().unwrap_or(0)),
            size(dup_saved),
            100.0 * (dup_saved as f64 - saved as f64).abs() / saved.max(1) as f64,
            if (dup_saved as f64) < 0.98 * saved as f64 {
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
A plain load took {:.0} ms, then {:.0} ms; through the registry, the first get_or_load loaded it in {:.0} ms \
and the second returned the same instance in {:.1} µs: one load of the two avoided.{site_part}",
        size(weights),
        words,
        size(dup_heap),
        size(reg_heap),
        size(saved),
        100.0 * saved as f64 / dup_heap.max(1) as f64,
        t(&dup, 0),
        t(&dup, 1),
        t(&reg, 0),
        t(&reg, 1) * 1e3,
    );
    print!("{}", wrap(&paragraph, ""));
    println!();
    // Besides their weights, the two read models held their vocabularies and
    // tensor lists: the mapped models' heap should be that and no more.
    let read_rest = dup_heap.saturating_sub(2 * weights);
    let map_slack = prev_power_of_two(weights as usize / 64).clamp(4 << 10, 1 << 20) as u64;
    let map_rss = match map["rss"].as_u64() {
        Some(r) => format!("; RSS grew by {}", size(r)),
        None => String::new(),
    };
    let maps = &map["maps"];
    let smaps_part = if maps["per_mapping"] == true {
        format!(
            " (/proc/self/smaps: Rss {} over the file's {} mappings, Pss {}: Linux counts a mapped file page in RSS once per mapping, and the two maps share one copy in the page cache)",
            size(u(maps, "rss")),
            maps["mappings"],
            size(u(maps, "pss"))
        )
    } else {
        String::new()
    };
    // The tracer's diff around the two maps: blocks, bytes, and whether any
    // is beyond what the read models hold besides their weights.
    let (map_bytes, map_blocks) = (u(&map, "traced_bytes"), u(&map, "traced_blocks"));
    let tracer_part = format!(
        "the tracer's diff around them holds {} blocks of {} in all{}",
        map_blocks,
        size(map_bytes),
        if map_bytes <= read_rest + map_slack {
            ", the vocabularies and tensor lists: no block for the weights"
        } else {
            ""
        }
    );
    let map_dups = if u(&map, "saved") > 0 {
        format!(
            " Its duplicate report finds {} held twice: each map keeps its own vocabulary and tensor list.",
            size(u(&map, "saved"))
        )
    } else {
        String::new()
    };
    let paragraph = format!(
        "Mapping the file twice ({} of weights in the file) held {} of heap: what the two read models \
hold besides their weights ({}: vocabularies, tensor lists) plus {}{map_rss}{smaps_part}. \
The two maps took {:.0} ms and {:.0} ms, reading every weight; {tracer_part}.{map_dups}",
        size(u(&map, "weights")),
        size(map_heap),
        size(read_rest),
        size(map_heap.saturating_sub(read_rest)),
        t(&map, 0),
        t(&map, 1),
    );
    print!("{}", wrap(&paragraph, ""));
    println!();
    let paragraph = format!(
        "So each tool sees something else: the heap counters (stats, measure) see the copies of loading \
({} twice, {} shared) and nothing of a map's weights; RSS sees the pages touched, \
a map's file pages included, once per mapping; the tracer sees no block for a map.",
        size(dup_heap),
        size(reg_heap)
    );
    print!("{}", wrap(&paragraph, ""));

    // One HTML report, from what the three processes left under target/.
    let report_path = dir.join("report.html");
    let report = build_report(&dir).and_then(|r| r.write(&report_path).map_err(|e| e.to_string()));
    println!();
    match report {
        Ok(()) => {
            for n in 1..=3u8 {
                println!(
                    "Timeline: {}",
                    dir.join(format!("timeline-{n}.json")).display()
                );
            }
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

/// A number of a strategy's result.
fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// The names of a strategy's traced pass, for its report sections.
const NAMES: [&str; 3] = ["duplicate loading", "registry", "memory map"];

/// Runs this program again on strategy `n`, printing its report; what it
/// measured.
fn run_strategy(n: u8, path: &Path, dir: &Path) -> Value {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| fail(&format!("this program's path: {e}")));
    let out = std::process::Command::new(exe)
        .arg("--strategy")
        .arg(n.to_string())
        .arg("--model")
        .arg(path)
        .env("TRACEALLOC_DEMO_OUT", dir)
        .output()
        .unwrap_or_else(|e| fail(&format!("running strategy {n}: {e}")));
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!("strategy {n} failed ({})", out.status));
    }
    let mut result = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.strip_prefix("@result ") {
            Some(r) => result = serde_json::from_str(r).ok(),
            None => println!("{line}"),
        }
    }
    result.unwrap_or_else(|| fail(&format!("strategy {n} printed no result")))
}

/// One strategy, in this process: its step table and line table, its two
/// loads traced again, its files for the report under `dir`, and its
/// figures as a last line, `@result {json}`.
fn child(n: u8, path: &Path, dir: &Path) {
    // mprof's timeline: heap, peak and RSS every 10 ms, with the profiled
    // strategy's entry and exit as brackets; and memory_profiler's line
    // table, printed here after the step table.
    let sampler = tracealloc::Timeline::start(Duration::from_millis(10));
    tracealloc::line_profile_output(tracealloc::LineOutput::Off)
        .expect("turning the line tables' printing off cannot fail");
    let (outcome, maps) = match n {
        1 => (load_twice(path), None),
        2 => (share_one(path), None),
        _ => map_twice(path),
    };
    let table = tracealloc::line_tables()
        .pop()
        .expect("the strategy is profiled: it left a line table");
    println!("Strategy {n}, line by line (#[tracealloc::profile(rss)]: memory_profiler's table)");
    print!("{}", indent(&table.to_string()));
    println!();

    // The tracer's view: the diff of snapshots around the two loads. The
    // duplicates report counts blocks of 4 KiB and more: every weight
    // matrix of a real model (a small model's attention tensors are a few
    // hundred KiB), not the vocabulary's words.
    let dup_min = 4 << 10;
    let name = NAMES[n as usize - 1];
    tracealloc::start(8);
    tracealloc::mark!("traced: {name}");
    let before = tracealloc::take_snapshot();
    // Each load on a line of its own, as a program would write them:
    // the duplicate report names the line that loaded each copy.
    let pair: Box<dyn std::any::Any> = match n {
        1 => {
            let model1 = Arc::new(load(path));
            let model2 = Arc::new(load(path));
            Box::new((model1, model2))
        }
        2 => {
            let model1 = MODELS.get_or_load(path.to_path_buf(), || load(path));
            let model2 = MODELS.get_or_load(path.to_path_buf(), || load(path));
            Box::new((model1, model2))
        }
        _ => {
            let model1 = load_mapped(path);
            let model2 = load_mapped(path);
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
    let traced = diff.iter().fold((0u64, 0u64), |(s, c), d| {
        (
            s + d.size_diff.max(0) as u64,
            c + d.count_diff.max(0) as u64,
        )
    });
    let site = diff
        .first()
        .map(|d| json!({"at": d.traceback.to_string(), "count": d.count, "size": d.size}));
    // What the traced pair of loads allocated, by stack, as a flame graph
    // for the report.
    let flame = tracealloc::profile().flamegraph(tracealloc::Metric::BytesAllocated);
    tracealloc::stop();
    black_box(pair);
    let (tracer_heap, symbolizer) = (tracealloc::tracer_memory(), tracealloc::symbolizer_memory());
    tracealloc::release_symbols();
    tracealloc::mark!("tracing off");
    let timeline = sampler.stop();
    let file = |what: &str| dir.join(format!("{what}-{n}"));
    let saved = timeline
        .save(file("timeline").with_extension("json"))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            after
                .dump(file("after").with_extension("json"))
                .map_err(|e| e.to_string())
        })
        .and_then(|()| {
            before
                .dump(file("before").with_extension("json"))
                .map_err(|e| e.to_string())
        })
        .and_then(|()| {
            std::fs::write(file("flame").with_extension("svg"), &flame).map_err(|e| e.to_string())
        })
        .and_then(|()| {
            std::fs::write(file("lines").with_extension("txt"), table.to_string())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = saved {
        fail(&e);
    }
    let maps = maps.map(|m| {
        json!({"mappings": m.mappings, "rss": m.rss, "pss": m.pss, "per_mapping": per_mapping(&m)})
    });
    let result = json!({
        "strategy": n,
        "heap": outcome.heap,
        "rss": outcome.rss,
        "times_ms": [outcome.times.0.as_secs_f64() * 1e3, outcome.times.1.as_secs_f64() * 1e3],
        "weights": outcome.weights,
        "words": outcome.words,
        "maps": maps,
        "site": site,
        "saved": dups.saved_bytes(),
        "traced_bytes": traced.0,
        "traced_blocks": traced.1,
        "tracer_heap": tracer_heap,
        "symbolizer": symbolizer,
        "tracer_heap_after": tracealloc::tracer_memory(),
    });
    println!("@result {result}");
}

/// The HTML report, from the files the strategies' processes wrote under
/// `dir` (removed once read, but the timelines).
fn build_report(dir: &Path) -> Result<tracealloc::Report, String> {
    let mut report =
        tracealloc::Report::new("tracealloc: one model, loaded twice, shared, or mapped");
    let titles = [
        "load the model twice",
        "share one instance",
        "map the file twice",
    ];
    for n in 1..=3u8 {
        let file = |what: &str, ext: &str| dir.join(format!("{what}-{n}.{ext}"));
        let timeline =
            tracealloc::Timeline::load(file("timeline", "json")).map_err(|e| e.to_string())?;
        let lines = std::fs::read_to_string(file("lines", "txt")).map_err(|e| e.to_string())?;
        let after = tracealloc::Snapshot::load(file("after", "json")).map_err(|e| e.to_string())?;
        let before =
            tracealloc::Snapshot::load(file("before", "json")).map_err(|e| e.to_string())?;
        let flame = std::fs::read_to_string(file("flame", "svg")).map_err(|e| e.to_string())?;
        let title = titles[n as usize - 1];
        let name = NAMES[n as usize - 1];
        report = report
            .timeline(
                &format!("Strategy {n}, {title}: heap, peak and RSS every 10 ms (its own process)"),
                &timeline,
            )
            .text(&format!("Strategy {n}: {title}, line by line"), &lines)
            .snapshot_top(
                &format!("Tracing, {name}: the biggest lines live after the two loads"),
                &after,
                8,
                KeyType::Lineno,
            )
            .snapshot_diff(
                &format!("Tracing, {name}: what the two loads hold (by the lines of your code)"),
                &after,
                &before,
                8,
                KeyType::UserLine,
            )
            .duplicates(
                &format!("Tracing, {name}: duplicated instances"),
                &after.duplicate_instances(4 << 10),
            )
            .svg(
                &format!("Tracing, {name}: bytes allocated by the two loads (flame graph)"),
                &flame,
            );
        for (what, ext) in [
            ("lines", "txt"),
            ("after", "json"),
            ("before", "json"),
            ("flame", "svg"),
        ] {
            let _ = std::fs::remove_file(file(what, ext));
        }
    }
    Ok(report)
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
