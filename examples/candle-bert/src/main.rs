//! The proving case on a real loader: a BERT loaded through candle
//! (`candle_transformers::models::bert::BertModel::load`) twice, inside
//! timing closures, through `tracealloc::Registry`, and memory-mapped; each
//! strategy measured in a fresh process of its own (this program runs
//! itself once per strategy), then a verdict from the figures.
//!
//! ```text
//! cargo run --release -p tracealloc-candle-bert
//! cargo run --release -p tracealloc-candle-bert -- --config bge-large-zh-v1.5
//! cargo run --release -p tracealloc-candle-bert -- --reverse
//! ```
//!
//! The model is a safetensors file this program writes for the run (random
//! weights, the real tensor names and shapes of a BERT checkpoint: 389
//! tensors for `bge-large-zh-v1.5`, 1,297,891,328 bytes of f32) under
//! `target/tracealloc-candle/`, removed at exit; `--model DIR` loads a
//! downloaded model instead (its `config.json` and `model.safetensors`).

use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use tracealloc::{KeyType, Registry, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// The keyed singleton: one model per path, freed when its last user drops
/// it.
static MODELS: Registry<PathBuf, BertModel> = Registry::weak();

/// Blocks of this size and more are compared by content for duplicates:
/// every weight matrix, bias and LayerNorm vector of a BERT-large (1024
/// floats, 4 KiB), not candle's bookkeeping.
const DUP_MIN: usize = 4096;

/// A model shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// A small BERT (hidden 256, 2 layers): about 8 MiB of weights, for
    /// tests and a first run.
    Tiny,
    /// BAAI/bge-large-zh-v1.5's: hidden 1024, 24 layers, 16 heads,
    /// intermediate 4096, vocabulary 21128: 389 tensors, 1238 MiB.
    #[value(name = "bge-large-zh-v1.5")]
    BgeLargeZh,
}

impl Shape {
    fn config(self) -> Value {
        let (hidden, layers, heads, inter, vocab, pos) = match self {
            Shape::Tiny => (256, 2, 4, 1024, 2000, 128),
            Shape::BgeLargeZh => (1024, 24, 16, 4096, 21128, 512),
        };
        json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": inter,
            "vocab_size": vocab,
            "max_position_embeddings": pos,
            "type_vocab_size": 2,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02,
            "layer_norm_eps": 1e-12,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "classifier_dropout": null
        })
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Tiny => "tiny",
            Shape::BgeLargeZh => "bge-large-zh-v1.5",
        }
    }
}

/// The strategies, each run in a process of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Strategy {
    /// BertModel::load twice, by direct calls.
    Twice,
    /// BertModel::load twice, each inside a timing closure.
    Closures,
    /// Registry::get_or_load twice: one load, shared.
    Registry,
    /// Twice from a memory map of the file (candle copies each tensor out).
    Mapped,
}

const STRATEGIES: [Strategy; 4] = [
    Strategy::Twice,
    Strategy::Closures,
    Strategy::Registry,
    Strategy::Mapped,
];

