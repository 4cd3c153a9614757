//! Snapshots of the traced blocks and their statistics: plain data, grouped
//! and sorted as `tracemalloc` does.

use std::collections::HashMap;
use std::fmt;

use crate::frame::{Frame, Traceback};
use crate::glob::fnmatch;
use crate::sampling;
use crate::scope::untraced;

/// One live traced block.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Trace {
    /// The block's size in bytes.
    pub size: usize,
    /// Where it was allocated.
    pub traceback: Traceback,
    /// [`Content`] in 8 bytes (a snapshot of a million blocks holds a
    /// million of these): 0 unread, 1 uniform, else the hash (never 0 or
    /// 1, see `Content::code`).
    content: u64,
}

impl Trace {
    /// A block of `size` bytes allocated at `traceback`, its content not
    /// read.
    pub fn new(size: usize, traceback: Traceback) -> Trace {
        Trace {
            size,
            traceback,
            content: 0,
        }
    }

    /// The same block, with what its bytes were found to hold (for tools
    /// and tests that build snapshots).
    pub fn with_content(self, content: Content) -> Trace {
        Trace {
            content: content.code(),
            ..self
        }
    }

    /// What the block's bytes held when the snapshot was taken: a
    /// fingerprint of them, for blocks of at least [`CONTENT_MIN_SIZE`]
    /// bytes. [`Snapshot::duplicate_instances`] compares these.
    pub fn content(&self) -> Content {
        Content::of_code(self.content)
    }
}

/// Blocks of this size and more have their content fingerprinted by
/// [`take_snapshot`](crate::take_snapshot) (see [`Content`]).
pub const CONTENT_MIN_SIZE: usize = 4096;

/// What a block's bytes held when its snapshot was taken, as
/// [`Trace::content`] gives it.
///
/// [`take_snapshot`](crate::take_snapshot) reads each block of at least
/// [`CONTENT_MIN_SIZE`] bytes through the kernel (`process_vm_readv` on the
/// process itself, on Linux: a copy the kernel makes, so reading memory
/// that other threads are writing is no data race, and a block freed and
/// unmapped meanwhile is an error, not a crash): the whole block up to
/// 4 KiB, and beyond that 64 windows of 64 bytes spread evenly over it,
/// first and last bytes included (at most 4 KiB read per block, one system
/// call). Equal fingerprints of equal-sized blocks are taken for equal
/// contents: two blocks that differ only between the windows read alike
/// (a 64-bit hash; blocks of real data — weights, text, tables — differ in
/// most windows when they differ at all).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Content {
    /// Not read: a block under [`CONTENT_MIN_SIZE`], a snapshot built or
    /// loaded without contents, a target without the system call, or a
    /// block that could not be read (freed while the snapshot was taken).
    Unread,
    /// Every 8-byte word read held the same value (all zeros, or a buffer
    /// filled with one value): equal blocks of this kind may be copies or
    /// unrelated buffers not yet written, and the content cannot tell.
    Uniform,
    /// A 64-bit hash of the bytes read (never 0 or 1: a hash of either is
    /// taken as 2).
    Hash(u64),
}

impl Content {
    /// The content as one number: 0 unread, 1 uniform, else the hash (as
    /// snapshot files write it too).
    pub(crate) fn code(self) -> u64 {
        match self {
            Content::Unread => 0,
            Content::Uniform => 1,
            Content::Hash(h) => h.max(2),
        }
    }

    /// The content of [`code`](Content::code)'s number.
    pub(crate) fn of_code(code: u64) -> Content {
        match code {
            0 => Content::Unread,
            1 => Content::Uniform,
            h => Content::Hash(h),
        }
    }
}

/// How [`Snapshot::statistics`] groups traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// By the allocating frame's file (line shown as 0).
    Filename,
    /// By the allocating frame's file and line (the key's function is left
    /// empty: frames of two functions on one line are one key).
    Lineno,
    /// By the allocating frame's function (ours; file kept, line shown as 0).
    Function,
    /// By the whole traceback, frame by frame on file and line, as
    /// tracemalloc's key: the functions and the stack's depth beyond the
    /// limit (`total_nframe`) are not part of it, so blocks whose kept frames
    /// are the same lines are one key even when the stacks above them differ.
    /// The key's frames have empty function names, and its `total_nframe` is
    /// its frame count.
    ///
    /// The one difference from tracemalloc: a statistic's line begins with
    /// the allocating frame (`Traceback`'s `Display`), where tracemalloc's
    /// `str(traceback)` writes the oldest kept frame.
    Traceback,
    /// Ours: by the first line of the user's own code in the stack
    /// ([`Traceback::user_frame`]: not the standard library, this crate, nor
    /// a dependency from the registry or git), file and line, at whatever
    /// depth it lies, the traceback limit notwithstanding. Memory a library
    /// allocates for you (a model loaded through candle, a document parsed
    /// through serde) is counted at the line of yours that called it, where
    /// [`KeyType::Lineno`] counts it at the library's line. A block whose
    /// stack has no frame of the user's is counted at its allocating frame.
    /// With `cumulative`, a block counts under every line of the user's in
    /// its stack ([`Traceback::user_frames`]): the helper that called the
    /// library and each line that called the helper.
    UserLine,
}

