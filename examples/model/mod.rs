//! A stand-in for a sentence-embedding model, in the format such models ship
//! in: f32 weights in named tensors of a `.safetensors` file, and a vocabulary
//! (in the file's metadata, or a `vocab.txt` beside it).
//!
//! Two loaders of one file: [`Model::load`] reads it (the weights are copied
//! into the heap), [`MappedModel::load`] maps it (the weights stay in the page
//! cache, read through the map). Shared by `examples/singleton_vs_duplicate.rs`
//! and `tests/singleton_cost.rs`.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::Metadata;
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
        regular_file(path)?;
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| header_error(path, &bytes, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| header_error(path, &bytes, e))?;
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let view = st.tensor(&name).map_err(|e| format!("{name}: {e}"))?;
            let weights = decode(view.dtype(), view.data())
                .ok_or_else(|| format!("{name}: dtype {:?} is not supported", view.dtype()))?;
            tensors.push((name, weights));
        }
        let vocab = vocab_of(path, &header);
        Ok(Model { tensors, vocab })
    }

    /// Bytes of weights.
    pub fn weight_bytes(&self) -> usize {
        self.tensors.iter().map(|(_, w)| w.len() * 4).sum()
    }

    /// A hash of every weight's bits, in the tensors' order: equal to
    /// [`MappedModel::checksum`] of the same file.
    pub fn checksum(&self) -> u64 {
        let mut h = Checksum::new();
        for (_, w) in &self.tensors {
            w.iter().for_each(|&v| h.add(v));
        }
        h.0
    }
}

/// Decodes little-endian F32, F16 or BF16 values into f32.
fn decode(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let width = width(dtype)?;
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

/// A tensor of a [`MappedModel`]: where its bytes lie in the map.
pub struct TensorView {
    /// The tensor's name in the file.
    pub name: String,
    /// F32, F16 or BF16.
    pub dtype: Dtype,
    /// Its dimensions.
    pub shape: Vec<usize>,
    /// Its bytes, as a range of the whole file (header included).
    pub range: Range<usize>,
}

impl TensorView {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A model whose weights are a memory map of its file, as real loaders
/// (safetensors' docs, candle) do: loading reads the header (on the heap, with
/// the vocabulary, as [`Model`] has it) and maps the rest, so the weights
/// cost no heap. Their pages join the process's RSS when they are read, and
/// are shared with every other map of the file through the page cache.
pub struct MappedModel {
    map: Mmap,
    /// The tensors, sorted by name as [`Model::tensors`] is.
    pub tensors: Vec<TensorView>,
    /// Token -> id.
    pub vocab: HashMap<String, u32>,
}

impl MappedModel {
    /// Maps `path` and parses its header; reads no weight (see
    /// [`MappedModel::checksum`] to touch them all).
    pub fn load(path: &Path) -> Result<MappedModel, String> {
        regular_file(path)?;
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: the map is only read, and only while this `MappedModel`
        // lives. Memory-mapped loaders all rely on the file not being
        // truncated or rewritten in place while it is mapped (the demo model is
        // written once, through a temporary file and a rename); a file changed
        // under the map could show other bytes, or SIGBUS past a truncated end.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        // Checks every tensor's offsets and size against the file's length.
        let (n, header) =
            SafeTensors::read_metadata(&map).map_err(|e| header_error(path, &map, e))?;
        let start = 8 + n;
        let mut tensors: Vec<TensorView> = header
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                if width(info.dtype).is_none() {
                    return Err(format!("{name}: dtype {:?} is not supported", info.dtype));
                }
                let (b, e) = info.data_offsets;
                Ok(TensorView {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    range: start + b..start + e,
                    name,
                })
            })
            .collect::<Result<_, _>>()?;
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let vocab = vocab_of(path, &header);
        Ok(MappedModel {
            map,
            tensors,
            vocab,
        })
    }

    /// The tensor's bytes, in the map (reading them faults its pages in).
    pub fn bytes(&self, t: &TensorView) -> &[u8] {
        &self.map[t.range.clone()]
    }

    /// The tensor's values, decoded from the map as [`Model::load`] decodes
    /// them.
    pub fn weights<'a>(&'a self, t: &TensorView) -> impl Iterator<Item = f32> + 'a {
        let dtype = t.dtype;
        let w = width(dtype).unwrap_or(4);
        self.bytes(t).chunks_exact(w).map(move |b| match dtype {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            _ => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        })
    }

    /// Bytes of weights in the file, which is what the map holds (for an F32
    /// file, [`Model::weight_bytes`]).
    pub fn weight_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.range.len()).sum()
    }

    /// A hash of every weight's bits, read through the map: touches every
    /// page of the weights. Equal to [`Model::checksum`] of the same file.
    pub fn checksum(&self) -> u64 {
        let mut h = Checksum::new();
        for t in &self.tensors {
            self.weights(t).for_each(|v| h.add(v));
        }
        h.0
    }
}

