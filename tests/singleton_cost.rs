//! The proving case as a guard: loading the model twice holds twice the
//! weights, the registry once, and the loader's line is the top site of the
//! snapshot diff, with twice the blocks. Asserted through the crate's own API:
//! thread-scoped `measure` and snapshot diffs.
//!
//! Tracing is process-wide, so this binary runs its test without libtest's
//! threads (`solo`).

#[path = "../examples/model/mod.rs"]
#[allow(dead_code)] // `demo_path` serves the example only
mod model;
mod solo;

use std::sync::Arc;

use model::Model;
use tracealloc::{measure, KeyType, Registry, Snapshot, StatisticDiff, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

fn main() -> std::process::ExitCode {
    solo::run(&[
        (
            "duplicate_loading_holds_twice_what_the_registry_does",
            guard,
        ),
        ("half_precision_weights_decode_exactly", half_precision),
    ])
}

const WEIGHTS: usize = 4 << 20;
const WORDS: usize = 2000;
/// Room for the vocabulary, the tensor list and the `Arc`s, per model.
const SMALL: usize = 512 << 10;

fn top_site(after: &Snapshot, before: &Snapshot) -> StatisticDiff {
    after.compare_to(before, KeyType::Lineno, false).remove(0)
}

fn guard() {
    let dir = std::env::temp_dir().join(format!("tracealloc-singleton-{}", std::process::id()));
    let path = dir.join("model.safetensors");
    model::write_demo(&path, WEIGHTS, WORDS).unwrap();
    let probe = Model::load(&path).unwrap();
    assert_eq!(probe.vocab.len(), WORDS);
    assert_eq!(probe.tensors.len(), 4);
    let w = probe.weight_bytes();
    drop(probe);
    assert!(w > WEIGHTS * 9 / 10 && w <= WEIGHTS, "{w} bytes of weights");

    // Heap held, measured on this thread.
    let (dup, d) = measure(|| (Model::load(&path).unwrap(), Model::load(&path).unwrap()));
    let held = d.net_bytes() as usize;
    assert!(
        (2 * w..2 * w + 2 * SMALL).contains(&held),
        "duplicate loading holds {held} B, weights {w} B"
    );
    drop(dup);

    let registry: Registry<std::path::PathBuf, Model> = Registry::new();
    let load = || Model::load(&path).unwrap();
    let ((a, b), d) = measure(|| {
        (
            registry.get_or_load(path.clone(), load),
            registry.get_or_load(path.clone(), load),
        )
    });
    assert!(Arc::ptr_eq(&a, &b));
    let held = d.net_bytes() as usize;
    assert!(
        (w..w + SMALL).contains(&held),
        "the registry holds {held} B, weights {w} B"
    );
    drop((a, b));
    registry.remove(&path);

    // The tracer's view: the loader's line on top, 2 x 4 tensors against 4.
    tracealloc::start(1);
    let before = tracealloc::take_snapshot();
    let dup = (Model::load(&path).unwrap(), Model::load(&path).unwrap());
    let after = tracealloc::take_snapshot();
    let top = top_site(&after, &before);
    let frame = &top.traceback.frames()[0];
    assert_eq!(frame.filename(), "examples/model/mod.rs", "{top}");
    let source = std::fs::read_to_string(frame.filename()).unwrap();
    let line = source.lines().nth(frame.lineno() as usize - 1).unwrap();
    assert!(
        line.contains("let mut weights: Vec<f32> = Vec::with_capacity"),
        "the top site is the weights' allocation: {line}"
    );
    assert_eq!((top.size, top.count), (2 * w, 8), "{top}");
    let dups = after.duplicates(256 << 10);
    assert_eq!(dups.sites().len(), 4, "{dups}");
    assert_eq!(dups.saved_bytes(), w, "{dups}");
    drop(dup);

    let before = tracealloc::take_snapshot();
    let shared = (
        registry.get_or_load(path.clone(), load),
        registry.get_or_load(path.clone(), load),
    );
    let after = tracealloc::take_snapshot();
    let top = top_site(&after, &before);
    assert_eq!(top.traceback.frames()[0].lineno(), frame.lineno(), "{top}");
    assert_eq!((top.size, top.count), (w, 4), "{top}");
    assert!(after.duplicates(256 << 10).sites().is_empty());
    drop(shared);
    tracealloc::stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--model PATH` accepts F16 weights (as many published models ship):
/// known bit patterns decode to their exact values.
fn half_precision() {
    let cases: [(u16, f32); 9] = [
        (0x0000, 0.0),
        (0x8000, -0.0),
        (0x3c00, 1.0),
        (0xc000, -2.0),
        (0x3555, 1365.0 / 4096.0),
        (0x7bff, 65504.0),
        (0x0001, 1.0 / 16_777_216.0),
        (0x03ff, 1023.0 / 16_777_216.0),
        (0x7c00, f32::INFINITY),
    ];
    for (bits, want) in cases {
        let got = model::f16_to_f32(bits);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{bits:#06x}: {got} != {want}"
        );
    }
    assert!(model::f16_to_f32(0x7e00).is_nan());
}
