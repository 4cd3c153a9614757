//! Snapshots of the traced blocks and their statistics: plain data, grouped
//! and sorted as `tracemalloc` does.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::alloc::Internal;
use crate::report::format_size;
use crate::tracer::{self, sample};

/// One frame of a traceback: where code was when it called further down.
///
/// # Examples
///
/// ```
/// let f = tracealloc::Frame::new("src/model.rs", 42, "model::Model::load");
/// assert_eq!((f.filename(), f.lineno(), f.function()), ("src/model.rs", 42, "model::Model::load"));
/// assert_eq!(f.to_string(), "src/model.rs:42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    filename: Arc<str>,
    lineno: u32,
    function: Arc<str>,
}

impl Frame {
    /// A frame at `filename:lineno` in `function`.
    pub fn new(filename: &str, lineno: u32, function: &str) -> Frame {
        Frame::from_parts(filename.into(), lineno, function.into())
    }

    pub(crate) fn from_parts(filename: Arc<str>, lineno: u32, function: Arc<str>) -> Frame {
        Frame {
            filename,
            lineno,
            function,
        }
    }

    /// The source file, relative to the working directory when it lies
    /// under it; `<unknown>` when the debug information does not say.
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// The line number; 0 when unknown (and in [`KeyType::Filename`] and
    /// [`KeyType::Function`] statistics).
    pub fn lineno(&self) -> u32 {
        self.lineno
    }

    /// The function, demangled without its hash; `<unknown>` when the symbol
    /// is not known.
    pub fn function(&self) -> &str {
        &self.function
    }
}

impl fmt::Display for Frame {
    /// `filename:lineno`, as tracemalloc writes a frame.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.filename, self.lineno)
    }
}

impl PartialOrd for Frame {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frame {
    /// By (filename, lineno), as tracemalloc orders frames; then function.
    fn cmp(&self, other: &Self) -> Ordering {
        (&*self.filename, self.lineno, &*self.function).cmp(&(
            &*other.filename,
            other.lineno,
            &*other.function,
        ))
    }
}

/// Where a block was allocated: frames, **index 0 the allocating call site**
/// (most recent first), at most the session's traceback limit of them.
///
/// # Examples
///
/// ```
/// use tracealloc::{Frame, Traceback};
///
/// let t = Traceback::new(vec![Frame::new("src/a.rs", 3, "a::f"), Frame::new("src/main.rs", 9, "main")]);
/// assert_eq!(t.frames()[0].lineno(), 3);
/// assert_eq!(t.total_nframe(), 2);
/// assert_eq!(t.to_string(), "src/a.rs:3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Traceback {
    frames: Arc<[Frame]>,
    total_nframe: usize,
}

impl Traceback {
    /// A traceback of `frames`, most recent first, none cut off.
    pub fn new(frames: Vec<Frame>) -> Traceback {
        let total = frames.len();
        Traceback::from_parts(frames.into(), total)
    }

    pub(crate) fn from_parts(frames: Arc<[Frame]>, total_nframe: usize) -> Traceback {
        Traceback {
            frames,
            total_nframe,
        }
    }

    /// The frames, most recent (the allocating call site) first.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// How many frames the stack had (after trimming the allocator's and the
    /// standard library's), before the traceback limit cut it.
    pub fn total_nframe(&self) -> usize {
        self.total_nframe
    }

    /// The traceback as tracemalloc's `Traceback.format` writes it: for each
    /// frame `  File "src/model.rs", line 42`, then the source line (stripped,
    /// indented by four) when the file can be read. Oldest frame first unless
    /// `most_recent_first`; `limit` keeps only the most recent `limit` frames.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Traceback};
    ///
    /// let t = Traceback::new(vec![Frame::new("no/such/a.rs", 3, "a::f"), Frame::new("no/such/main.rs", 9, "main")]);
    /// assert_eq!(t.format(None, false), ["  File \"no/such/main.rs\", line 9", "  File \"no/such/a.rs\", line 3"]);
    /// assert_eq!(t.format(Some(1), true), ["  File \"no/such/a.rs\", line 3"]);
    /// ```
    pub fn format(&self, limit: Option<usize>, most_recent_first: bool) -> Vec<String> {
        let keep = limit.map_or(self.frames.len(), |l| l.min(self.frames.len()));
        let recent = &self.frames[..keep];
        let ordered: Vec<&Frame> = if most_recent_first {
            recent.iter().collect()
        } else {
            recent.iter().rev().collect()
        };
        let mut lines = Vec::new();
        for f in ordered {
            lines.push(format!("  File \"{}\", line {}", f.filename, f.lineno));
            if let Some(src) = source_line(&f.filename, f.lineno) {
                lines.push(format!("    {src}"));
            }
        }
        lines
    }
}