/// `Ok` if `path` is a regular file (or a link to one); otherwise an error
/// that says what it is, before a read or a map says something stranger
/// (mapping a directory fails with "No such device").
fn regular_file(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!(
            "{}: is a directory, not a .safetensors file",
            path.display()
        ));
    }
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file, so not a .safetensors file",
            path.display()
        ));
    }
    Ok(())
}

/// What safetensors' refusal of `bytes` (the whole file) means, in one line
/// that names the file: its own messages ("header too large") do not say that
/// the file is not a model at all, nor what its first bytes claimed.
pub fn header_error(path: &Path, bytes: &[u8], e: safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    let p = path.display();
    let len = bytes.len() as u64;
    // The first 8 bytes: the header's length, little-endian.
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    match (e, n) {
        (E::HeaderTooSmall, _) | (_, None) => format!(
            "{p}: not a .safetensors file: it has {len} bytes, fewer than the 8 of a header length"
        ),
        (E::HeaderTooLarge | E::InvalidHeaderLength, Some(n)) if n > len - 8 => format!(
            "{p}: not a .safetensors file: its 8-byte header length says {}, and the file has {}",
            human_bytes(n),
            human_bytes(len)
        ),
        (E::HeaderTooLarge, Some(n)) => format!(
            "{p}: not a .safetensors file safetensors reads: its header length says {}, over \
             safetensors' 100 MB limit",
            human_bytes(n)
        ),
        (E::InvalidHeader(e), Some(n)) => {
            format!("{p}: not a .safetensors file: its {n}-byte header is not UTF-8 text ({e})")
        }
        (E::InvalidHeaderDeserialization(e), Some(n)) => format!(
            "{p}: not a .safetensors file: its {n}-byte header is not valid safetensors JSON ({e})"
        ),
        (E::MetadataIncompleteBuffer, _) => format!(
            "{p}: damaged .safetensors file: its tensors' data do not end where the file does \
             (truncated, or bytes appended)"
        ),
        (e, _) => format!("{p}: damaged .safetensors file: {e}"),
    }
}

/// `bytes` in B, KiB, MiB, ... EiB, one decimal above bytes: an absurd
/// header length reads as what it is ("6.1 EiB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes per value of the dtypes the loaders decode.
fn width(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// FNV-1a over f32 bits.
struct Checksum(u64);

impl Checksum {
    fn new() -> Checksum {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, v: f32) {
        self.0 = (self.0 ^ v.to_bits() as u64).wrapping_mul(0x0100_0000_01b3);
    }
}

/// The vocabulary: the header's `vocab` metadata, or a `vocab.txt` beside the
/// model.
fn vocab_of(path: &Path, header: &Metadata) -> HashMap<String, u32> {
    let words = match header.metadata().as_ref().and_then(|m| m.get("vocab")) {
        Some(v) => v.clone(),
        None => std::fs::read_to_string(path.with_file_name("vocab.txt")).unwrap_or_default(),
    };
    load_vocab(&words)
}

/// The demo model's hidden size: every tensor has rows of this many f32s.
const HIDDEN: usize = 1024;

/// Rows of `share` % of `total_bytes` of f32 weights, at least one.
fn demo_rows(total_bytes: usize, share: usize) -> usize {
    (total_bytes * share / 100 / 4 / HIDDEN).max(1)
}

/// A vocabulary to go with `total_bytes` of demo weights: one word per row
/// of the word embeddings (40 % of the weights), as in a real model, so that
/// the vocabulary stays small beside the weights at every size (26 214 words
/// for 256 MiB, 102 for 1 MiB).
#[allow(dead_code)] // (the guard test chooses its own)
pub fn demo_words(total_bytes: usize) -> usize {
    demo_rows(total_bytes, 40)
}

/// The demo model's tensors, named and shaped as a small BERT's are: the
/// word embeddings (24 % of `total_bytes`), four layers of four attention
/// tensors of one shape (3 % each) and an intermediate one (5 %), and the
/// pooler (8 %). Like a real model's, many tensors share a shape: a
/// duplicate finder that took equal blocks at one line for copies would
/// see sixteen of one model's tensors as copies of each other.
fn demo_tensors(total_bytes: usize) -> Vec<(String, Vec<usize>)> {
    let rows = |share: usize| demo_rows(total_bytes, share);
    let mut t = vec![(
        "embeddings.word_embeddings.weight".to_string(),
        vec![rows(24), HIDDEN],
    )];
    for layer in 0..4 {
        for part in ["query", "key", "value", "output"] {
            t.push((
                format!("encoder.layer.{layer}.attention.{part}.weight"),
                vec![rows(3), HIDDEN],
            ));
        }
        t.push((
            format!("encoder.layer.{layer}.intermediate.dense.weight"),
            vec![rows(5), HIDDEN],
        ));
    }
    t.push(("pooler.dense.weight".to_string(), vec![rows(8), HIDDEN]));
    t
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

/// Where the demo's files go: `target/tracealloc-demo/`.
#[allow(dead_code)] // (the guard test does not write a report)
pub fn demo_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("tracealloc-demo")
}

/// Where this process writes its demo model of `mib` MiB: a name of its own
/// (the process id), so that two runs at once do not share, or remove, one
/// file.
#[allow(dead_code)] // (the guard test writes to a temporary directory)
pub fn demo_path(mib: u64) -> PathBuf {
    demo_dir().join(format!("model-{mib}mib-{}.safetensors", std::process::id()))
}

/// Removes demo models that earlier runs left in [`demo_dir`]: the cache
/// of earlier versions of the example (`model-<N>mib.safetensors`, kept for
/// reuse) and the models of runs interrupted before their exit
/// (`model-<N>mib-<pid>.safetensors`, or half-written `.tmp`), those whose
/// process is gone. Returns the files removed and their sizes. Only where
/// `/proc` tells which processes live (Linux); elsewhere it removes nothing.
#[allow(dead_code)] // (the guard test writes to a temporary directory)
pub fn remove_leftover_demos() -> Vec<(PathBuf, u64)> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        return removed;
    }
    let Ok(entries) = std::fs::read_dir(demo_dir()) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("model-"))
            .and_then(|n| n.split_once("mib"))
            .filter(|(mib, _)| !mib.is_empty() && mib.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, rest)| rest)
        else {
            continue;
        };
        let rest = rest.strip_suffix(".tmp").unwrap_or(rest);
        let Some(pid) = rest.strip_suffix(".safetensors") else {
            continue;
        };
        let stale = match pid.strip_prefix('-') {
            None => pid.is_empty(), // an earlier version's cache
            Some(pid) => pid
                .parse::<u32>()
                .is_ok_and(|pid| !Path::new("/proc").join(pid.to_string()).exists()),
        };
        if !stale {
            continue;
        }
        let size = entry.metadata().map_or(0, |m| m.len());
        if std::fs::remove_file(entry.path()).is_ok() {
            removed.push((entry.path(), size));
        }
    }
    removed
}

