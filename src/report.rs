//! Reports: sizes as `tracemalloc` writes them, and the top-N reports.

use std::fmt;

use crate::frame::Traceback;
use std::collections::HashMap;

use crate::scope::untraced;
use crate::snapshot::{
    format_size, key_of, sum_diffs, sum_sizes, KeyLabel, KeyType, Snapshot, Statistic,
    StatisticDiff,
};
use crate::source::source_line;

/// The lines printed under an entry: the source line of the allocating frame,
/// or the whole traceback for [`KeyType::Traceback`].
fn write_context(f: &mut fmt::Formatter<'_>, t: &Traceback, key_type: KeyType) -> fmt::Result {
    match key_type {
        KeyType::Traceback => {
            for line in t.format(None, true) {
                writeln!(f, "  {line}")?;
            }
        }
        KeyType::Function => {}
        KeyType::Lineno | KeyType::Filename => {
            if let Some(src) = t
                .frames()
                .first()
                .and_then(|fr| source_line(fr.path(), fr.lineno()))
            {
                writeln!(f, "    {src}")?;
            }
        }
    }
    Ok(())
}

/// The notes that explain the entries without a source line (see
/// [`Frame::line_hint`](crate::Frame::line_hint)), each once, for the key
/// type's first frame of each entry.
fn write_hints<'a>(
    f: &mut fmt::Formatter<'_>,
    tracebacks: impl Iterator<Item = &'a Traceback>,
    key_type: KeyType,
) -> fmt::Result {
    let mut seen: Vec<&'static str> = Vec::new();
    for t in tracebacks {
        let hint = match key_type {
            KeyType::Traceback => t.frames().iter().find_map(|fr| fr.line_hint()),
            // A file's or a function's entry has no line by construction:
            // only an unknown file needs a note.
            KeyType::Filename | KeyType::Function => t
                .frames()
                .first()
                .filter(|fr| fr.filename() == "<unknown>")
                .and_then(|fr| fr.line_hint()),
            _ => t.frames().first().and_then(|fr| fr.line_hint()),
        };
        if let Some(h) = hint {
            if !seen.contains(&h) {
                seen.push(h);
            }
        }
    }
    for h in seen {
        writeln!(f, "Note: {h}.")?;
    }
    Ok(())
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn noun(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::Filename => "files",
        KeyType::Lineno => "lines",
        KeyType::Function => "functions",
        KeyType::Traceback => "tracebacks",
    }
}

/// The biggest keys of a snapshot, from
/// [`Snapshot::top`](crate::Snapshot::top): tracemalloc's "pretty top" recipe.
///
/// ```text
/// Top 10 lines
/// #1: src/model.rs:42: 5120.0 KiB
///     let weights = vec![0f32; n];
/// #2: ...
/// 12 other: 310.4 KiB
/// Total allocated size: 5532.1 KiB
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Top {
    stats: Vec<Statistic>,
    n: usize,
    key_type: KeyType,
}

impl Top {
    pub(crate) fn new(stats: Vec<Statistic>, n: usize, key_type: KeyType) -> Top {
        Top { stats, n, key_type }
    }

    /// The `n` biggest entries.
    pub fn entries(&self) -> &[Statistic] {
        &self.stats[..self.n.min(self.stats.len())]
    }

    /// The rest, summed: `(keys, bytes)`.
    pub fn other(&self) -> (usize, usize) {
        let rest = &self.stats[self.n.min(self.stats.len())..];
        (rest.len(), sum_sizes(rest.iter().map(|s| s.size)))
    }

    /// Bytes over every key.
    pub fn total(&self) -> usize {
        sum_sizes(self.stats.iter().map(|s| s.size))
    }
}