/// The traces grouped under one key by [`Snapshot::statistics`].
///
/// `Display` is tracemalloc's: `src/model.rs:42: size=5120 KiB, count=2,
/// average=2560 KiB` (for [`KeyType::Function`], the function name leads;
/// for [`KeyType::Traceback`], the allocating frame, where tracemalloc
/// writes the oldest).
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
        write_average(f, self.size, self.count)
    }
}

/// tracemalloc's `, average=…`, written only when `count` is not 0.
fn write_average(f: &mut fmt::Formatter<'_>, size: usize, count: usize) -> fmt::Result {
    if count == 0 {
        return Ok(());
    }
    write!(
        f,
        ", average={}",
        format_size(size as f64 / count as f64, false)
    )
}

fn write_key(f: &mut fmt::Formatter<'_>, t: &Traceback, key: KeyType) -> fmt::Result {
    fmt::Display::fmt(&KeyLabel(t, key), f)
}

/// How a key begins a report line: `file:line`, or `function (file)` for
/// [`KeyType::Function`].
pub(crate) struct KeyLabel<'a>(pub(crate) &'a Traceback, pub(crate) KeyType);

impl fmt::Display for KeyLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.1, self.0.frames().first()) {
            (KeyType::Function, Some(frame)) => {
                write!(f, "{} ({})", frame.0.function, frame.0.filename)
            }
            _ => fmt::Display::fmt(self.0, f),
        }
    }
}

/// How a key changed between two snapshots, from [`Snapshot::compare_to`].
///
/// `Display` is tracemalloc's: `src/model.rs:42: size=1024 B (+512 B),
/// count=3 (+1), average=341 B`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatisticDiff {
    /// The key.
    pub traceback: Traceback,
    /// Bytes now.
    pub size: usize,
    /// Bytes now minus bytes then.
    pub size_diff: isize,
    /// Blocks now.
    pub count: usize,
    /// Blocks now minus blocks then.
    pub count_diff: isize,
    key_type: KeyType,
}

impl StatisticDiff {
    fn sort_key(&self) -> (usize, usize, usize, usize, &Traceback) {
        (
            self.size_diff.unsigned_abs(),
            self.size,
            self.count_diff.unsigned_abs(),
            self.count,
            &self.traceback,
        )
    }
}

impl fmt::Display for StatisticDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, &self.traceback, self.key_type)?;
        write!(
            f,
            ": size={} ({}), count={} ({:+})",
            format_size(self.size as f64, false),
            format_size(self.size_diff as f64, true),
            self.count,
            self.count_diff
        )?;
        write_average(f, self.size, self.count)
    }
}

/// Which traces [`Snapshot::filter_traces`] keeps, by file name (a glob, as
/// Python's `fnmatch`: `*`, `?`, `[seq]`, `[!seq]`) and optionally line.
/// A frame matches when its file name as reports show it
/// ([`Frame::filename`]) or its full path ([`Frame::path`]) does.
///
/// By default a filter looks at the allocating frame only; with
/// [`all_frames`](Filter::all_frames) at every frame of the traceback.
///
/// # Examples
///
/// ```
/// use tracealloc::Filter;
///
/// let mine = Filter::include("src/*.rs");
/// let not_this_line = Filter::exclude("src/model.rs").lineno(42);
/// let no_std = Filter::exclude("/rustc/*").all_frames(true);
/// # let _ = (mine, not_this_line, no_std);
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Keep matching traces (`true`) or drop them (`false`).
    pub inclusive: bool,
    /// The file name glob.
    pub filename_pattern: String,
    /// Only this line, if set.
    pub lineno: Option<u32>,
    /// Match any frame of the traceback, not only the allocating one.
    pub all_frames: bool,
}

impl Filter {
    /// Keep the traces allocated in files matching `pattern`.
    pub fn include(pattern: &str) -> Filter {
        Filter {
            inclusive: true,
            filename_pattern: pattern.to_string(),
            lineno: None,
            all_frames: false,
        }
    }

    /// Drop the traces allocated in files matching `pattern`.
    pub fn exclude(pattern: &str) -> Filter {
        Filter {
            inclusive: false,
            ..Filter::include(pattern)
        }
    }