/// What `/proc/self/smaps` says of this process's mappings of one file.
#[derive(Debug, Default)]
pub struct FileMappings {
    /// Mappings (VMAs) of the file.
    pub mappings: usize,
    /// Resident bytes, summed over the mappings: a page mapped twice counts
    /// twice (it is what `statm`, hence `tracealloc::rss`, counts).
    pub rss: u64,
    /// Proportional set size: each resident page divided among the mappings
    /// that hold it, so a page mapped twice counts once in the sum.
    pub pss: u64,
    /// Resident pages mapped more than once (by any process, or twice by
    /// this one): `Shared_Clean` plus `Shared_Dirty` (a file just written
    /// has dirty pages until the kernel writes them back).
    pub shared: u64,
    /// Resident pages mapped once: `Private_Clean` plus `Private_Dirty`.
    pub private: u64,
}

/// Sums `/proc/self/smaps` over the mappings of `path` (matched by inode and
/// canonical path); `None` where there is no smaps (not Linux) or the file
/// cannot be inspected.
pub fn file_mappings(path: &Path) -> Option<FileMappings> {
    smaps(path)
}

#[cfg(not(unix))]
fn smaps(_: &Path) -> Option<FileMappings> {
    None
}

#[cfg(unix)]
fn smaps(path: &Path) -> Option<FileMappings> {
    use std::os::unix::fs::MetadataExt;
    let path = std::fs::canonicalize(path).ok()?;
    let inode = std::fs::metadata(&path).ok()?.ino().to_string();
    let name = path.to_str()?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut out = FileMappings::default();
    let mut inside = false;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let first = fields.next().unwrap_or("");
        if !first.ends_with(':') {
            // A mapping's first line: range, perms, offset, device, inode, path.
            let ino = fields.nth(3);
            let rest = line.splitn(6, ' ').nth(5).map_or("", str::trim);
            inside = ino == Some(inode.as_str()) && rest == name;
            out.mappings += inside as usize;
            continue;
        }
        if !inside {
            continue;
        }
        let kib: u64 = match fields.next().and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => continue,
        };
        match first {
            "Rss:" => out.rss += kib << 10,
            "Pss:" => out.pss += kib << 10,
            "Shared_Clean:" | "Shared_Dirty:" => out.shared += kib << 10,
            "Private_Clean:" | "Private_Dirty:" => out.private += kib << 10,
            _ => {}
        }
    }
    Some(out)
}