impl fmt::Display for Top {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Top {} {}", self.n, noun(self.key_type))?;
        for (i, s) in self.entries().iter().enumerate() {
            writeln!(
                f,
                "#{}: {}: {}",
                i + 1,
                KeyLabel(&s.traceback, self.key_type),
                kib(s.size as f64)
            )?;
            write_context(f, &s.traceback, self.key_type)?;
        }
        let (others, other_bytes) = self.other();
        if others > 0 {
            writeln!(f, "{others} other: {}", kib(other_bytes as f64))?;
        }
        writeln!(f, "Total allocated size: {}", kib(self.total() as f64))?;
        write_hints(
            f,
            self.entries().iter().map(|s| &s.traceback),
            self.key_type,
        )
    }
}

/// The biggest changes between two snapshots, from
/// [`Snapshot::top_diff`](crate::Snapshot::top_diff).
///
/// ```text
/// Top 10 differences (lines)
/// #1: src/model.rs:42: 5120.0 KiB (+5120.0 KiB), count=2 (+2)
///     let weights = vec![0f32; n];
/// #2: ...
/// 12 other: +1.5 KiB
/// Total allocated size: 5532.1 KiB (+5121.5 KiB)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopDiff {
    diffs: Vec<StatisticDiff>,
    n: usize,
    key_type: KeyType,
}

impl TopDiff {
    pub(crate) fn new(diffs: Vec<StatisticDiff>, n: usize, key_type: KeyType) -> TopDiff {
        TopDiff { diffs, n, key_type }
    }

    /// The `n` biggest changes.
    pub fn entries(&self) -> &[StatisticDiff] {
        &self.diffs[..self.n.min(self.diffs.len())]
    }

    /// Bytes now and their change, over every key.
    pub fn total(&self) -> (usize, isize) {
        (
            sum_sizes(self.diffs.iter().map(|d| d.size)),
            sum_diffs(self.diffs.iter().map(|d| d.size_diff)),
        )
    }
}

impl fmt::Display for TopDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Top {} differences ({})", self.n, noun(self.key_type))?;
        for (i, d) in self.entries().iter().enumerate() {
            writeln!(
                f,
                "#{}: {}: {} ({:+.1} KiB), count={} ({:+})",
                i + 1,
                KeyLabel(&d.traceback, self.key_type),
                kib(d.size as f64),
                d.size_diff as f64 / 1024.0,
                d.count,
                d.count_diff
            )?;
            write_context(f, &d.traceback, self.key_type)?;
        }
        let rest = &self.diffs[self.n.min(self.diffs.len())..];
        if !rest.is_empty() {
            let diff = sum_diffs(rest.iter().map(|d| d.size_diff));
            writeln!(f, "{} other: {:+.1} KiB", rest.len(), diff as f64 / 1024.0)?;
        }
        let (size, diff) = self.total();
        writeln!(
            f,
            "Total allocated size: {} ({:+.1} KiB)",
            kib(size as f64),
            diff as f64 / 1024.0
        )?;
        write_hints(
            f,
            self.entries().iter().map(|d| &d.traceback),
            self.key_type,
        )
    }
}

/// One call site holding several live blocks of one size; see
/// [`Snapshot::duplicates`](crate::Snapshot::duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateSite {
    pub(crate) traceback: Traceback,
    pub(crate) block_size: usize,
    pub(crate) count: usize,
}

impl DuplicateSite {
    /// The allocating line.
    pub fn traceback(&self) -> &Traceback {
        &self.traceback
    }

    /// The size of each block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// How many live blocks of that size the site holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The bytes held: `count × block_size`.
    pub fn total_bytes(&self) -> usize {
        self.count.saturating_mul(self.block_size)
    }

    /// What one shared instance would save: all but one block.
    pub fn saved_bytes(&self) -> usize {
        (self.count - 1).saturating_mul(self.block_size)
    }
}

/// Suspected duplicates, from [`Snapshot::duplicates`](crate::Snapshot::duplicates), biggest saving first;
/// `Display` is a short report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicates {
    pub(crate) sites: Vec<DuplicateSite>,
    pub(crate) min_size: usize,
}

impl Duplicates {
    /// The sites, biggest saving first.
    pub fn sites(&self) -> &[DuplicateSite] {
        &self.sites
    }

