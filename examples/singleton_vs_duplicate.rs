//! What loading a large model twice costs, against sharing one instance
//! through a keyed singleton ([`tracealloc::Registry`]): heap, peak, RSS and
//! time after each step, then the tracer's view (the loader's line holding
//! two copies) and a verdict computed from the figures.
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

mod model;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::Model;
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

fn print_table(title: &str, rows: &[Row], same: bool) {
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
    println!();
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
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
    let load = || {
        Model::load(&path).unwrap_or_else(|e| {
            eprintln!("singleton_vs_duplicate: {e}");
            std::process::exit(1);
        })
    };
    let file_bytes = std::fs::metadata(&path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    println!(
        "Model: {} ({:.1} MiB). Read with a plain read: the file's bytes are copied into the heap and",
        path.display(),
        mib(file_bytes)
    );
    println!("each tensor is decoded into its own Vec<f32>, so the weights are heap memory and count in RSS.");
    println!(
        "(A memory map would keep them in the page cache instead: in RSS, not in the heap.)\n"
    );

    // Strategy 1: Model::load twice.
    tracealloc::reset_peak();
    let mut rows = vec![row("start", None)];
    let (model1, t_dup1) = timed(|| Arc::new(load()));
    rows.push(row("model1 = Model::load(path)", Some(t_dup1)));
    let (model2, t_dup2) = timed(|| Arc::new(load()));
    rows.push(row("model2 = Model::load(path)", Some(t_dup2)));
    let dup_same = Arc::ptr_eq(&model1, &model2);
    let weights = model1.weight_bytes();
    let words = model1.vocab.len();
    let dup_heap = tracealloc::stats().current_bytes - rows[0].heap;
    let dup_rss = tracealloc::rss()
        .zip(rows[0].rss)
        .map(|(a, b)| a.saturating_sub(b));
    drop(model1);
    rows.push(row("drop(model1)", None));
    drop(model2);
    rows.push(row("drop(model2)", None));
    print_table(
        "Strategy 1: load the model twice (Model::load, twice)",
        &rows,
        dup_same,
    );

    // Strategy 2: the registry, twice.
    tracealloc::reset_peak();
    let mut rows = vec![row("start", None)];
    let (model1, t_reg1) = timed(|| MODELS.get_or_load(path.clone(), load));
    rows.push(row("model1 = MODELS.get_or_load(path)", Some(t_reg1)));
    let (model2, t_reg2) = timed(|| MODELS.get_or_load(path.clone(), load));
    rows.push(row("model2 = MODELS.get_or_load(path)", Some(t_reg2)));
    let reg_same = Arc::ptr_eq(&model1, &model2);
    let reg_heap = tracealloc::stats().current_bytes - rows[0].heap;
    let reg_rss = tracealloc::rss()
        .zip(rows[0].rss)
        .map(|(a, b)| a.saturating_sub(b));
    drop(model1);
    rows.push(row("drop(model1)", None));
    drop(model2);
    rows.push(row("drop(model2)  (last user: freed)", None));
    print_table(
        "Strategy 2: share one instance (Registry::weak, get_or_load twice)",
        &rows,
        reg_same,
    );

    // The tracer's view: the diff of snapshots around the two loads.
    tracealloc::start(1);
    let mut sites = Vec::new();
    for (name, shared) in [("duplicate loading", false), ("registry", true)] {
        let before = tracealloc::take_snapshot();
        let pair = if shared {
            (
                MODELS.get_or_load(path.clone(), load),
                MODELS.get_or_load(path.clone(), load),
            )
        } else {
            (Arc::new(load()), Arc::new(load()))
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
        let top = after
            .compare_to(&before, KeyType::Lineno, false)
            .into_iter()
            .next();
        sites.push((top, dups.saved_bytes()));
        black_box(pair);
    }
    tracealloc::stop();

    // The verdict, from the figures above.
    let saved = dup_heap.saturating_sub(reg_heap);
    let load_dup = t_dup1 + t_dup2;
    let load_reg = t_reg1 + t_reg2;
    let rss_part = match (dup_rss, reg_rss) {
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
        mib(dup_heap),
        mib(reg_heap),
        mib(saved),
        100.0 * saved as f64 / dup_heap.max(1) as f64,
        load_dup.as_secs_f64() * 1e3,
        load_reg.as_secs_f64() * 1e3,
        t_reg2.as_secs_f64() * 1e3,
        (load_dup.saturating_sub(load_reg)).as_secs_f64() * 1e3
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