    /// Match only line `lineno`.
    pub fn lineno(self, lineno: u32) -> Filter {
        Filter {
            lineno: Some(lineno),
            ..self
        }
    }

    /// Match any frame of the traceback (`true`), or only the allocating one.
    pub fn all_frames(self, all: bool) -> Filter {
        Filter {
            all_frames: all,
            ..self
        }
    }

    /// The file name or, where reports shorten it, the full path
    /// ([`Frame::path`]) matches: `serde_json-*` and `*/.cargo/registry/*`
    /// both find a dependency's frames.
    fn matches_frame(&self, f: &Frame) -> bool {
        self.lineno.is_none_or(|l| l == f.0.lineno)
            && (fnmatch(&self.filename_pattern, &f.0.filename)
                || (f.0.path != f.0.filename && fnmatch(&self.filename_pattern, &f.0.path)))
    }

    /// Whether the pattern (and line) matches the traceback: any frame with
    /// `all_frames`, else the allocating one. (Inclusion or exclusion is up
    /// to the caller.)
    fn matches(&self, t: &Traceback) -> bool {
        if self.all_frames {
            t.frames().iter().any(|f| self.matches_frame(f))
        } else {
            t.frames().first().is_some_and(|f| self.matches_frame(f))
        }
    }
}

/// The live traced blocks at one moment, as [`take_snapshot`](crate::take_snapshot) returns them.
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