impl fmt::Display for Traceback {
    /// The allocating call site, `filename:lineno` (`<unknown>:0` if empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.frames.first() {
            Some(frame) => fmt::Display::fmt(frame, f),
            None => f.write_str("<unknown>:0"),
        }
    }
}

impl PartialOrd for Traceback {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Traceback {
    /// As tracemalloc compares tracebacks: frame by frame from the oldest.
    fn cmp(&self, other: &Self) -> Ordering {
        self.frames.iter().rev().cmp(other.frames.iter().rev())
    }
}

/// Line `lineno` of `filename`, stripped; `None` if unreadable or empty.
pub(crate) fn source_line(filename: &str, lineno: u32) -> Option<String> {
    if lineno == 0 {
        return None;
    }
    let text = std::fs::read_to_string(filename).ok()?;
    let line = text.lines().nth(lineno as usize - 1)?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// One live traced block.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Trace {
    /// The block's size in bytes.
    pub size: usize,
    /// Where it was allocated.
    pub traceback: Traceback,
}

/// How [`Snapshot::statistics`] groups traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// By the allocating frame's file (line shown as 0).
    Filename,
    /// By the allocating frame's file and line.
    Lineno,
    /// By the allocating frame's function (ours; file kept, line shown as 0).
    Function,
    /// By the whole traceback.
    Traceback,
}

/// The traces grouped under one key by [`Snapshot::statistics`].
///
/// `Display` is tracemalloc's: `src/model.rs:42: size=5120 KiB, count=2,
/// average=2560 KiB` (for [`KeyType::Function`], the function name leads).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Statistic {
    /// The key: a traceback of one frame, or the whole traceback.
    pub traceback: Traceback,
    /// Total bytes (an estimate, when the snapshot is sampled).
    pub size: usize,
    /// Number of blocks (an estimate, when the snapshot is sampled).
    pub count: usize,
    key_type: KeyType,
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, &self.traceback, self.key_type)?;
        write!(
            f,
            ": size={}, count={}",
            format_size(self.size as f64, false),
            self.count
        )?;
        if self.count != 0 {
            write!(
                f,
                ", average={}",
                format_size(self.size as f64 / self.count as f64, false)
            )?;
        }
        Ok(())
    }
}

fn write_key(f: &mut fmt::Formatter<'_>, t: &Traceback, key: KeyType) -> fmt::Result {
    match (key, t.frames.first()) {
        (KeyType::Function, Some(frame)) => write!(f, "{} ({})", frame.function, frame.filename),
        _ => fmt::Display::fmt(t, f),
    }
}

/// The live traced blocks at one moment, as [`take_snapshot`] returns them.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let v = std::hint::black_box(vec![0u8; 4096]);
///     let snapshot = tracealloc::take_snapshot();
///     for stat in snapshot.statistics(tracealloc::KeyType::Lineno, false).iter().take(3) {
///         println!("{stat}");
///     }
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    traces: Vec<Trace>,
    traceback_limit: usize,
    sample_bytes: Option<u64>,
}

impl Snapshot {
    /// A snapshot of the given traces (for tests and tools).
    pub fn new(traces: Vec<Trace>, traceback_limit: usize) -> Snapshot {
        Snapshot {
            traces,
            traceback_limit,
            sample_bytes: None,
        }
    }

    /// The traced blocks.
    pub fn traces(&self) -> &[Trace] {
        &self.traces
    }

    /// The traceback limit of the session the snapshot came from.
    pub fn traceback_limit(&self) -> usize {
        self.traceback_limit
    }

    /// The sampling mean in bytes, when the session sampled (see
    /// [`Config::sample_bytes`](crate::Config::sample_bytes)): statistics
    /// then weight each block by the inverse of its probability of being
    /// traced.
    pub fn sample_bytes(&self) -> Option<u64> {
        self.sample_bytes
    }