impl Strategy {
    fn title(self) -> &'static str {
        match self {
            Strategy::Twice => "load twice (BertModel::load, direct calls)",
            Strategy::Closures => "load twice, each inside a timing closure",
            Strategy::Registry => "share one instance (Registry::get_or_load, twice)",
            Strategy::Mapped => "map the file twice (VarBuilder::from_mmaped_safetensors)",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Strategy::Twice => "twice",
            Strategy::Closures => "closures",
            Strategy::Registry => "registry",
            Strategy::Mapped => "mapped",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "tracealloc-candle-bert",
    about = "What loading a BERT twice through candle costs, against sharing one instance or mapping it"
)]
struct Args {
    /// The model's shape (written for the run, random weights).
    #[arg(long, value_enum, default_value_t = Shape::Tiny)]
    config: Shape,
    /// Load this model directory instead (config.json, model.safetensors).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    model: Option<PathBuf>,
    /// Run the strategies in reverse order.
    #[arg(long)]
    reverse: bool,
    /// Run one strategy in this process (what the program runs itself
    /// with), printing its report and a result line.
    #[arg(long, value_enum, hide = true)]
    run: Option<Strategy>,
    /// The traceback limit of each strategy's tracing session (the crate's
    /// default, 1: the lines of your code are found at any depth).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    frames: u16,
    /// Also write the strategies' figures to this file, as JSON (for
    /// tests and scripts).
    #[arg(long, value_name = "FILE", hide = true)]
    results: Option<PathBuf>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

// ---------------------------------------------------------------------------
// The model file: a BERT checkpoint's names and shapes, random weights.

/// The tensors of a BERT checkpoint (as BAAI/bge-large-zh-v1.5's
/// model.safetensors names them: no "bert." prefix, no pooler), in file
/// order, with their shapes.
fn bert_tensors(c: &Value) -> Vec<(String, Vec<usize>)> {
    let n = |k: &str| c[k].as_u64().expect("a number in the config") as usize;
    let (h, i) = (n("hidden_size"), n("intermediate_size"));
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![n("vocab_size"), h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![n("max_position_embeddings"), h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![n("type_vocab_size"), h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for l in 0..n("num_hidden_layers") {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![i, h]),
            ("intermediate.dense.bias", vec![i]),
            ("output.dense.weight", vec![h, i]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            t.push((format!("{p}.{name}"), shape));
        }
    }
    t
}

/// xorshift64*: deterministic weights, different in every tensor.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Writes `dir/config.json` and `dir/model.safetensors` for `shape`, the
/// weights streamed (never all in memory); the weights' bytes and the
/// tensors' count.
fn write_model(dir: &Path, shape: Shape) -> std::io::Result<(u64, usize)> {
    std::fs::create_dir_all(dir)?;
    let config = shape.config();
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let tensors = bert_tensors(&config);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, shape) in &tensors {
        let bytes = 4 * shape.iter().product::<usize>() as u64;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut head = serde_json::to_vec(&Value::Object(header))?;
    // The data begins 8-byte aligned, as the Python writer pads it.
    while (8 + head.len()) % 8 != 0 {
        head.push(b' ');
    }
    let tmp = dir.join("model.safetensors.tmp");
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    f.write_all(&(head.len() as u64).to_le_bytes())?;
    f.write_all(&head)?;
    let mut buf = Vec::with_capacity(1 << 16);
    for (k, (_, shape)) in tensors.iter().enumerate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((k as u64 + 1) << 17));
        let mut left = shape.iter().product::<usize>();
        while left > 0 {
            buf.clear();
            for _ in 0..left.min(1 << 14) {
                // Uniform in [-0.05, 0.05), as an initializer would draw.
                let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                buf.extend_from_slice(&((u - 0.5) * 0.1).to_le_bytes());
            }
            left -= left.min(1 << 14);
            f.write_all(&buf)?;
        }
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, dir.join("model.safetensors"))?;
    Ok((offset, tensors.len()))
}

/// Where the written model goes: under the target directory.
fn demo_dir(shape: Shape) -> PathBuf {
    // This crate lives two folders below the workspace's root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| root.map(|r| r.join("target")))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("tracealloc-candle").join(shape.name())
}

// ---------------------------------------------------------------------------
// One strategy, in this process.

fn config_of(dir: &Path) -> Config {
    let text = std::fs::read(dir.join("config.json"))
        .unwrap_or_else(|e| fail(&format!("{}: {e}", dir.join("config.json").display())));
    serde_json::from_slice(&text)
        .unwrap_or_else(|e| fail(&format!("{}: not a BERT config: {e}", dir.display())))
}

/// The file's bytes, read into the heap, as a `VarBuilder` (candle copies
/// each tensor out of them into a buffer of its own as the model loads;
/// the bytes are freed with the builder, after the load).
fn read(dir: &Path) -> VarBuilder<'static> {
    let path = dir.join("model.safetensors");
    let data = std::fs::read(&path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    VarBuilder::from_buffered_safetensors(data, DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
}

/// The file mapped, as a `VarBuilder`.
fn map(dir: &Path) -> VarBuilder<'static> {
    let path = dir.join("model.safetensors");
    // SAFETY: the file is this program's own (or the user's model), not
    // modified while it is mapped.
    unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }
        .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
}

/// A load's result, or the program ends with the error.
fn ok<T>(r: candle_core::Result<T>, dir: &Path) -> T {
    r.unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())))
}