/// Cumulative statistics by whole traceback have no meaning (tracemalloc
/// raises `ValueError`): a panic at the caller's line.
#[track_caller]
fn refuse_cumulative_traceback(key_type: KeyType, cumulative: bool) {
    assert!(
        !(cumulative && key_type == KeyType::Traceback),
        "tracealloc: cumulative statistics are not available for KeyType::Traceback"
    );
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

    pub(crate) fn from_parts(
        traces: Vec<Trace>,
        traceback_limit: usize,
        sample_bytes: Option<u64>,
    ) -> Snapshot {
        Snapshot {
            traces,
            traceback_limit,
            sample_bytes,
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

    /// Per key: (bytes, blocks), weighted when the snapshot is sampled.
    /// Cumulative [`KeyType::Traceback`] is refused by the callers (see
    /// `statistics`).
    fn group(&self, key_type: KeyType, cumulative: bool) -> HashMap<Traceback, (f64, f64)> {
        // First per traceback (traces of one stack share their frames, so
        // this pass hashes a pointer, not strings), then per frame of each
        // distinct traceback: cumulative statistics cost stacks × frames,
        // not traces × frames.
        let mut per_stack: HashMap<usize, (f64, f64, &Traceback)> = HashMap::new();
        for t in &self.traces {
            let w = self.weight(t.size);
            let g = per_stack
                .entry(t.traceback.frames_ptr())
                .or_insert((0.0, 0.0, &t.traceback));
            g.0 += t.size as f64 * w;
            g.1 += w;
        }
        // Then per key.
        let mut groups: HashMap<Traceback, (f64, f64)> = HashMap::new();
        for (size, count, t) in per_stack.into_values() {
            let n = match (cumulative, key_type) {
                (false, _) => 1,
                (true, KeyType::UserLine) => t.user_frames().len().max(1),
                (true, _) => t.frames().len(),
            };
            for i in 0..n {
                let g = groups.entry(key_of(t, i, key_type)).or_insert((0.0, 0.0));
                g.0 += size;
                g.1 += count;
            }
        }
        groups
    }

    /// How many blocks a traced block of `size` bytes stands for.
    pub(crate) fn weight(&self, size: usize) -> f64 {
        match self.sample_bytes {
            Some(rate) => 1.0 / sampling::probability(size, rate).max(f64::MIN_POSITIVE),
            None => 1.0,
        }
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
    #[track_caller]
    pub fn statistics(&self, key_type: KeyType, cumulative: bool) -> Vec<Statistic> {
        refuse_cumulative_traceback(key_type, cumulative);
        untraced(|| {
            let groups = self.group(key_type, cumulative);
            let mut stats: Vec<Statistic> = groups
                .into_iter()
                .map(|(traceback, (size, count))| Statistic {
                    traceback,
                    size: size.round() as usize,
                    count: count.round() as usize,
                    key_type,
                })
                .collect();
            stats.sort_by(|a, b| {
                (b.size, b.count, &b.traceback).cmp(&(a.size, a.count, &a.traceback))
            });
            stats
        })
    }

    /// What changed since `old`, grouped by `key_type`, as tracemalloc's
    /// `Snapshot.compare_to`: keys only here have their whole value as the
    /// diff; keys only in `old` appear with size and count 0 and negative
    /// diffs. Sorted by descending (|size_diff|, size, |count_diff|, count,
    /// traceback).
    ///
    /// # Panics
    ///
    /// With `cumulative` and [`KeyType::Traceback`], as [`statistics`](Self::statistics).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, KeyType, Snapshot, Trace, Traceback};
    ///
    /// let site = Traceback::new(vec![Frame::new("src/model.rs", 42, "load")]);
    /// let old = Snapshot::new(vec![Trace::new(512, site.clone())], 1);
    /// let new = Snapshot::new(vec![Trace::new(512, site.clone()), Trace::new(512, site.clone())], 1);
    /// let diff = new.compare_to(&old, KeyType::Lineno, false);
    /// assert_eq!(diff[0].to_string(), "src/model.rs:42: size=1024 B (+512 B), count=2 (+1), average=512 B");
    /// ```
    #[track_caller]
    pub fn compare_to(
        &self,
        old: &Snapshot,
        key_type: KeyType,
        cumulative: bool,
    ) -> Vec<StatisticDiff> {
        refuse_cumulative_traceback(key_type, cumulative);
        untraced(|| {
            let new_groups = self.group(key_type, cumulative);
            let mut old_groups = old.group(key_type, cumulative);
            let round = |v: f64| v.round() as usize;
            let mut diffs: Vec<StatisticDiff> =
                Vec::with_capacity(new_groups.len() + old_groups.len());
            for (traceback, (size, count)) in new_groups {
                let (old_size, old_count) = old_groups.remove(&traceback).unwrap_or((0.0, 0.0));
                let (size, count, old_size, old_count) =
                    (round(size), round(count), round(old_size), round(old_count));
                diffs.push(StatisticDiff {
                    traceback,
                    size,
                    size_diff: difference(size, old_size),
                    count,
                    count_diff: difference(count, old_count),
                    key_type,
                });
            }
            for (traceback, (size, count)) in old_groups {
                diffs.push(StatisticDiff {
                    traceback,
                    size: 0,
                    size_diff: difference(0, round(size)),
                    count: 0,
                    count_diff: difference(0, round(count)),
                    key_type,
                });
            }
            diffs.sort_by(|a, b| b.sort_key().cmp(&a.sort_key()));
            diffs
        })
    }

    /// The traces that pass `filters`, as tracemalloc's
    /// `Snapshot.filter_traces`: a trace is kept if any inclusive filter
    /// matches it (or there is none) and no exclusive one does.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Filter, Frame, Snapshot, Trace, Traceback};
    ///
    /// let at = |f: &str| Traceback::new(vec![Frame::new(f, 1, "f")]);
    /// let s = Snapshot::new(vec![Trace::new(8, at("src/a.rs")), Trace::new(8, at("/rustc/x/library/std/src/io.rs"))], 1);
    /// let mine = s.filter_traces(&[Filter::exclude("/rustc/*")]);
    /// assert_eq!(mine.traces().len(), 1);
    /// ```
    pub fn filter_traces(&self, filters: &[Filter]) -> Snapshot {
        untraced(|| {
            let (include, exclude): (Vec<&Filter>, Vec<&Filter>) =
                filters.iter().partition(|f| f.inclusive);
            let traces = self
                .traces
                .iter()
                .filter(|t| {
                    (include.is_empty() || include.iter().any(|f| f.matches(&t.traceback)))
                        && !exclude.iter().any(|f| f.matches(&t.traceback))
                })
                .cloned()
                .collect();
            Snapshot {
                traces,
                traceback_limit: self.traceback_limit,
                sample_bytes: self.sample_bytes,
            }
        })
    }
}

/// A size in bytes as `tracemalloc._format_size` writes it: B, KiB, MiB, GiB,
/// TiB (dividing by 1024); in a unit above B, one decimal below 100; no
/// decimal below 10240 or in TiB; `sign` adds `+` to non-negative values.
/// Rounding is half-to-even, as Python's `%` formatting does on the binary
/// value.
pub(crate) fn format_size(size: f64, sign: bool) -> String {
    let mut size = size;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if size.abs() < 100.0 && unit != "B" {
            return if sign {
                format!("{size:+.1} {unit}")
            } else {
                format!("{size:.1} {unit}")
            };
        }
        if size.abs() < 10.0 * 1024.0 || unit == "TiB" {
            return if sign {
                format!("{size:+.0} {unit}")
            } else {
                format!("{size:.0} {unit}")
            };
        }
        size /= 1024.0;
    }
    unreachable!("the TiB branch returns")
}

/// `new - old`, saturated to `isize`'s range (sizes from a loaded dump can
/// be anything).
pub(crate) fn difference(new: usize, old: usize) -> isize {
    let d = new as i128 - old as i128;
    d.clamp(isize::MIN as i128, isize::MAX as i128) as isize
}

/// A sum of sizes, saturated at `usize::MAX`.
pub(crate) fn sum_sizes(sizes: impl Iterator<Item = usize>) -> usize {
    sizes.fold(0, usize::saturating_add)
}

/// A sum of differences, saturated to `isize`'s range.
pub(crate) fn sum_diffs(diffs: impl Iterator<Item = isize>) -> isize {
    diffs.fold(0, isize::saturating_add)
}

/// The grouping key of frame `i` of `t`.
pub(crate) fn key_of(t: &Traceback, i: usize, key_type: KeyType) -> Traceback {
    let user = match key_type {
        KeyType::UserLine if !t.user_frames().is_empty() => t.user_frames().get(i),
        _ => None,
    };
    let Some(frame) = user.or(t.frames().get(i)) else {
        return Traceback::new(Vec::new());
    };
    let one = |f: Frame| Traceback::new(vec![f]);
    // A key keeps the frame's full path (reports read source lines from
    // it); frames of one file have one path, so keys group as before.
    let key = |f: &Frame, lineno: u32, function: &std::sync::Arc<str>| {
        Frame::at_path(
            f.0.filename.clone(),
            f.0.path.clone(),
            lineno,
            function.clone(),
        )
    };
    let none: std::sync::Arc<str> = "".into();
    match key_type {
        KeyType::Traceback => Traceback::new(
            t.frames()
                .iter()
                .map(|f| key(f, f.0.lineno, &none))
                .collect(),
        ),
        // As tracemalloc's keys: file and line only (two closures inlined
        // on one line are one key).
        KeyType::Lineno | KeyType::UserLine => one(key(frame, frame.0.lineno, &none)),
        KeyType::Filename => one(key(frame, 0, &none)),
        KeyType::Function => one(key(frame, 0, &frame.0.function)),
    }
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
        Trace::new(size, t.clone())
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
    fn compare_to_as_tracemalloc() {
        let a = tb(&[("src/a.rs", 1, "f")]);
        let b = tb(&[("src/b.rs", 2, "g")]);
        let c = tb(&[("src/c.rs", 3, "h")]);
        let old = Snapshot::new(vec![trace(100, &a), trace(300, &b), trace(300, &b)], 1);
        let new = Snapshot::new(
            vec![
                trace(100, &a),
                trace(100, &a),
                trace(300, &b),
                trace(50, &c),
            ],
            1,
        );
        let diffs = new.compare_to(&old, KeyType::Lineno, false);
        let lines: Vec<String> = diffs.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            lines,
            [
                // Sorted by |size_diff| first: b lost 300, a gained 100, c is new.
                "src/b.rs:2: size=300 B (-300 B), count=1 (-1), average=300 B",
                "src/a.rs:1: size=200 B (+100 B), count=2 (+1), average=100 B",
                "src/c.rs:3: size=50 B (+50 B), count=1 (+1), average=50 B",
            ]
        );
        // A key only in the old snapshot: size and count 0, no average.
        let gone = old.compare_to(&Snapshot::new(vec![], 1), KeyType::Lineno, false);
        let back = Snapshot::new(vec![], 1).compare_to(&old, KeyType::Lineno, false);
        assert_eq!(gone.len(), 2);
        assert_eq!(
            back[0].to_string(),
            "src/b.rs:2: size=0 B (-600 B), count=0 (-2)"
        );
        assert_eq!(
            back[1].to_string(),
            "src/a.rs:1: size=0 B (-100 B), count=0 (-1)"
        );
        // Unchanged keys: +0.
        let same = old.compare_to(&old, KeyType::Filename, false);
        assert_eq!(
            same[0].to_string(),
            "src/b.rs:0: size=600 B (+0 B), count=2 (+0), average=300 B"
        );
    }

    #[test]
    fn compare_sort_ties_fall_to_size_then_counts() {
        let a = tb(&[("src/a.rs", 1, "f")]);
        let b = tb(&[("src/b.rs", 1, "f")]);
        let old = Snapshot::new(vec![trace(100, &a)], 1);
        let new = Snapshot::new(vec![trace(200, &a), trace(100, &b)], 1);
        // Both grew by 100; a is bigger now, so it comes first.
        let d = new.compare_to(&old, KeyType::Lineno, false);
        assert_eq!(d[0].traceback.to_string(), "src/a.rs:1");
        assert_eq!(d[1].traceback.to_string(), "src/b.rs:1");
    }

    #[test]
    fn fnmatch_as_python() {
        // (pattern, name, fnmatch.fnmatchcase result from Python 3.11)
        let cases = [
            ("*", "", true),
            ("*", "src/a.rs", true),
            ("src/*.rs", "src/x/y.rs", true),
            ("src/?.rs", "src/a.rs", true),
            ("src/?.rs", "src/ab.rs", false),
            ("*.rs", "a.rsx", false),
            ("[abc].rs", "b.rs", true),
            ("[!abc].rs", "b.rs", false),
            ("[!abc].rs", "d.rs", true),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("[a-]", "-", true),
            ("[", "[", true),
            ("a[", "a[", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*a*a", "aaaa", true),
            ("", "", true),
            ("", "a", false),
            ("/rustc/*", "/rustc/abc/library/std/src/io.rs", true),
            // Not ASCII: matched by characters, not bytes.
            ("?", "é", true),
            ("src/[éa]*.rs", "src/école.rs", true),
            ("*ö", "schön", false),
        ];
        for (pat, name, want) in cases {
            assert_eq!(fnmatch(pat, name), want, "fnmatch({pat:?}, {name:?})");
        }
    }

    #[test]
    fn filters_every_combination() {
        let t1 = tb(&[("src/a.rs", 10, "f"), ("src/main.rs", 1, "main")]);
        let t2 = tb(&[
            ("/rustc/x/library/alloc/src/vec.rs", 5, "push"),
            ("src/b.rs", 20, "g"),
        ]);
        let t3 = tb(&[("src/b.rs", 30, "h"), ("src/a.rs", 11, "f")]);
        let s = Snapshot::new(vec![trace(1, &t1), trace(2, &t2), trace(4, &t3)], 2);
        let kept = |filters: &[Filter]| -> usize {
            s.filter_traces(filters)
                .traces()
                .iter()
                .map(|t| t.size)
                .sum()
        };
        assert_eq!(kept(&[]), 7, "no filter keeps everything");
        assert_eq!(kept(&[Filter::include("src/a.rs")]), 1);
        assert_eq!(kept(&[Filter::include("src/a.rs").all_frames(true)]), 1 + 4);
        assert_eq!(kept(&[Filter::include("src/b.rs").lineno(30)]), 4);
        assert_eq!(
            kept(&[Filter::include("src/b.rs").lineno(20)]),
            0,
            "frame 0 only"
        );
        assert_eq!(
            kept(&[Filter::include("src/b.rs").lineno(20).all_frames(true)]),
            2
        );
        assert_eq!(kept(&[Filter::exclude("/rustc/*")]), 1 + 4);
        assert_eq!(kept(&[Filter::exclude("src/a.rs").all_frames(true)]), 2);
        assert_eq!(kept(&[Filter::exclude("src/b.rs").lineno(30)]), 1 + 2);
        // Any inclusive filter may match; no exclusive one may.
        assert_eq!(
            kept(&[Filter::include("src/a.rs"), Filter::include("src/b.rs")]),
            1 + 4
        );
        assert_eq!(
            kept(&[Filter::include("src/*"), Filter::exclude("src/b.rs")]),
            1
        );
        assert_eq!(
            kept(&[
                Filter::include("*").all_frames(true),
                Filter::exclude("/rustc/*").all_frames(true)
            ]),
            1 + 4
        );
        assert_eq!(
            s.filter_traces(&[Filter::include("src/a.rs")])
                .traceback_limit(),
            2
        );
    }

    /// Filters match the short name reports show and the full path.
    #[test]
    fn filters_match_the_name_and_the_full_path() {
        let full =
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/dep-1.0.0/src/lib.rs";
        let dep = Frame::at_path("dep-1.0.0/src/lib.rs".into(), full.into(), 7, "f".into());
        let s = Snapshot::new(
            vec![
                Trace::new(8, Traceback::new(vec![dep])),
                trace(16, &tb(&[("src/main.rs", 3, "main")])),
            ],
            1,
        );
        let kept = |f: Filter| s.filter_traces(&[f]).traces().len();
        assert_eq!(kept(Filter::include("dep-1.0.0/*")), 1);
        assert_eq!(kept(Filter::include("*/.cargo/registry/*")), 1);
        assert_eq!(kept(Filter::exclude("*/.cargo/registry/*")), 1);
        assert_eq!(kept(Filter::include("src/*")), 1);
        assert_eq!(kept(Filter::include("/home/u/*").lineno(8)), 0);
    }

    #[test]
    fn top_reports() {
        let here = Frame::new(file!(), line!(), "t"); // the source line shown
        let a = Traceback::new(vec![here]);
        let b = tb(&[("no/such/b.rs", 2, "g")]);
        let c = tb(&[("no/such/c.rs", 3, "h")]);
        let s = Snapshot::new(
            vec![trace(5 << 20, &a), trace(2048, &b), trace(1024, &c)],
            1,
        );
        let top = s.top(2, KeyType::Lineno).to_string();
        let want = format!(
            "Top 2 lines\n#1: {}:{}: 5120.0 KiB\n    let here = Frame::new(file!(), line!(), \"t\"); // the source line shown\n#2: no/such/b.rs:2: 2.0 KiB\n1 other: 1.0 KiB\nTotal allocated size: 5123.0 KiB\n",
            file!(),
            a.frames()[0].lineno()
        );
        assert_eq!(top, want);
        let old = Snapshot::new(vec![trace(2048, &b), trace(4096, &c)], 1);
        let diff = s.top_diff(&old, 1, KeyType::Lineno).to_string();
        let mut lines = diff.lines();
        assert_eq!(lines.next(), Some("Top 1 differences (lines)"));
        assert_eq!(
            lines.next(),
            Some(format!("#1: {}: 5120.0 KiB (+5120.0 KiB), count=1 (+1)", a).as_str())
        );
        assert!(
            diff.ends_with("2 other: -3.0 KiB\nTotal allocated size: 5123.0 KiB (+5117.0 KiB)\n"),
            "{diff}"
        );
        assert!(s
            .top(5, KeyType::Function)
            .to_string()
            .contains("#2: g (no/such/b.rs): 2.0 KiB"));
    }

    /// Memory a library allocated 40 frames below the user's line, the
    /// traceback cut at 2: `Lineno` counts it at the library's line,
    /// `UserLine` at the user's; a block with no user frame stays at its
    /// allocating line; tracemalloc's keys are untouched.
    #[test]
    fn user_line_keys_count_at_the_users_line() {
        let lib = |caller: u32| {
            tb(&[
                ("candle-core-0.11.1/src/dtype.rs", 167, "to_cpu"),
                ("candle-nn-0.11.1/src/var_builder.rs", 88, "get"),
            ])
            .with_total_nframe(40)
            .with_user_frames(vec![
                Frame::new("src/load.rs", 9, "load"),
                Frame::new("src/main.rs", caller, "main"),
            ])
        };
        let no_user = tb(&[("tokio-1.0.0/src/runtime.rs", 5, "run")]);
        let s = Snapshot::new(
            vec![
                trace(3 << 20, &lib(196)),
                trace(3 << 20, &lib(196)),
                trace(1 << 20, &lib(200)),
                trace(512, &no_user),
            ],
            2,
        );
        let by_line = s.statistics(KeyType::Lineno, false);
        assert_eq!(
            by_line[0].to_string(),
            "candle-core-0.11.1/src/dtype.rs:167: size=7168 KiB, count=3, average=2389 KiB"
        );
        // The first line of the user's: the helper that called the library.
        let mine = s.statistics(KeyType::UserLine, false);
        let lines: Vec<String> = mine.iter().map(|st| st.to_string()).collect();
        assert_eq!(
            lines,
            [
                "src/load.rs:9: size=7168 KiB, count=3, average=2389 KiB",
                "tokio-1.0.0/src/runtime.rs:5: size=512 B, count=1, average=512 B",
            ]
        );
        // Cumulative: under the helper and under each line that called it.
        let all = s.statistics(KeyType::UserLine, true);
        let lines: Vec<String> = all.iter().map(|st| st.to_string()).collect();
        assert_eq!(
            lines,
            [
                "src/load.rs:9: size=7168 KiB, count=3, average=2389 KiB",
                "src/main.rs:196: size=6144 KiB, count=2, average=3072 KiB",
                "src/main.rs:200: size=1024 KiB, count=1, average=1024 KiB",
                "tokio-1.0.0/src/runtime.rs:5: size=512 B, count=1, average=512 B",
            ]
        );
        let old = Snapshot::new(vec![trace(1 << 20, &lib(200))], 2);
        let diff = s.compare_to(&old, KeyType::UserLine, true);
        assert_eq!(
            diff[0].to_string(),
            "src/load.rs:9: size=7168 KiB (+6144 KiB), count=3 (+2), average=2389 KiB"
        );
        assert_eq!(
            diff[1].to_string(),
            "src/main.rs:196: size=6144 KiB (+6144 KiB), count=2 (+2), average=3072 KiB"
        );
        let top = s.top(2, KeyType::UserLine).to_string();
        assert!(
            top.starts_with("Top 2 lines of your code\n#1: src/load.rs:9: 7168.0 KiB"),
            "{top}"
        );
        // The whole-traceback key is tracemalloc's: the user frame is not
        // part of it.
        let tbs = s.statistics(KeyType::Traceback, false);
        assert!(tbs[0].traceback.user_frames().is_empty());
        assert_eq!(tbs[0].count, 3);
    }

    /// Sizes no real block has (a dump can say anything): sums and
    /// differences saturate instead of overflowing or wrapping.
    #[test]
    fn hostile_sizes_saturate() {
        let a = tb(&[("src/a.rs", 1, "a")]);
        let b = tb(&[("src/b.rs", 2, "b")]);
        let huge = Snapshot::new(
            vec![
                trace(usize::MAX, &a),
                trace(usize::MAX, &a),
                trace((1 << 63) + 1, &b),
            ],
            1,
        );
        let empty = Snapshot::new(Vec::new(), 1);
        let top = huge.top(1, KeyType::Lineno);
        assert_eq!(top.total(), usize::MAX);
        // (Sums go through f64: exact up to 2^53 bytes.)
        assert_eq!(top.other().0, 1);
        assert!(top.other().1 >= 1 << 63);
        assert!(top.to_string().contains("Total allocated size: "), "{top}");
        let grew = huge.compare_to(&empty, KeyType::Lineno, false);
        assert!(grew.iter().all(|d| d.size_diff == isize::MAX), "{grew:?}");
        let shrank = empty.compare_to(&huge, KeyType::Lineno, false);
        assert!(
            shrank.iter().all(|d| d.size_diff == isize::MIN),
            "{shrank:?}"
        );
        let lines = huge.top_diff(&empty, 1, KeyType::Lineno).to_string();
        assert!(
            !lines.contains("-"),
            "a growth never shows as a loss: {lines}"
        );
        assert_eq!(
            huge.top_diff(&empty, 1, KeyType::Lineno).total().1,
            isize::MAX
        );
        assert_eq!(
            empty.top_diff(&huge, 1, KeyType::Lineno).total().1,
            isize::MIN
        );
        let held = |t: &Traceback| trace(usize::MAX, t).with_content(Content::Hash(9));
        let d = Snapshot::new(vec![held(&a), held(&a), held(&b)], 1).duplicate_instances(1);
        assert_eq!(d.saved_bytes(), usize::MAX);
        assert!(d.to_string().contains("src/a.rs:1"), "{d}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn snapshot() -> impl Strategy<Value = Snapshot> {
            let sites: Vec<Traceback> = (0..6)
                .map(|i| {
                    Traceback::new(vec![
                        Frame::new(&format!("src/f{}.rs", i % 3), i, "f"),
                        Frame::new("src/main.rs", 1 + i % 2, "main"),
                    ])
                })
                .collect();
            proptest::collection::vec((0usize..6, 1usize..100_000), 0..60).prop_map(move |v| {
                Snapshot::new(
                    v.into_iter()
                        .map(|(site, size)| Trace::new(size, sites[site].clone()))
                        .collect(),
                    2,
                )
            })
        }

        fn total(s: &Snapshot) -> (isize, isize) {
            (
                s.traces().iter().map(|t| t.size as isize).sum(),
                s.traces().len() as isize,
            )
        }

        proptest! {
            #[test]
            fn compare_with_itself_is_all_zero(s in snapshot()) {
                for key in [KeyType::Filename, KeyType::Lineno, KeyType::Function, KeyType::Traceback] {
                    for d in s.compare_to(&s, key, false) {
                        prop_assert_eq!((d.size_diff, d.count_diff), (0, 0));
                    }
                }
            }

            #[test]
            fn diffs_sum_to_the_difference_of_totals(a in snapshot(), b in snapshot()) {
                let (ta, tb_) = (total(&a), total(&b));
                for key in [KeyType::Filename, KeyType::Lineno, KeyType::Function, KeyType::Traceback] {
                    let d = b.compare_to(&a, key, false);
                    let size: isize = d.iter().map(|d| d.size_diff).sum();
                    let count: isize = d.iter().map(|d| d.count_diff).sum();
                    prop_assert_eq!((size, count), (tb_.0 - ta.0, tb_.1 - ta.1));
                    let now: usize = d.iter().map(|d| d.size).sum();
                    prop_assert_eq!(now as isize, tb_.0);
                }
            }

            #[test]
            fn statistics_sum_to_the_totals(s in snapshot()) {
                let t = total(&s);
                for key in [KeyType::Filename, KeyType::Lineno, KeyType::Function, KeyType::Traceback] {
                    let st = s.statistics(key, false);
                    prop_assert_eq!(st.iter().map(|x| x.size as isize).sum::<isize>(), t.0);
                    prop_assert_eq!(st.iter().map(|x| x.count as isize).sum::<isize>(), t.1);
                    prop_assert!(st.windows(2).all(|w| (w[0].size, w[0].count, &w[0].traceback) >= (w[1].size, w[1].count, &w[1].traceback)));
                }
            }

            #[test]
            fn dump_load_round_trips(s in snapshot()) {
                let path = std::env::temp_dir().join(format!("tracealloc-prop-{}-{:?}.json", std::process::id(), std::thread::current().id()));
                s.dump(&path).unwrap();
                let back = Snapshot::load(&path).unwrap();
                std::fs::remove_file(&path).unwrap();
                prop_assert_eq!(back, s);
            }
        }
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