    /// The traces grouped by `key_type`, biggest first (sorted as tracemalloc
    /// sorts: descending by size, count, then traceback).
    ///
    /// With `cumulative`, each block counts once under every frame of its
    /// traceback, not only the allocating one.
    ///
    /// # Panics
    ///
    /// With `cumulative` and [`KeyType::Traceback`], which has no meaning
    /// (tracemalloc raises `ValueError`).
    pub fn statistics(&self, key_type: KeyType, cumulative: bool) -> Vec<Statistic> {
        assert!(
            !(cumulative && key_type == KeyType::Traceback),
            "tracealloc: cumulative statistics are not available for KeyType::Traceback"
        );
        // First per (traceback allocation, frame index): traces of one stack
        // share their frames, so this pass hashes a pointer, not strings.
        let mut per_stack: HashMap<(usize, usize), (f64, f64, &Traceback)> = HashMap::new();
        for t in &self.traces {
            let w = match self.sample_bytes {
                Some(rate) => 1.0 / sample::probability(t.size, rate).max(f64::MIN_POSITIVE),
                None => 1.0,
            };
            let id = t.traceback.frames.as_ptr() as usize;
            let n = if cumulative {
                t.traceback.frames.len()
            } else {
                1
            };
            for i in 0..n {
                let g = per_stack.entry((id, i)).or_insert((0.0, 0.0, &t.traceback));
                g.0 += t.size as f64 * w;
                g.1 += w;
            }
        }
        // Then per key.
        let mut groups: HashMap<Traceback, (f64, f64)> = HashMap::new();
        for ((_, i), (size, count, t)) in per_stack {
            let g = groups.entry(key_of(t, i, key_type)).or_insert((0.0, 0.0));
            g.0 += size;
            g.1 += count;
        }
        let mut stats: Vec<Statistic> = groups
            .into_iter()
            .map(|(traceback, (size, count))| Statistic {
                traceback,
                size: size.round() as usize,
                count: count.round() as usize,
                key_type,
            })
            .collect();
        stats.sort_by(|a, b| (b.size, b.count, &b.traceback).cmp(&(a.size, a.count, &a.traceback)));
        stats
    }
}

/// The grouping key of frame `i` of `t`.
fn key_of(t: &Traceback, i: usize, key_type: KeyType) -> Traceback {
    let Some(frame) = t.frames.get(i) else {
        return Traceback::new(Vec::new());
    };
    let one = |f: Frame| Traceback::new(vec![f]);
    match key_type {
        KeyType::Traceback => t.clone(),
        KeyType::Lineno => one(frame.clone()),
        KeyType::Filename => one(Frame::from_parts(frame.filename.clone(), 0, "".into())),
        KeyType::Function => one(Frame::from_parts(
            frame.filename.clone(),
            0,
            frame.function.clone(),
        )),
    }
}

/// The live traced blocks now, symbolized.
///
/// Holds the tracer's locks only to copy the raw records (one shard at a
/// time); symbols are resolved after, once per stack, and cached.
///
/// # Panics
///
/// When not tracing (tracemalloc raises `RuntimeError`).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let v = std::hint::black_box(vec![0u8; 123_456]);
///     let s = tracealloc::take_snapshot();
///     assert!(s.traces().iter().any(|t| t.size == 123_456));
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
pub fn take_snapshot() -> Snapshot {
    let raw = Internal::make(tracer::raw_traces);
    let Some(raw_ref) = raw.as_ref() else {
        drop(raw);
        panic!("tracealloc: take_snapshot() needs tracing on: call tracealloc::start() first");
    };
    let (nframe, sample_bytes) = (raw_ref.nframe, raw_ref.sample_bytes);
    // Resolve each distinct stack once, under the guard (into the cache).
    let tracebacks = Internal::make(|| {
        let mut by_stack = HashMap::new();
        for &(_, stack) in &raw_ref.blocks {
            by_stack
                .entry(stack)
                .or_insert_with(|| crate::symbols::traceback(stack, nframe));
        }
        by_stack
    });
    // The snapshot itself is the caller's memory.
    let traces: Vec<Trace> = raw_ref
        .blocks
        .iter()
        .map(|(size, stack)| Trace {
            size: *size,
            traceback: tracebacks[stack].clone(),
        })
        .collect();
    Snapshot {
        traces,
        traceback_limit: nframe,
        sample_bytes,
    }
}