/// One row of a strategy's table.
struct Row {
    step: String,
    heap: u64,
    peak: u64,
    rss: Option<u64>,
    time: Option<Duration>,
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

/// Runs `f`, timed, as timing code is written: `step("model1", || load(dir))`.
fn step<R>(name: &str, f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    eprintln!("  ({name}: {:.1} ms)", ms(took));
    (r, took)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Runs `strategy` on the model in `dir`, prints its report, and prints
/// its figures as one last line, `@result {json}`.
fn run(strategy: Strategy, dir: &Path, frames: usize) {
    tracealloc::start(frames);
    tracealloc::reset_peak();
    let mut rows = vec![row("start", None)];
    let before = tracealloc::take_snapshot();
    let t = Instant::now();
    let config = config_of(dir);
    // Each load on a line of its own, as a program writes them: the reports
    // name these lines.
    let (model1, model2, times): (Arc<BertModel>, Arc<BertModel>, [Duration; 2]) = match strategy {
        Strategy::Twice => {
            let model1 = Arc::new(ok(BertModel::load(read(dir), &config), dir));
            let t1 = t.elapsed();
            rows.push(row("model1 = BertModel::load(..)", Some(t1)));
            let t = Instant::now();
            let model2 = Arc::new(ok(BertModel::load(read(dir), &config), dir));
            (model1, model2, [t1, t.elapsed()])
        }
        Strategy::Closures => {
            let (model1, t1) = step("model1", || {
                Arc::new(ok(BertModel::load(read(dir), &config), dir))
            });
            rows.push(row("model1 = step(|| BertModel::load(..))", Some(t1)));
            let (model2, t2) = step("model2", || {
                Arc::new(ok(BertModel::load(read(dir), &config), dir))
            });
            (model1, model2, [t1, t2])
        }
        Strategy::Registry => {
            let model1 = MODELS.get_or_load(dir.to_path_buf(), || {
                ok(BertModel::load(read(dir), &config), dir)
            });
            let t1 = t.elapsed();
            rows.push(row("model1 = MODELS.get_or_load(..)", Some(t1)));
            let t = Instant::now();
            let model2 = MODELS.get_or_load(dir.to_path_buf(), || {
                ok(BertModel::load(read(dir), &config), dir)
            });
            (model1, model2, [t1, t.elapsed()])
        }
        Strategy::Mapped => {
            let model1 = Arc::new(ok(BertModel::load(map(dir), &config), dir));
            let t1 = t.elapsed();
            rows.push(row("model1 = BertModel::load(map(..))", Some(t1)));
            let t = Instant::now();
            let model2 = Arc::new(ok(BertModel::load(map(dir), &config), dir));
            (model1, model2, [t1, t.elapsed()])
        }
    };
    let second = match strategy {
        Strategy::Twice => "model2 = BertModel::load(..)",
        Strategy::Closures => "model2 = step(|| BertModel::load(..))",
        Strategy::Registry => "model2 = MODELS.get_or_load(..)",
        Strategy::Mapped => "model2 = BertModel::load(map(..))",
    };
    rows.push(row(second, Some(times[1])));
    let same = Arc::ptr_eq(&model1, &model2);
    let after = tracealloc::take_snapshot();

    println!("Strategy: {}", strategy.title());
    println!(
        "  {:<36} {:>12} {:>12} {:>12} {:>10}",
        "step", "heap now", "heap peak", "RSS", "time"
    );
    for r in &rows {
        println!(
            "  {:<36} {:>8.1} MiB {:>8.1} MiB {:>12} {:>10}",
            r.step,
            mib(r.heap),
            mib(r.peak),
            r.rss.map_or("n/a".into(), |b| format!("{:.1} MiB", mib(b))),
            r.time.map_or(String::new(), |t| format!("{:.1} ms", ms(t)))
        );
    }
    println!("  model1 is model2: {same}");
    println!();
    println!("  Where the two loads' memory is, by the lines of your code (KeyType::UserLine):");
    print!(
        "{}",
        indent(&indent(
            &after.top_diff(&before, 3, KeyType::UserLine).to_string()
        ))
    );
    println!("  The same by the allocating line (KeyType::Lineno, tracemalloc's key):");
    print!(
        "{}",
        indent(&indent(
            &after.top_diff(&before, 2, KeyType::Lineno).to_string()
        ))
    );
    let dups = after.duplicate_instances(DUP_MIN);
    print!("{}", indent(&dups.to_string()));
    println!();

    let report = tracealloc::Report::new(format!("tracealloc, candle BERT: {}", strategy.title()))
        .snapshot_top(
            "The biggest lines of your code",
            &after,
            5,
            KeyType::UserLine,
        )
        .snapshot_diff(
            "What the two loads hold, by the lines of your code",
            &after,
            &before,
            5,
            KeyType::UserLine,
        )
        .duplicates("Duplicated instances", &dups);
    let report_path = dir.join(format!("report-{}.html", strategy.arg()));
    let report_written = report.write(&report_path).is_ok();

    let user_top: Vec<String> = after
        .compare_to(&before, KeyType::UserLine, false)
        .iter()
        .take(3)
        .map(|d| {
            format!(
                "{} ({:.1} MiB)",
                d.traceback,
                d.size_diff as f64 / (1 << 20) as f64
            )
        })
        .collect();
    let line_top = after
        .compare_to(&before, KeyType::Lineno, false)
        .first()
        .map(|d| d.traceback.to_string());
    let instances: Vec<Value> = dups
        .instances()
        .iter()
        .map(|i| {
            json!({
                "copies": i.copies(),
                "blocks": i.blocks(),
                "bytes": i.bytes(),
                "saved": i.saved_bytes(),
                "callers": i.callers().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "allocated_at": i.allocated_at().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let result = json!({
        "strategy": strategy.arg(),
        "frames": frames,
        "heap_start": rows[0].heap,
        "heap_one": rows[1].heap,
        "heap_two": rows[2].heap,
        "peak": rows[2].peak,
        "rss_start": rows[0].rss,
        "rss_two": rows[2].rss,
        "times_ms": [ms(times[0]), ms(times[1])],
        "same": same,
        "instances": instances,
        "saved": dups.saved_bytes(),
        "undecidable": dups.undecidable().1,
        "user_top": user_top,
        "line_top": line_top,
        "report": report_written.then(|| report_path.display().to_string()),
    });
    tracealloc::stop();
    black_box((model1, model2));
    println!("@result {result}");
}

// ---------------------------------------------------------------------------
// The experiment: each strategy in a fresh process, then the verdict.

/// Runs this program on one strategy, forwarding its report; its result.
fn run_child(strategy: Strategy, dir: &Path, frames: u16) -> Value {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| fail(&format!("this program's path: {e}")));
    let out = Command::new(exe)
        .arg("--run")
        .arg(strategy.arg())
        .arg("--model")
        .arg(dir)
        .arg("--frames")
        .arg(frames.to_string())
        .output()
        .unwrap_or_else(|e| fail(&format!("running the {} strategy: {e}", strategy.arg())));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!(
            "the {} strategy failed ({})",
            strategy.arg(),
            out.status
        ));
    }
    let mut result = None;
    for line in stdout.lines() {
        match line.strip_prefix("@result ") {
            Some(r) => result = serde_json::from_str(r).ok(),
            None => println!("{line}"),
        }
    }
    result.unwrap_or_else(|| {
        fail(&format!(
            "the {} strategy printed no result",
            strategy.arg()
        ))
    })
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn verdict(results: &[Value], weights: u64) {
    let get = |s: Strategy| {
        results
            .iter()
            .find(|r| r["strategy"] == s.arg())
            .expect("every strategy ran")
    };
    let (twice, closures, reg, mapped) = (
        get(Strategy::Twice),
        get(Strategy::Closures),
        get(Strategy::Registry),
        get(Strategy::Mapped),
    );
    let held = |r: &Value| u(r, "heap_two").saturating_sub(u(r, "heap_start"));
    let second = |r: &Value| u(r, "heap_two").saturating_sub(u(r, "heap_one"));
    let rss = |r: &Value| {
        Some(
            r["rss_two"]
                .as_u64()?
                .saturating_sub(r["rss_start"].as_u64()?),
        )
    };
    let t = |r: &Value, i: usize| r["times_ms"][i].as_f64().unwrap_or(0.0);
    let found = |r: &Value| {
        let i = &r["instances"][0];
        if i.is_null() {
            "no duplicate".to_string()
        } else {
            format!(
                "{} copies of {:.1} MiB, loaded at {}",
                i["copies"],
                mib(u(i, "bytes")),
                i["callers"]
                    .as_array()
                    .map(|c| c
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" and "))
                    .unwrap_or_default()
            )
        }
    };
    let off = |r: &Value| {
        let m = second(r) as f64;
        100.0 * (u(r, "saved") as f64 - m).abs() / m.max(1.0)
    };
    println!("Verdict (each strategy in a fresh process)");
    let lines = [
        format!(
            "Loading the model ({:.1} MiB of weights) twice held {:.1} MiB of heap; sharing one \
             instance through the registry held {:.1} MiB: {:.1} MiB ({:.0} %) less.",
            mib(weights),
            mib(held(twice)),
            mib(held(reg)),
            mib(held(twice).saturating_sub(held(reg))),
            100.0 * held(twice).saturating_sub(held(reg)) as f64 / held(twice).max(1) as f64
        ),
        match (rss(twice), rss(reg)) {
            (Some(a), Some(b)) => format!(
                "RSS grew by {:.1} MiB when loading twice, by {:.1} MiB when sharing.",
                mib(a),
                mib(b)
            ),
            _ => String::new(),
        },
        format!(
            "A load took {:.0} ms and {:.0} ms (twice), {:.0} ms and {:.0} ms (in closures); the \
             registry loaded once ({:.0} ms) and its second call returned the same instance in \
             {:.1} µs: one load of two avoided.",
            t(twice, 0),
            t(twice, 1),
            t(closures, 0),
            t(closures, 1),
            t(reg, 0),
            t(reg, 1) * 1e3
        ),
        format!(
            "Duplicates, by content: twice, {} (saving {:.1} MiB, {:.2} % off the measured \
             {:.1} MiB of the second load); in closures, {} ({:.2} % off); through the \
             registry, {}.",
            found(twice),
            mib(u(twice, "saved")),
            off(twice),
            mib(second(twice)),
            found(closures),
            off(closures),
            found(reg)
        ),
        format!(
            "Memory-mapped, the two loads held {:.1} MiB of heap (candle copies every tensor \
             out of the map), their peak {:.1} MiB against {:.1} MiB read (no file buffer); {}.",
            mib(held(mapped)),
            mib(u(mapped, "peak").saturating_sub(u(mapped, "heap_start"))),
            mib(u(twice, "peak").saturating_sub(u(twice, "heap_start"))),
            found(mapped)
        ),
        format!(
            "The lines of your code that hold the memory (twice): {}; by the allocating line \
             alone it is all at {}.",
            twice["user_top"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            twice["line_top"].as_str().unwrap_or("?")
        ),
    ];
    for l in lines.iter().filter(|l| !l.is_empty()) {
        println!("  {l}");
    }
}

fn main() {
    let args = Args::parse();
    if let Some(strategy) = args.run {
        let dir = args
            .model
            .unwrap_or_else(|| fail("--run needs --model DIR"));
        run(strategy, &dir, usize::from(args.frames));
        return;
    }
    let (dir, written) = match &args.model {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = demo_dir(args.config);
            let t = Instant::now();
            let (bytes, tensors) = write_model(&dir, args.config)
                .unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
            println!(
                "Model: a BERT of {}'s shape, {tensors} tensors, {:.1} MiB of random f32 weights, \
                 written to {} in {:.0} ms for this run.",
                args.config.name(),
                mib(bytes),
                dir.display(),
                ms(t.elapsed())
            );
            (dir, Some(bytes))
        }
    };
    // The weights' bytes (the file's, header included, for a model of yours).
    let weights = written.unwrap_or_else(|| {
        std::fs::metadata(dir.join("model.safetensors"))
            .map(|m| m.len())
            .unwrap_or_else(|e| fail(&format!("{}: {e}", dir.join("model.safetensors").display())))
    });
    let mut order = STRATEGIES.to_vec();
    if args.reverse {
        order.reverse();
    }
    println!(
        "Each strategy runs in a fresh process (tracing on, a traceback limit of {} frame{}), {}.\n",
        args.frames,
        if args.frames == 1 { "" } else { "s" },
        if args.reverse { "in reverse order" } else { "in order" }
    );
    let results: Vec<Value> = order
        .iter()
        .map(|&s| run_child(s, &dir, args.frames))
        .collect();
    verdict(&results, weights);
    if let Some(path) = &args.results {
        if let Err(e) = std::fs::write(path, Value::Array(results).to_string()) {
            fail(&format!("{}: {e}", path.display()));
        }
    }
    if written.is_some() {
        let _ = std::fs::remove_file(dir.join("model.safetensors"));
    }
}
