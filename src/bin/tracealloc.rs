//! The `tracealloc` command-line tool (feature `cli`): reports on snapshot
//! dumps ([`Snapshot::dump`]) and saved whole-run profiles
//! ([`Profile::save`]), and exports them for DHAT's viewer, pprof and
//! flame graphs.
//!
//! ```text
//! tracealloc top FILE [-n N] [--key lineno|filename|function|traceback] [--cumulative]
//! tracealloc diff OLD NEW [-n N] [--key ...] [--cumulative]
//! tracealloc duplicates FILE [--min-size BYTES]
//! tracealloc export FILE --to dhat|pprof|folded|svg -o OUT [--metric ...]
//! ```
//!
//! Errors: one line on stderr, starting `tracealloc: `, and exit status 1
//! (2 for a command line that does not parse).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tracealloc::{KeyType, Metric, Profile, Site, Snapshot, Traceback};

/// Reports on tracealloc's snapshot dumps and saved whole-run profiles, and
/// exports them for DHAT's viewer, pprof and flame graphs.
#[derive(Parser)]
#[command(name = "tracealloc", version)]
#[command(after_help = "FILE is a snapshot dump (Snapshot::dump) or a saved \
    whole-run profile (Profile::save); the tool tells them apart by their \
    format name.\nErrors: one line on stderr and exit status 1 (2 for a bad \
    command line).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The biggest call sites of a snapshot dump (live bytes) or a saved
    /// profile (bytes allocated over the run)
    #[command(after_help = "For a snapshot dump: tracemalloc's top report \
        (the live bytes per key; with --cumulative, each block counted under \
        every frame of its traceback).\nFor a saved profile: a table of the \
        whole run per key, biggest volume first: bytes allocated, blocks, \
        live at the end, most live at once, live at the peak, average \
        lifetime. --key lineno, filename and function group the sites by \
        their allocating frame; traceback shows each site with its stack; \
        --cumulative counts each site under every frame of its stack. A \
        group's \"max live\" adds its sites' maxima: an upper bound.")]
    Top {
        /// A snapshot dump or a saved profile
        file: PathBuf,
        /// How many entries to show
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 10)]
        n: usize,
        /// How to group the blocks or sites
        #[arg(long, value_enum, default_value_t = Key::Lineno)]
        key: Key,
        /// Count each block (site) under every frame of its traceback, not
        /// only the allocating one
        #[arg(long)]
        cumulative: bool,
    },
    /// What changed between two snapshot dumps, biggest change first
    /// (tracemalloc's compare_to)
    Diff {
        /// The earlier snapshot dump
        old: PathBuf,
        /// The later snapshot dump
        new: PathBuf,
        /// How many entries to show
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 10)]
        n: usize,
        /// How to group the blocks
        #[arg(long, value_enum, default_value_t = Key::Lineno)]
        key: Key,
        /// Count each block under every frame of its traceback
        #[arg(long)]
        cumulative: bool,
    },
    /// Things a snapshot dump holds more than once: calls that hold the same
    /// blocks, by call path and size (a model loaded twice)
    Duplicates {
        /// A snapshot dump
        file: PathBuf,
        /// The smallest block size considered: bytes, or with a suffix k,
        /// M, G (1024-based)
        #[arg(long, value_name = "BYTES", default_value = "1k", value_parser = parse_size)]
        min_size: usize,
    },
    /// Converts a snapshot dump or a saved profile to DHAT JSON, gzipped pprof,
    /// collapsed stacks or an SVG flame graph
    #[command(after_help = "A snapshot dump exports its live blocks: as \
        allocated, live and at their most (DHAT's at-end figures); it has no \
        peak figures.\nOpen DHAT files in dh_view.html, pprof files with \
        `go tool pprof`, folded stacks with inferno-flamegraph, \
        flamegraph.pl or speedscope, SVG files in a web browser.")]
    Export {
        /// A snapshot dump or a saved profile
        file: PathBuf,
        /// The output format
        #[arg(long = "to", value_enum)]
        to: Format,
        /// The file to write; `-` or none: the standard output (to pipe
        /// folded stacks into inferno-flamegraph)
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        out: Option<PathBuf>,
        /// What folded stacks and flame graphs measure [default: allocated]
        #[arg(long, value_enum)]
        metric: Option<MetricArg>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Key {
    /// By the allocating line
    Lineno,
    /// By the allocating file
    Filename,
    /// By the allocating function
    Function,
    /// By the whole traceback
    Traceback,
    /// By the first line of your own code in the stack
    UserLine,
}

impl Key {
    fn key_type(self) -> KeyType {
        match self {
            Key::Lineno => KeyType::Lineno,
            Key::Filename => KeyType::Filename,
            Key::Function => KeyType::Function,
            Key::Traceback => KeyType::Traceback,
            Key::UserLine => KeyType::UserLine,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Key::Lineno => "lines",
            Key::Filename => "files",
            Key::Function => "functions",
            Key::Traceback => "tracebacks",
            Key::UserLine => "lines of your code",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// DHAT's JSON, for dh_view.html
    Dhat,
    /// Gzipped pprof protobuf, for go tool pprof, Pyroscope, Parca, Grafana
    Pprof,
    /// Collapsed stacks, for inferno, flamegraph.pl, speedscope
    Folded,
    /// An SVG flame graph
    Svg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MetricArg {
    /// Bytes allocated over the run
    Allocated,
    /// Blocks allocated over the run
    Blocks,
    /// Bytes live at the end
    Live,
    /// The most bytes each site had live at once
    MaxLive,
    /// Bytes live at the traced peak
    Peak,
}

impl MetricArg {
    fn metric(self) -> Metric {
        match self {
            MetricArg::Allocated => Metric::BytesAllocated,
            MetricArg::Blocks => Metric::Blocks,
            MetricArg::Live => Metric::LiveBytes,
            MetricArg::MaxLive => Metric::MaxLiveBytes,
            MetricArg::Peak => Metric::PeakBytes,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            MetricArg::Allocated => "bytes allocated",
            MetricArg::Blocks => "blocks allocated",
            MetricArg::Live => "bytes live at the end",
            MetricArg::MaxLive => "most bytes live at once",
            MetricArg::Peak => "bytes live at the peak",
        }
    }
}

/// `4096`, `64k`, `1M`, `2G` (1024-based).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with k, M or G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

/// Why a command failed: exit status 1 or 2, and its line.
struct Failure {
    code: u8,
    message: String,
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

impl From<tracealloc::Error> for Failure {
    fn from(e: tracealloc::Error) -> Failure {
        // The error's own text starts "tracealloc: "; it is one line but
        // for names in it, which are printed as they are.
        fail(
            e.to_string()
                .trim_start_matches("tracealloc: ")
                .replace('\n', " "),
        )
    }
}

enum Input {
    Snapshot(Snapshot),
    Profile(Profile),
}

fn read(path: &Path) -> Result<Input, Failure> {
    Ok(if Profile::__is_profile_file(path)? {
        Input::Profile(Profile::load(path)?)
    } else {
        Input::Snapshot(Snapshot::load(path)?)
    })
}

fn read_snapshot(path: &Path, command: &str, why: &str) -> Result<Snapshot, Failure> {
    match read(path)? {
        Input::Snapshot(s) => Ok(s),
        Input::Profile(_) => Err(fail(format!(
            "{command} reads snapshot dumps ({why}); {} is a saved whole-run profile",
            path.display()
        ))),
    }
}

fn no_cumulative_traceback(key: Key, cumulative: bool) -> Result<(), Failure> {
    if cumulative && key == Key::Traceback {
        return Err(usage(
            "--cumulative needs --key lineno, filename or function: a whole traceback has no \
             cumulative figures",
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli.command).and_then(|text| {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            // A reader that stopped early (`| head`) is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(fail(format!("cannot write the report: {e}"))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "tracealloc: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Runs a command; what it prints on success.
fn run(command: Command) -> Result<String, Failure> {
    match command {
        Command::Top {
            file,
            n,
            key,
            cumulative,
        } => {
            no_cumulative_traceback(key, cumulative)?;
            match read(&file)? {
                Input::Snapshot(s) => Ok(snapshot_top(&s, n, key, cumulative)),
                Input::Profile(p) => Ok(profile_top(&p, n, key, cumulative)),
            }
        }
        Command::Diff {
            old,
            new,
            n,
            key,
            cumulative,
        } => {
            no_cumulative_traceback(key, cumulative)?;
            let why = "a profile's figures are the whole run's, not a moment's";
            let old = read_snapshot(&old, "diff", why)?;
            let new = read_snapshot(&new, "diff", why)?;
            Ok(if cumulative {
                let diffs = new.compare_to(&old, key.key_type(), true);
                let mut out = format!("Top {n} differences ({}, cumulative)\n", key.noun());
                for (i, d) in diffs.iter().take(n).enumerate() {
                    let _ = writeln!(out, "#{}: {d}", i + 1);
                }
                if diffs.len() > n {
                    let _ = writeln!(out, "{} other", diffs.len() - n);
                }
                out
            } else {
                new.top_diff(&old, n, key.key_type()).to_string()
            })
        }
        Command::Duplicates { file, min_size } => {
            let s = read_snapshot(&file, "duplicates", "it needs each live block's size")?;
            Ok(s.duplicate_instances(min_size).to_string())
        }
        Command::Export {
            file,
            to,
            out,
            metric,
        } => export(&file, to, out.as_deref(), metric),
    }
}

fn snapshot_top(s: &Snapshot, n: usize, key: Key, cumulative: bool) -> String {
    if !cumulative {
        return s.top(n, key.key_type()).to_string();
    }
    let stats = s.statistics(key.key_type(), true);
    let mut out = format!("Top {n} {} (cumulative)\n", key.noun());
    for (i, st) in stats.iter().take(n).enumerate() {
        let _ = writeln!(out, "#{}: {st}", i + 1);
    }
    if stats.len() > n {
        let _ = writeln!(out, "{} other", stats.len() - n);
    }
    out
}

/// A size for people: B, KiB, MiB, GiB, TiB, one decimal above bytes.
fn size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

fn time(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A profile's figures added over the sites of one key.
#[derive(Default)]
struct Row {
    sites: usize,
    allocs: u64,
    bytes_allocated: u64,
    live_blocks: u64,
    live_bytes: u64,
    max_live_bytes: u64,
    peak_bytes: u64,
    lifetime: Duration,
    /// Blocks the lifetime is over (freed and live).
    lived: u64,
}

impl Row {
    fn add(&mut self, s: &Site) {
        self.sites += 1;
        self.allocs = self.allocs.saturating_add(s.allocs);
        self.bytes_allocated = self.bytes_allocated.saturating_add(s.bytes_allocated);
        self.live_blocks = self.live_blocks.saturating_add(s.live_blocks);
        self.live_bytes = self.live_bytes.saturating_add(s.live_bytes);
        self.max_live_bytes = self.max_live_bytes.saturating_add(s.max_live_bytes);
        self.peak_bytes = self.peak_bytes.saturating_add(s.peak_bytes);
        self.lifetime = self.lifetime.saturating_add(s.total_lifetime);
        self.lived = self.lived.saturating_add(s.allocs.max(s.live_blocks));
    }

    fn average_lifetime(&self) -> String {
        if self.lived == 0 {
            return "-".into();
        }
        time(Duration::from_nanos(
            (self.lifetime.as_nanos() / u128::from(self.lived)).min(u128::from(u64::MAX)) as u64,
        ))
    }
}

/// The key of frame `frame` of a site's traceback, as text.
fn key_text(t: &Traceback, frame: usize, key: Key) -> String {
    let user = t.user_frame().filter(|_| key == Key::UserLine);
    let Some(f) = user.or(t.frames().get(frame)) else {
        return "<unknown>".into();
    };
    match key {
        Key::Lineno | Key::UserLine => format!("{}:{}", f.filename(), f.lineno()),
        Key::Filename => f.filename().to_string(),
        Key::Function => f.function().to_string(),
        Key::Traceback => format!("{}:{} {}", f.filename(), f.lineno(), f.function()),
    }
}

/// Names as one line of a table: control characters (line breaks) as
/// spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn profile_top(p: &Profile, n: usize, key: Key, cumulative: bool) -> String {
    let info = p.info();
    let mut out = String::new();
    let blocks = p
        .sites()
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.allocs));
    let _ = write!(
        out,
        "Whole-run profile: {} sites, {} allocated in {blocks} blocks",
        p.sites().len(),
        size(p.bytes_allocated()),
    );
    if info.pid != 0 {
        let _ = write!(out, "; pid {}", info.pid);
    }
    if !info.command.is_empty() {
        let _ = write!(out, ", `{}`", one_line(&info.command.join(" ")));
    }
    if !info.duration.is_zero() {
        let _ = write!(out, ", {} run", time(info.duration));
    }
    if let Some(at) = info.peak_at {
        let _ = write!(out, "; peak {} at {}", size(info.peak_bytes), time(at));
    }
    if let Some(rate) = info.sample_bytes {
        let _ = write!(out, "; sampled every {} on average", size(rate));
    }
    out.push('\n');

    // Group: each site counted once per distinct key among its frames
    // (cumulative), or under its allocating frame's key.
    let mut rows: HashMap<String, (Row, usize)> = HashMap::new();
    for (i, s) in p.sites().iter().enumerate() {
        if key == Key::Traceback {
            let mut row = Row::default();
            row.add(s);
            rows.insert(format!("#site {i}"), (row, i));
            continue;
        }
        let frames = if cumulative && key != Key::UserLine {
            s.traceback.frames().len().max(1)
        } else {
            1
        };
        let mut seen: Vec<String> = Vec::new();
        for f in 0..frames {
            let k = key_text(&s.traceback, f, key);
            if seen.contains(&k) {
                continue;
            }
            rows.entry(k.clone())
                .or_insert((Row::default(), i))
                .0
                .add(s);
            seen.push(k);
        }
    }
    let mut rows: Vec<(String, Row, usize)> =
        rows.into_iter().map(|(k, (r, i))| (k, r, i)).collect();
    rows.sort_by(|a, b| {
        (b.1.bytes_allocated, b.1.allocs, &a.0).cmp(&(a.1.bytes_allocated, a.1.allocs, &b.0))
    });

    let _ = writeln!(
        out,
        "Top {n} {} by bytes allocated{}",
        key.noun(),
        if cumulative { " (cumulative)" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:>4} {:>11} {:>10} {:>11} {:>11} {:>11} {:>10}  site",
        "#", "allocated", "blocks", "live", "max live", "at peak", "avg life"
    );
    for (rank, (k, r, first)) in rows.iter().take(n).enumerate() {
        let site = &p.sites()[*first];
        let label = if key == Key::Traceback {
            site.traceback.to_string()
        } else {
            k.clone()
        };
        let _ = writeln!(
            out,
            "{:>4} {:>11} {:>10} {:>11} {:>11} {:>11} {:>10}  {}",
            rank + 1,
            size(r.bytes_allocated),
            r.allocs,
            size(r.live_bytes),
            size(r.max_live_bytes),
            size(r.peak_bytes),
            r.average_lifetime(),
            one_line(&label),
        );
        if key == Key::Traceback {
            for f in site.traceback.frames() {
                let _ = writeln!(
                    out,
                    "{:>76}{}:{} {}",
                    "",
                    one_line(f.filename()),
                    f.lineno(),
                    one_line(f.function())
                );
            }
        }
    }
    let rest = rows.len().saturating_sub(n);
    if rest > 0 && !cumulative {
        let other = rows[n..]
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.1.bytes_allocated));
        let _ = writeln!(out, "{rest} other: {} allocated", size(other));
    } else if rest > 0 {
        let _ = writeln!(out, "{rest} other");
    }
    if key != Key::Traceback && rows.iter().take(n).any(|r| r.1.sites > 1) {
        out.push_str(
            "(max live of several sites adds their maxima: an upper bound of what they held at once)\n",
        );
    }
    // Why a shown site has no line (`<unknown>:0`, `file.rs:0`), once each.
    let mut hints: Vec<&str> = Vec::new();
    for (_, _, first) in rows.iter().take(n) {
        let frames = p.sites()[*first].traceback.frames();
        let hint = match key {
            Key::Traceback => frames.iter().find_map(|f| f.line_hint()),
            Key::Filename | Key::Function => frames
                .first()
                .filter(|f| f.filename() == "<unknown>")
                .and_then(|f| f.line_hint()),
            Key::Lineno => frames.first().and_then(|f| f.line_hint()),
            Key::UserLine => p.sites()[*first]
                .traceback
                .user_frame()
                .or(frames.first())
                .and_then(|f| f.line_hint()),
        };
        if let Some(h) = hint.filter(|h| !hints.contains(h)) {
            hints.push(h);
        }
    }
    for h in hints {
        let _ = writeln!(out, "Note: {h}.");
    }
    out
}

fn export(
    file: &Path,
    to: Format,
    out: Option<&Path>,
    metric: Option<MetricArg>,
) -> Result<String, Failure> {
    if metric.is_some() && matches!(to, Format::Dhat | Format::Pprof) {
        return Err(usage(
            "--metric applies to --to folded and svg: DHAT and pprof files hold every figure",
        ));
    }
    let metric = metric.unwrap_or(MetricArg::Allocated);
    let input = read(file)?;
    let (profile, snapshot) = match input {
        Input::Profile(p) => (p, None),
        Input::Snapshot(s) => {
            if metric == MetricArg::Peak {
                return Err(fail(format!(
                    "{} is a snapshot dump: it has no peak figures (use --metric allocated, \
                     blocks or live)",
                    file.display()
                )));
            }
            (Profile::from_snapshot(&s), Some(s))
        }
    };
    let out = match out {
        Some(path) if path != Path::new("-") => path,
        _ => {
            let bytes = match to {
                Format::Dhat => profile.dhat().into_bytes(),
                Format::Pprof => match &snapshot {
                    Some(s) => s.pprof(),
                    None => profile.pprof(),
                },
                Format::Folded => profile.folded(metric.metric()).into_bytes(),
                Format::Svg => profile.flamegraph(metric.metric()).into_bytes(),
            };
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&bytes).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(fail(format!("cannot write to the standard output: {e}")));
                }
                _ => return Ok(String::new()),
            }
        }
    };
    let what = match to {
        Format::Dhat => {
            profile.write_dhat(out)?;
            "DHAT JSON".to_string()
        }
        Format::Pprof => {
            match &snapshot {
                Some(s) => s.write_pprof(out)?,
                None => profile.write_pprof(out)?,
            }
            "gzipped pprof".to_string()
        }
        Format::Folded => {
            let text = profile.folded(metric.metric());
            write_file(out, text.as_bytes())?;
            format!("collapsed stacks of {}", metric.describe())
        }
        Format::Svg => {
            profile.write_flamegraph(out, metric.metric())?;
            format!("flame graph of {}", metric.describe())
        }
    };
    Ok(format!(
        "Wrote {}: {what}, {} sites\n",
        out.display(),
        profile.sites().len()
    ))
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed over
/// it once complete.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let err = |e: std::io::Error| fail(format!("cannot write {}: {e}", path.display()));
    let name = path.file_name().ok_or_else(|| {
        fail(format!(
            "cannot write {}: the path names no file",
            path.display()
        ))
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
