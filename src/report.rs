//! Reports: sizes as `tracemalloc` writes them, and the top-N reports.

use std::fmt;

use crate::frame::Traceback;

use crate::scope::untraced;
use crate::snapshot::{
    sum_diffs, sum_sizes, KeyLabel, KeyType, Snapshot, Statistic, StatisticDiff,
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
        KeyType::Lineno | KeyType::Filename | KeyType::UserLine => {
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
        KeyType::UserLine => "lines of your code",
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

/// The reports, built in: top-N and top-N changes.
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
}

#[cfg(test)]
mod tests {
    use crate::snapshot::format_size;

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
    }
}