    /// The bytes sharing would save over all sites.
    pub fn saved_bytes(&self) -> usize {
        sum_sizes(self.sites.iter().map(DuplicateSite::saved_bytes))
    }
}

impl fmt::Display for Duplicates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let min = format_size(self.min_size as f64, false);
        if self.sites.is_empty() {
            return writeln!(
                f,
                "No suspected duplicates: no call site holds 2+ live blocks of one size >= {min}"
            );
        }
        writeln!(
            f,
            "Suspected duplicates: call sites holding 2+ live blocks of one size >= {min}"
        )?;
        for s in &self.sites {
            writeln!(
                f,
                "  {}: {} blocks of {} = {}; one shared instance would save {}",
                s.traceback,
                s.count,
                format_size(s.block_size as f64, false),
                format_size(s.total_bytes() as f64, false),
                format_size(s.saved_bytes() as f64, false)
            )?;
            if let Some(src) = s
                .traceback
                .frames
                .first()
                .and_then(|fr| source_line(&fr.0.path, fr.0.lineno))
            {
                writeln!(f, "      {src}")?;
            }
        }
        writeln!(
            f,
            "Sharing would save {} in all",
            format_size(self.saved_bytes() as f64, false)
        )?;
        write_hints(f, self.sites.iter().map(|s| &s.traceback), KeyType::Lineno)
    }
}

/// The reports, built in: top-N, top-N changes, duplicates.
impl Snapshot {
    /// The `n` biggest keys, ready to print: tracemalloc's "pretty top"
    /// recipe (see [`Top`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, KeyType, Snapshot, Trace, Traceback};
    ///
    /// let site = Traceback::new(vec![Frame::new("src/model.rs", 42, "load")]);
    /// let s = Snapshot::new(vec![Trace::new(5 << 20, site)], 1);
    /// let report = s.top(10, KeyType::Lineno).to_string();
    /// assert!(report.contains("#1: src/model.rs:42: 5120.0 KiB"));
    /// assert!(report.ends_with("Total allocated size: 5120.0 KiB\n"));
    /// ```
    pub fn top(&self, n: usize, key_type: KeyType) -> Top {
        untraced(|| Top::new(self.statistics(key_type, false), n, key_type))
    }

    /// The `n` biggest changes since `old`, ready to print (see [`TopDiff`]).
    pub fn top_diff(&self, old: &Snapshot, n: usize, key_type: KeyType) -> TopDiff {
        untraced(|| TopDiff::new(self.compare_to(old, key_type, false), n, key_type))
    }