/// Where the live traced block at `ptr` was allocated; `None` if it is not
/// traced (allocated before tracing started, not sampled, or freed).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(1);
///     let b = std::hint::black_box(Box::new([0u8; 64]));
///     let t = tracealloc::object_traceback(b.as_ptr()).expect("traced");
///     println!("allocated at {t}");
///     tracealloc::stop();
/// }
/// ```
pub fn object_traceback<T: ?Sized>(ptr: *const T) -> Option<Traceback> {
    let addr = ptr as *const u8 as usize;
    let t = Internal::make(|| {
        tracer::stack_of(addr).map(|(stack, nframe)| crate::symbols::traceback(stack, nframe))
    });
    t.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tb(frames: &[(&str, u32, &str)]) -> Traceback {
        Traceback::new(
            frames
                .iter()
                .map(|&(f, l, n)| Frame::new(f, l, n))
                .collect(),
        )
    }

    fn trace(size: usize, t: &Traceback) -> Trace {
        Trace {
            size,
            traceback: t.clone(),
        }
    }

    fn sample() -> Snapshot {
        let a = tb(&[("src/a.rs", 10, "a::load"), ("src/main.rs", 5, "main")]);
        let b = tb(&[("src/a.rs", 20, "a::parse"), ("src/main.rs", 6, "main")]);
        let c = tb(&[("src/b.rs", 7, "b::new"), ("src/main.rs", 5, "main")]);
        Snapshot::new(
            vec![
                trace(1000, &a),
                trace(1000, &a),
                trace(300, &b),
                trace(5000, &c),
            ],
            2,
        )
    }

    fn keyed(stats: &[Statistic]) -> Vec<(String, usize, usize)> {
        stats
            .iter()
            .map(|s| (s.traceback.to_string(), s.size, s.count))
            .collect()
    }

    #[test]
    fn statistics_group_and_sort_as_tracemalloc() {
        let s = sample();
        assert_eq!(
            keyed(&s.statistics(KeyType::Lineno, false)),
            [
                ("src/b.rs:7".into(), 5000, 1),
                ("src/a.rs:10".into(), 2000, 2),
                ("src/a.rs:20".into(), 300, 1)
            ]
        );
        assert_eq!(
            keyed(&s.statistics(KeyType::Filename, false)),
            [
                ("src/b.rs:0".into(), 5000, 1),
                ("src/a.rs:0".into(), 2300, 3)
            ]
        );
        assert_eq!(
            keyed(&s.statistics(KeyType::Lineno, true)),
            [
                ("src/main.rs:5".into(), 7000, 3),
                ("src/b.rs:7".into(), 5000, 1),
                ("src/a.rs:10".into(), 2000, 2),
                // Ties on (size, count): the greater traceback first.
                ("src/main.rs:6".into(), 300, 1),
                ("src/a.rs:20".into(), 300, 1),
            ]
        );
        let by_fn = s.statistics(KeyType::Function, false);
        assert_eq!(
            by_fn[1].to_string(),
            "a::load (src/a.rs): size=2000 B, count=2, average=1000 B"
        );
        assert_eq!(s.statistics(KeyType::Traceback, false).len(), 3);
    }

    #[test]
    fn statistic_display_is_tracemalloc_s() {
        let s = sample();
        let stats = s.statistics(KeyType::Lineno, false);
        assert_eq!(
            stats[0].to_string(),
            "src/b.rs:7: size=5000 B, count=1, average=5000 B"
        );
        let big = Snapshot::new(
            vec![
                trace(5 << 20, &stats[1].traceback),
                trace(5 << 20, &stats[1].traceback),
            ],
            1,
        );
        assert_eq!(
            big.statistics(KeyType::Lineno, false)[0].to_string(),
            "src/a.rs:10: size=10.0 MiB, count=2, average=5120 KiB"
        );
    }

    #[test]
    #[should_panic(expected = "tracealloc: cumulative statistics")]
    fn cumulative_traceback_panics() {
        sample().statistics(KeyType::Traceback, true);
    }

    #[test]
    fn sampled_statistics_are_weighted() {
        let t = tb(&[("src/a.rs", 1, "f")]);
        let rate = 1000u64;
        let mut s = Snapshot::new(vec![trace(1000, &t); 10], 1);
        s.sample_bytes = Some(rate);
        let st = &s.statistics(KeyType::Lineno, false)[0];
        let w = 1.0 / (1.0 - (-1.0f64).exp());
        assert_eq!(st.count, (10.0 * w).round() as usize);
        assert_eq!(st.size, (10_000.0 * w).round() as usize);
    }

    #[test]
    fn traceback_format_reads_source_lines() {
        let here = Frame::new(file!(), line!(), "t");
        let t = Traceback::new(vec![here]);
        let lines = t.format(None, false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].starts_with("    let here = Frame::new"),
            "{lines:?}"
        );
    }
}
