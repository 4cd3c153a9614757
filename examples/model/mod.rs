//! A stand-in for a sentence-embedding model, in the format such models ship
//! in: f32 weights in named tensors of a `.safetensors` file, and a vocabulary
//! (in the file's metadata, or a `vocab.txt` beside it).
//!
//! Shared by `examples/singleton_vs_duplicate.rs` and `tests/singleton_cost.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// A loaded model: every tensor decoded into heap memory, and the vocabulary.
pub struct Model {
    /// (name, weights), in the file's order.
    pub tensors: Vec<(String, Vec<f32>)>,
    /// Token -> id.
    pub vocab: HashMap<String, u32>,
}

impl Model {
    /// Loads `path` with a plain read: the file's bytes are copied into the
    /// heap, each tensor is decoded into a `Vec<f32>`, then the file's bytes
    /// are freed. (A memory map would leave the weights in the page cache,
    /// counted in RSS but not in the heap.)
    pub fn load(path: &Path) -> Result<Model, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{} is not a safetensors file: {e}", path.display()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| format!("{}: bad header: {e}", path.display()))?;
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let view = st.tensor(&name).map_err(|e| format!("{name}: {e}"))?;
            let weights = decode(view.dtype(), view.data())
                .ok_or_else(|| format!("{name}: dtype {:?} is not supported", view.dtype()))?;
            tensors.push((name, weights));
        }
        let words = match header.metadata().as_ref().and_then(|m| m.get("vocab")) {
            Some(v) => v.clone(),
            None => std::fs::read_to_string(path.with_file_name("vocab.txt")).unwrap_or_default(),
        };
        let vocab = load_vocab(&words);
        Ok(Model { tensors, vocab })
    }

    /// Bytes of weights.
    pub fn weight_bytes(&self) -> usize {
        self.tensors.iter().map(|(_, w)| w.len() * 4).sum()
    }
}

/// Decodes little-endian F32, F16 or BF16 values into f32.
fn decode(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        _ => return None,
    };
    let mut weights: Vec<f32> = Vec::with_capacity(data.len() / width); // the weights' heap memory
    let halves = data
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    match dtype {
        Dtype::F32 => weights.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::BF16 => weights.extend(halves.map(|h| f32::from_bits((h as u32) << 16))),
        _ => weights.extend(halves.map(f16_to_f32)),
    }
    Some(weights)
}

/// An IEEE 754 half-precision value as f32 (exact: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let shift = f.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((f << shift) & 0x3ff) << 13
        }
        (31, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// One token per line; the id is the line number.
fn load_vocab(words: &str) -> HashMap<String, u32> {
    words
        .lines()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect()
}

/// The demo model's tensors: four named f32 tensors taking 40, 30, 20 and 10 %
/// of `total_bytes`.
fn demo_tensors(total_bytes: usize) -> Vec<(String, Vec<usize>)> {
    const HIDDEN: usize = 1024;
    let rows = |share: usize| (total_bytes * share / 100 / 4 / HIDDEN).max(1);
    vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![rows(40), HIDDEN],
        ),
        (
            "encoder.layer.0.attention.weight".into(),
            vec![rows(30), HIDDEN],
        ),
        (
            "encoder.layer.0.intermediate.weight".into(),
            vec![rows(20), HIDDEN],
        ),
        ("pooler.dense.weight".into(), vec![rows(10), HIDDEN]),
    ]
}

/// Writes a deterministic demo model of about `total_bytes` of weights and
/// `words` vocabulary entries to `path` (through a temporary file, renamed
/// when complete).
pub fn write_demo(path: &Path, total_bytes: usize, words: usize) -> Result<(), String> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = demo_tensors(total_bytes)
        .into_iter()
        .enumerate()
        .map(|(t, (name, shape))| {
            let n: usize = shape.iter().product();
            let mut x = 0x9e37_79b9u32.wrapping_mul(t as u32 + 1);
            let mut data = Vec::with_capacity(n * 4);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let v = (x as f32 / u32::MAX as f32 - 0.5) * 0.02;
                data.extend_from_slice(&v.to_le_bytes());
            }
            (name, shape, data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let vocab: Vec<String> = (0..words).map(|i| format!("tok{i}")).collect();
    let metadata = HashMap::from([("vocab".to_string(), vocab.join("\n"))]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))
}

/// Where the demo model of `mib` MiB lives (written on first use).
pub fn demo_path(mib: usize) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target
        .join("tracealloc-demo")
        .join(format!("model-{mib}mib.safetensors"))
}