    /// Call sites holding two or more live blocks of one size, each at least
    /// `min_size` bytes: the signature of loading the same resource twice.
    /// Sites are keyed by the allocating line ([`KeyType::Lineno`]); the
    /// report says how much sharing one instance would save. Counts are the
    /// traced blocks' (in a sampled snapshot, blocks far above the sampling
    /// rate are nearly all traced).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let load = Traceback::new(vec![Frame::new("src/model.rs", 42, "load")]);
    /// let s = Snapshot::new(vec![Trace::new(64 << 20, load.clone()), Trace::new(64 << 20, load)], 1);
    /// let d = s.duplicates(1 << 20);
    /// assert_eq!(d.sites().len(), 1);
    /// assert_eq!(d.sites()[0].saved_bytes(), 64 << 20);
    /// assert!(d.to_string().contains("src/model.rs:42: 2 blocks of 64.0 MiB"));
    /// ```
    pub fn duplicates(&self, min_size: usize) -> Duplicates {
        untraced(|| {
            let mut by_site: HashMap<(Traceback, usize), usize> = HashMap::new();
            let mut keys: HashMap<usize, Traceback> = HashMap::new();
            for t in self.traces().iter().filter(|t| t.size >= min_size.max(1)) {
                let key = keys
                    .entry(t.traceback.frames.as_ptr() as usize)
                    .or_insert_with(|| key_of(&t.traceback, 0, KeyType::Lineno))
                    .clone();
                *by_site.entry((key, t.size)).or_insert(0) += 1;
            }
            let mut sites: Vec<DuplicateSite> = by_site
                .into_iter()
                .filter(|&(_, count)| count >= 2)
                .map(|((traceback, block_size), count)| DuplicateSite {
                    traceback,
                    block_size,
                    count,
                })
                .collect();
            sites.sort_by(|a, b| {
                (b.saved_bytes(), &b.traceback).cmp(&(a.saved_bytes(), &a.traceback))
            });
            Duplicates { sites, min_size }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::format_size;

    /// Expected strings from Python 3.11's `tracemalloc._format_size`.
    #[test]
    fn sizes_as_tracemalloc_writes_them() {
        let cases: &[(f64, bool, &str)] = &[
            (0.0, false, "0 B"),
            (0.0, true, "+0 B"),
            (1.0, false, "1 B"),
            (-1.0, true, "-1 B"),
            (10239.0, false, "10239 B"),
            (10240.0, false, "10.0 KiB"),
            (102399.0, false, "100.0 KiB"),
            (102400.0, false, "100 KiB"),
            (10485759.0, false, "10240 KiB"),
            (10485760.0, false, "10.0 MiB"),
            (5242880.0, true, "+5120 KiB"),
            (-5242880.0, true, "-5120 KiB"),
            (2.5, false, "2 B"),
            (3.5, false, "4 B"),
            (341.3333, false, "341 B"),
            ((1u64 << 40) as f64, false, "1024 GiB"),
        ];
        for &(size, sign, want) in cases {
            assert_eq!(format_size(size, sign), want, "{size} {sign}");
        }
        assert_eq!(format_size((100u64 << 40) as f64, false), "100 TiB");
        assert_eq!(format_size((20u64 << 40) as f64, false), "20.0 TiB");
    }

    use crate::{Frame, KeyType, Snapshot, Trace, Traceback};

    fn snapshot(frames: &[(&str, u32)]) -> Snapshot {
        let traces = frames
            .iter()
            .map(|&(file, line)| {
                let tb = Traceback::new(vec![
                    Frame::new(file, line, "f"),
                    Frame::new("src/main.rs", 7, "main"),
                ]);
                Trace::new(4096, tb)
            })
            .collect();
        Snapshot::new(traces, 2)
    }

    #[test]
    fn reports_explain_lines_they_cannot_name() {
        let known = snapshot(&[("src/a.rs", 3), ("src/b.rs", 4)]);
        for key in [
            KeyType::Lineno,
            KeyType::Filename,
            KeyType::Function,
            KeyType::Traceback,
        ] {
            assert!(!known.top(10, key).to_string().contains("Note:"), "{key:?}");
        }
        let s = snapshot(&[("<unknown>", 0), ("serde_json-1.0.154/src/lib.rs", 0)]);
        let top = s.top(10, KeyType::Lineno).to_string();
        assert_eq!(top.matches("Note: <unknown>:0 means").count(), 1, "{top}");
        assert!(top.contains("[profile.release]"), "{top}");
        assert_eq!(top.matches("Note: a line 0 is code").count(), 1, "{top}");
        // A file's entry is at line 0 by construction: no note for it.
        for key in [KeyType::Filename, KeyType::Function] {
            let t = s.top(10, key).to_string();
            assert!(t.contains("Note: <unknown>:0"), "{t}");
            assert!(!t.contains("a line 0"), "{t}");
        }
        // Entries past the top n are not shown, and need no note.
        let one = snapshot(&[("src/a.rs", 3), ("src/a.rs", 3), ("<unknown>", 0)]);
        assert!(!one.top(1, KeyType::Lineno).to_string().contains("Note:"));
        let diff = s.top_diff(&known, 10, KeyType::Lineno).to_string();
        assert!(diff.contains("Note: <unknown>:0"), "{diff}");
        let dups = snapshot(&[("<unknown>", 0), ("<unknown>", 0)]).duplicates(1);
        assert!(dups.to_string().contains("Note: <unknown>:0"), "{dups}");
    }
}
