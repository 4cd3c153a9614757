//! Profiling a program with one environment variable: `TRACEALLOC`, read
//! once, at the process's first allocation, starts tracing, and the outputs
//! it names are written when the process exits. The grammar, the outputs and
//! which exits write are in `docs/profiling.md`.
//!
//! ```text
//! READ      AtomicBool: set by the first thread whose first allocator event
//!           reaches `on_first_event` (alloc.rs, once per thread, under the
//!           guard); that thread alone reads the variable
//! ACTIVE    OnceLock<Active>: the variable's (good) value, the working
//!           directory and the pid; set once by that thread, just before it
//!           starts tracing, read by the exit hook
//! WRITTEN   AtomicBool: set by the exit hook; the outputs are written once
//!           per process
//! ```
//!
//! At the first allocation the thread holds the reentrancy guard and no
//! tracer lock (`on_slot_claimed` runs after the block is counted and before
//! it is traced, outside any tracer call): starting tracing there is what
//! `start` does under the guard anywhere else. What it must not do is go
//! through std's environment lock (the allocation may come from inside
//! `std::env::var`, which holds it) or std's `Stderr` lock: the variable is
//! read with `getenv` into a buffer on the stack, and a bad value is reported
//! with `write(2)` from a fixed buffer.

use std::ffi::CStr;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::guard::Guard;
use crate::html::Report;
use crate::method::CaptureMethod;
use crate::profile::{Metric, Profile};
use crate::scope::untraced;
use crate::session::Config;
use crate::snapshot::Snapshot;
use crate::sys;
use crate::timeline::{Sampler, Timeline};
use crate::tracer::MAX_NFRAME;

/// The variable's name.
const VAR: &CStr = c"TRACEALLOC";
/// Values longer than this are refused.
const MAX_SPEC: usize = 4096;
/// The most `out=` items.
const MAX_OUTS: usize = 8;
/// Frames kept when `frames=` is not given.
const DEFAULT_FRAMES: usize = 16;
/// The output when no `out=` is given.
const DEFAULT_OUT: &str = "tracealloc.%p.dhat.json";
/// How much of a bad value the error line quotes.
const QUOTED: usize = 256;

static READ: AtomicBool = AtomicBool::new(false);
/// The timeline `TRACEALLOC` asked for, started before `main`, stopped and
/// written at exit.
static SAMPLER: Mutex<Option<Sampler>> = Mutex::new(None);

/// Starts the timeline `TRACEALLOC` asks for, before `main`: from the
/// ELF `.init_array`, where the C library runs constructors, outside the
/// allocator (its first allocation, where the variable is otherwise read,
/// cannot spawn a thread: the spawn's blocks would be freed on the new
/// thread outside the reentrancy guard).
#[cfg(all(target_os = "linux", not(miri)))]
#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(all(target_os = "linux", not(miri)))]
extern "C" fn before_main() {
    // Never unwinds into the C library.
    let _ = catch_unwind(|| {
        let mut buf = [0u8; MAX_SPEC];
        let Some(Ok(n)) = sys::getenv_into(VAR, &mut buf) else {
            return;
        };
        // A bad value is reported once, by the activation.
        let Ok(Some(Spec {
            timeline: Some(every),
            ..
        })) = parse(&buf[..n])
        else {
            return;
        };
        // One allocation, so that the allocator has seen the process (and
        // read the variable) if it is installed; if it is not, nothing.
        drop(std::hint::black_box(Box::new(0u8)));
        if !crate::counters::is_installed() {
            return;
        }
        let mut slot = SAMPLER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Timeline::start(every));
        }
    });
}

static ACTIVE: OnceLock<Active> = OnceLock::new();
static WRITTEN: AtomicBool = AtomicBool::new(false);

/// What the exit hook needs: the value, checked when tracing started.
struct Active {
    spec: Vec<u8>,
    /// Where relative `out=` paths go: the working directory when tracing
    /// started (as valgrind does), `None` if it could not be read.
    cwd: Option<PathBuf>,
    /// The process that started tracing: a forked child writes only the
    /// outputs whose paths hold `%p`.
    pid: u32,
}

/// Called on the first allocator event of each thread, after it was
/// counted, under the guard, with no tracer lock held: the first call in
/// the process reads `TRACEALLOC`. A relaxed load after that.
#[inline]
pub(crate) fn on_first_event(g: &Guard) {
    if READ.load(Relaxed) || READ.swap(true, Relaxed) {
        return;
    }
    activate(g);
}

/// Reads the variable; starts tracing and arms the exit hook if it is set
/// and good, reports it if it is bad. Never panics, never unwinds.
#[cold]
#[inline(never)]
fn activate(_g: &Guard) {
    let mut buf = [0u8; MAX_SPEC];
    let raw = match sys::getenv_into(VAR, &mut buf) {
        None => return,
        Some(Ok(n)) => &buf[..n],
        Some(Err(n)) => return report_bad(&buf, &ParseError::TooLong(n)),
    };
    let spec = match parse(raw) {
        Ok(Some(spec)) => spec,
        Ok(None) => return,
        Err(err) => return report_bad(raw, &err),
    };
    // Allocations from here on are the tracer's (the caller holds the
    // guard): the copy of the value and the working directory are kept for
    // the exit hook, never freed.
    let active = Active {
        spec: raw.to_vec(),
        cwd: std::env::current_dir().ok(),
        pid: std::process::id(),
    };
    if ACTIVE.set(active).is_err() || !sys::on_exit(at_exit) {
        return report_bad(raw, &"the exit hook (atexit) could not be registered");
    }
    let mut config = Config::new()
        .frames(spec.frames)
        .sample_bytes(spec.sample_bytes);
    if let Some(method) = spec.capture {
        config = config.capture(method);
    }
    // Cannot panic (the value was checked, and a counted event proved the
    // allocator installed); caught all the same: the allocator must not
    // unwind.
    if catch_unwind(AssertUnwindSafe(|| config.start())).is_err() {
        report_bad(raw, &"tracing could not start (see the message above)");
    }
}

// ---------------------------------------------------------------------------
// The grammar: `key=value` items separated by commas.

/// What to write at exit, chosen by the end of the file's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `.dhat.json`: DHAT's JSON, for valgrind's `dh_view.html`.
    Dhat,
    /// `.pb.gz`: gzipped pprof protobuf (feature `pprof`).
    Pprof,
    /// `.folded`: collapsed stacks, bytes allocated per stack.
    Folded,
    /// `.svg`: a flame graph of bytes allocated (feature `flamegraph`).
    Svg,
    /// `.profile.json`: the whole-run profile saved for `Profile::load` and
    /// the `tracealloc` command-line tool.
    Profile,
    /// `.timeline.json`: the timeline (`Timeline::load`); it turns the
    /// timeline on.
    Timeline,
    /// `.html`: one report: the timeline (if on), the live blocks at exit
    /// by line, the line tables of `#[tracealloc::profile]` functions.
    Html,
    /// `.json` (other than `.dhat.json`): a snapshot dump of the blocks
    /// live at exit, for `Snapshot::load`.
    Snapshot,
}

impl Kind {
    /// The kind for a file name, by its ending (ASCII case ignored).
    fn of(path: &str) -> Option<Kind> {
        let ends = |suffix: &str| {
            path.len() > suffix.len()
                && path.as_bytes()[path.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        };
        [
            (".dhat.json", Kind::Dhat),
            (".profile.json", Kind::Profile),
            (".timeline.json", Kind::Timeline),
            (".html", Kind::Html),
            (".pb.gz", Kind::Pprof),
            (".folded", Kind::Folded),
            (".svg", Kind::Svg),
            (".json", Kind::Snapshot),
        ]
        .into_iter()
        .find(|(suffix, _)| ends(suffix))
        .map(|(_, kind)| kind)
    }

    /// The cargo feature this kind needs, when it is not built in.
    fn missing_feature(self) -> Option<&'static str> {
        match self {
            Kind::Pprof if !cfg!(feature = "pprof") => Some("pprof"),
            Kind::Svg if !cfg!(feature = "flamegraph") => Some("flamegraph"),
            _ => None,
        }
    }
}

/// One `out=` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Output<'a> {
    /// As written, with its `%p` and `%%` escapes.
    path: &'a str,
    kind: Kind,
}

impl Output<'_> {
    /// Whether the path holds `%p` (each process then has its own file).
    fn has_pid(&self) -> bool {
        let mut chars = self.path.chars();
        while let Some(c) = chars.next() {
            if c == '%' && chars.next() == Some('p') {
                return true;
            }
        }
        false
    }

    /// The path with `%p` replaced by `pid` and `%%` by `%`; relative to
    /// `cwd` when it is relative and `cwd` is known.
    fn resolve(&self, pid: u32, cwd: Option<&Path>) -> PathBuf {
        let mut s = String::with_capacity(self.path.len() + 8);
        let mut chars = self.path.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                s.push(c);
            } else if chars.next() == Some('p') {
                let _ = write!(s, "{pid}");
            } else {
                // `%%` (`parse` let no other escape through).
                s.push('%');
            }
        }
        match cwd {
            Some(dir) => dir.join(s),
            None => PathBuf::from(s),
        }
    }
}

/// A good value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec<'a> {
    frames: usize,
    /// 0: every block.
    sample_bytes: u64,
    /// `None`: chosen by `start`.
    capture: Option<CaptureMethod>,
    /// The timeline's interval, when one is to run (`timeline=`, or a
    /// `.timeline.json` output: every 10 ms).
    timeline: Option<Duration>,
    outs: [Option<Output<'a>>; MAX_OUTS],
}

impl<'a> Spec<'a> {
    fn outs(&self) -> impl Iterator<Item = Output<'a>> + Clone + '_ {
        self.outs.iter().flatten().copied()
    }
}

/// What is wrong with a value. Displayed without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ParseError<'a> {
    TooLong(usize),
    NotUtf8,
    EmptyItem,
    NotKeyValue(&'a str),
    /// A path with `=` or `;`: items joined with the wrong separator.
    Separator(&'a str),
    /// A bad `timeline=` interval.
    Timeline(&'a str),
    UnknownKey(&'a str),
    EmptyValue(&'a str),
    Twice(&'a str),
    Frames(&'a str),
    Size(&'a str, SizeError),
    Capture(&'a str),
    OutKind(&'a str),
    OutFeature(&'a str, &'static str),
    OutEscape(&'a str),
    TooManyOuts,
}

/// Why a size does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SizeError {
    NoNumber,
    Suffix,
    TooLarge,
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::TooLong(n) => write!(f, "{n} bytes long, over the limit of {MAX_SPEC}"),
            ParseError::NotUtf8 => f.write_str("not UTF-8"),
            ParseError::EmptyItem => f.write_str("an empty item between commas"),
            ParseError::NotKeyValue(item) if Kind::of(item).is_some() => {
                write!(f, "`{item}` is not key=value (did you mean out={item}?)")
            }
            ParseError::NotKeyValue(item) => write!(f, "`{item}` is not key=value"),
            ParseError::Timeline(v) => write!(
                f,
                "timeline={v}: an interval such as 10ms, 1s or 500us (at least 100us)"
            ),
            ParseError::Separator(p) => write!(
                f,
                "out={p}: a path with `=` or `;` (separate items with `,`)"
            ),
            ParseError::UnknownKey(key) => write!(
                f,
                "unknown key `{key}` (the keys are frames, sample, capture, timeline and out)"
            ),
            ParseError::EmptyValue(key) => write!(f, "`{key}=` needs a value"),
            ParseError::Twice(key) => write!(f, "`{key}` given twice"),
            ParseError::Frames(v) => write!(
                f,
                "frames={v}: the frame limit must be a whole number from 1 to {MAX_NFRAME}"
            ),
            ParseError::Size(v, SizeError::NoNumber) => {
                write!(
                    f,
                    "sample={v}: a size must start with a whole number of bytes"
                )
            }
            ParseError::Size(v, SizeError::Suffix) => write!(
                f,
                "sample={v}: unknown size suffix (use k, m, g or KiB, MiB, GiB: powers of 1024)"
            ),
            ParseError::Size(v, SizeError::TooLarge) => {
                write!(f, "sample={v}: too large (at most 2^64 - 1 bytes)")
            }
            ParseError::Capture(v) => write!(f, "capture={v}: use fp, unwind or auto"),
            ParseError::OutKind(p) => write!(
                f,
                "out={p}: the file name must end in .dhat.json, .profile.json, .timeline.json, \
                 .html, .pb.gz, .folded, .svg or .json (it chooses the format)"
            ),
            ParseError::OutFeature(p, feature) => write!(
                f,
                "out={p}: this format needs tracealloc's `{feature}` cargo feature, which this \
                 program was built without"
            ),
            ParseError::OutEscape(p) => write!(
                f,
                "out={p}: `%` must be followed by `p` (the process id) or `%` (a `%`)"
            ),
            ParseError::TooManyOuts => write!(f, "more than {MAX_OUTS} out= items"),
        }
    }
}

/// Reads a value: `Ok(None)` when it is empty or only blanks (as if unset).
fn parse(raw: &[u8]) -> Result<Option<Spec<'_>>, ParseError<'_>> {
    let text = std::str::from_utf8(raw).map_err(|_| ParseError::NotUtf8)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut frames = None;
    let mut sample_bytes = None;
    let mut capture = None;
    let mut timeline = None;
    let mut outs = [None; MAX_OUTS];
    let mut n_outs = 0;
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ParseError::EmptyItem);
        }
        let (key, value) = item.split_once('=').ok_or(ParseError::NotKeyValue(item))?;
        let (key, value) = (key.trim(), value.trim());
        if !matches!(key, "frames" | "sample" | "capture" | "timeline" | "out") {
            return Err(ParseError::UnknownKey(key));
        }
        if value.is_empty() {
            return Err(ParseError::EmptyValue(key));
        }
        let once = |set: bool| {
            if set {
                Err(ParseError::Twice(key))
            } else {
                Ok(())
            }
        };
        match key {
            "frames" => {
                once(frames.is_some())?;
                let n = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<usize>().ok())
                    .flatten()
                    .filter(|n| (1..=MAX_NFRAME).contains(n))
                    .ok_or(ParseError::Frames(value))?;
                frames = Some(n);
            }
            "sample" => {
                once(sample_bytes.is_some())?;
                sample_bytes = Some(parse_size(value).map_err(|e| ParseError::Size(value, e))?);
            }
            "timeline" => {
                once(timeline.is_some())?;
                timeline = Some(parse_interval(value).ok_or(ParseError::Timeline(value))?);
            }
            "capture" => {
                once(capture.is_some())?;
                capture = Some(match value {
                    "fp" => Some(CaptureMethod::FramePointers),
                    "unwind" => Some(CaptureMethod::Unwinder),
                    "auto" => None,
                    _ => return Err(ParseError::Capture(value)),
                });
            }
            _ => {
                if value.contains(['=', ';']) {
                    return Err(ParseError::Separator(value));
                }
                let kind = Kind::of(value).ok_or(ParseError::OutKind(value))?;
                if let Some(feature) = kind.missing_feature() {
                    return Err(ParseError::OutFeature(value, feature));
                }
                check_escapes(value)?;
                let slot = outs.get_mut(n_outs).ok_or(ParseError::TooManyOuts)?;
                *slot = Some(Output { path: value, kind });
                n_outs += 1;
            }
        }
    }
    if n_outs == 0 {
        outs[0] = Some(Output {
            path: DEFAULT_OUT,
            kind: Kind::Dhat,
        });
    }
    Ok(Some(Spec {
        frames: frames.unwrap_or(DEFAULT_FRAMES),
        sample_bytes: sample_bytes.unwrap_or(0),
        capture: capture.flatten(),
        timeline: timeline.or_else(|| {
            outs.iter()
                .flatten()
                .any(|o| o.kind == Kind::Timeline)
                .then_some(Duration::from_millis(10))
        }),
        outs,
    }))
}

/// `10ms`, `1s`, `500us`: at least 100 µs, at most an hour.
fn parse_interval(v: &str) -> Option<Duration> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = v[..digits].parse().ok()?;
    let d = match v[digits..].trim() {
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return None,
    };
    (Duration::from_micros(100)..=Duration::from_secs(3600))
        .contains(&d)
        .then_some(d)
}

/// Only `%p` and `%%` after a `%`.
fn check_escapes(path: &str) -> Result<(), ParseError<'_>> {
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c == '%' && !matches!(chars.next(), Some('p' | '%')) {
            return Err(ParseError::OutEscape(path));
        }
    }
    Ok(())
}

/// A size in bytes: a whole number, then nothing or one of `k`, `m`, `g`,
/// `KiB`, `MiB`, `GiB` (ASCII case ignored; powers of 1024).
fn parse_size(v: &str) -> Result<u64, SizeError> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(SizeError::NoNumber);
    }
    let (number, suffix) = v.split_at(digits);
    let shift = [
        ("", 0),
        ("k", 10),
        ("kib", 10),
        ("m", 20),
        ("mib", 20),
        ("g", 30),
        ("gib", 30),
    ]
    .into_iter()
    .find(|(s, _)| suffix.eq_ignore_ascii_case(s))
    .map(|(_, shift)| shift)
    .ok_or(SizeError::Suffix)?;
    let n: u64 = number.parse().map_err(|_| SizeError::TooLarge)?;
    n.checked_mul(1 << shift).ok_or(SizeError::TooLarge)
}

// ---------------------------------------------------------------------------
// Reporting without allocating.

/// A line built in a fixed buffer; what does not fit is cut.
struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 1024],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        // One byte kept for the newline.
        let room = self.buf.len() - 1 - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Writes the line (with its newline) to the standard error at once.
    fn emit(mut self) {
        self.buf[self.len] = b'\n';
        sys::write_stderr(&self.buf[..=self.len]);
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// `tracealloc: TRACEALLOC="<value>": <what>; tracing stays off`, in one
/// `write`.
fn report_bad(raw: &[u8], what: &dyn fmt::Display) {
    bad_line(raw, what).emit();
}

/// The line [`report_bad`] writes (without its newline); a value longer
/// than [`QUOTED`] bytes is cut, with `...`.
fn bad_line(raw: &[u8], what: &dyn fmt::Display) -> Line {
    let mut line = Line::new();
    line.push(b"tracealloc: TRACEALLOC=\"");
    let shown = &raw[..raw.len().min(QUOTED)];
    for chunk in shown.utf8_chunks() {
        line.push(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            line.push("\u{fffd}".as_bytes());
        }
    }
    if shown.len() < raw.len() {
        line.push(b"...");
    }
    let _ = write!(line, "\": {what}; tracing stays off");
    line
}

/// `tracealloc: TRACEALLOC: <what>` at exit.
fn report_exit(what: &dyn fmt::Display) {
    let mut line = Line::new();
    let _ = write!(line, "tracealloc: TRACEALLOC: {what}");
    line.emit();
}

// ---------------------------------------------------------------------------
// At exit.

/// The exit hook (C's `atexit`): writes the outputs once. Never unwinds.
fn at_exit() {
    if WRITTEN.swap(true, Relaxed) {
        return;
    }
    let Some(active) = ACTIVE.get() else {
        return;
    };
    if catch_unwind(AssertUnwindSafe(|| write_outputs(active))).is_err() {
        report_exit(&"writing the outputs panicked (see the message above); some are missing");
    }
}

fn write_outputs(active: &Active) {
    let Ok(Some(spec)) = parse(&active.spec) else {
        return;
    };
    let pid = std::process::id();
    // A forked child has the parent's session (and its exit hook): it
    // writes only the outputs that get a file of their own.
    let forked = pid != active.pid;
    let outs = spec.outs().filter(|o| !forked || o.has_pid());
    if outs.clone().next().is_none() {
        return;
    }
    if !crate::session::is_tracing() {
        return report_exit(
            &"tracing was off at exit (tracealloc::stop() was called); nothing written",
        );
    }
    untraced(|| {
        let profile = outs
            .clone()
            .any(|o| o.kind != Kind::Snapshot)
            .then(crate::session::profile);
        let snapshot = outs
            .clone()
            .any(|o| matches!(o.kind, Kind::Snapshot | Kind::Html))
            .then(crate::session::take_snapshot);
        let timeline = SAMPLER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .map(crate::timeline::Sampler::stop);
        for out in outs {
            let path = out.resolve(pid, active.cwd.as_deref());
            // `target/` may not exist (CARGO_TARGET_DIR elsewhere, a
            // workspace member): the folder is made, as a user would.
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let readings = Readings {
                profile: profile.as_ref(),
                snapshot: snapshot.as_ref(),
                timeline: timeline.as_ref(),
            };
            if let Err(e) = write_output(out.kind, &path, &readings) {
                let mut line = Line::new();
                let _ = write!(line, "{e}");
                line.emit();
            }
        }
    });
}

/// What the outputs are written from.
struct Readings<'a> {
    profile: Option<&'a Profile>,
    snapshot: Option<&'a Snapshot>,
    timeline: Option<&'a Timeline>,
}

/// Writes one output; the error is the line to print.
fn write_output(kind: Kind, path: &Path, r: &Readings<'_>) -> Result<(), String> {
    let (profile, snapshot) = (r.profile, r.snapshot);
    let missing = || format!("tracealloc: TRACEALLOC: no reading for {}", path.display());
    let written = match kind {
        Kind::Timeline => r.timeline.ok_or_else(missing)?.save(path),
        Kind::Html => {
            let mut report = Report::new("tracealloc: a TRACEALLOC run");
            if let Some(t) = r.timeline {
                report = report.timeline("Timeline", t);
            }
            report = report.snapshot_top(
                "Live at exit, by line",
                snapshot.ok_or_else(missing)?,
                10,
                crate::snapshot::KeyType::Lineno,
            );
            for t in crate::line_profile::line_tables() {
                report = report.text(&format!("{}, line by line", t.function), &t.to_string());
            }
            report.write(path)
        }
        Kind::Snapshot => snapshot.ok_or_else(missing)?.dump(path),
        Kind::Dhat => profile.ok_or_else(missing)?.write_dhat(path),
        Kind::Profile => profile.ok_or_else(missing)?.save(path),
        Kind::Folded => {
            let folded = profile.ok_or_else(missing)?.folded(Metric::BytesAllocated);
            crate::dump::write_atomic(path, "write", "collapsed stacks", |w| {
                w.write_all(folded.as_bytes())
            })
        }
        #[cfg(feature = "pprof")]
        Kind::Pprof => profile.ok_or_else(missing)?.write_pprof(path),
        #[cfg(feature = "flamegraph")]
        Kind::Svg => profile
            .ok_or_else(missing)?
            .write_flamegraph(path, Metric::BytesAllocated),
        // Refused by `parse` without the feature.
        #[cfg(not(all(feature = "pprof", feature = "flamegraph")))]
        _ => return Err(missing()),
    };
    written.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outs<'a>(spec: &Spec<'a>) -> Vec<Output<'a>> {
        spec.outs().collect()
    }

    fn err(v: &str) -> String {
        parse(v.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn unset_or_blank_is_off() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"  \t"), Ok(None));
    }

    #[test]
    fn defaults() {
        let s = parse(b"frames=16").unwrap().unwrap();
        assert_eq!((s.frames, s.sample_bytes, s.capture), (16, 0, None));
        assert_eq!(
            outs(&s),
            [Output {
                path: DEFAULT_OUT,
                kind: Kind::Dhat
            }]
        );
        let s = parse(b"out=heap.json").unwrap().unwrap();
        assert_eq!((s.frames, s.sample_bytes), (DEFAULT_FRAMES, 0));
    }

    #[test]
    fn full_value() {
        let s =
            parse(b" frames = 8 , sample=512k,capture=fp,out=a.json, out=b.folded,out=c.dhat.json")
                .unwrap()
                .unwrap();
        assert_eq!(s.frames, 8);
        assert_eq!(s.sample_bytes, 512 * 1024);
        assert_eq!(s.capture, Some(CaptureMethod::FramePointers));
        let kinds: Vec<_> = s.outs().map(|o| (o.path, o.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a.json", Kind::Snapshot),
                ("b.folded", Kind::Folded),
                ("c.dhat.json", Kind::Dhat)
            ]
        );
        let s = parse(b"capture=unwind").unwrap().unwrap();
        assert_eq!(s.capture, Some(CaptureMethod::Unwinder));
        let s = parse(b"capture=auto").unwrap().unwrap();
        assert_eq!(s.capture, None);
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(Kind::of("x.dhat.json"), Some(Kind::Dhat));
        assert_eq!(Kind::of("X.DHAT.JSON"), Some(Kind::Dhat));
        assert_eq!(Kind::of("dir.dhat.json/x.json"), Some(Kind::Snapshot));
        assert_eq!(Kind::of("x.pb.gz"), Some(Kind::Pprof));
        assert_eq!(Kind::of("x.folded"), Some(Kind::Folded));
        assert_eq!(Kind::of("x.svg"), Some(Kind::Svg));
        assert_eq!(Kind::of("x.json"), Some(Kind::Snapshot));
        assert_eq!(Kind::of(".json"), None);
        assert_eq!(Kind::of("x.gz"), None);
        assert_eq!(Kind::of("x"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("3m"), Ok(3 << 20));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::TooLarge));
        assert_eq!(parse_size("17179869184g"), Err(SizeError::TooLarge));
        assert_eq!(parse_size("k"), Err(SizeError::NoNumber));
        assert_eq!(parse_size("-1"), Err(SizeError::NoNumber));
        assert_eq!(parse_size("+1"), Err(SizeError::NoNumber));
        assert_eq!(parse_size("1kb"), Err(SizeError::Suffix));
        assert_eq!(parse_size("1 k"), Err(SizeError::Suffix));
        assert_eq!(parse_size("1.5m"), Err(SizeError::Suffix));
        assert_eq!(parse_size("1t"), Err(SizeError::Suffix));
        assert_eq!(parse_size("1é"), Err(SizeError::Suffix));
    }

    #[test]
    fn sample_zero_traces_every_block() {
        let s = parse(b"sample=0").unwrap().unwrap();
        assert_eq!(s.sample_bytes, 0);
    }

    #[test]
    fn frames_range() {
        assert_eq!(parse(b"frames=1").unwrap().unwrap().frames, 1);
        let max = format!("frames={MAX_NFRAME}");
        assert_eq!(parse(max.as_bytes()).unwrap().unwrap().frames, MAX_NFRAME);
        for bad in ["0", "257", "+3", "-1", "3x", "99999999999999999999999"] {
            let v = format!("frames={bad}");
            assert_eq!(
                err(&v),
                format!("frames={bad}: the frame limit must be a whole number from 1 to 256"),
            );
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(err("frames=16,,out=a.json"), "an empty item between commas");
        assert_eq!(err("frames=16,"), "an empty item between commas");
        assert_eq!(err("frames"), "`frames` is not key=value");
        assert_eq!(
            err("heap.dhat.json"),
            "`heap.dhat.json` is not key=value (did you mean out=heap.dhat.json?)"
        );
        assert_eq!(
            err("out=a.dhat.json;out=b.folded"),
            "out=a.dhat.json;out=b.folded: a path with `=` or `;` (separate items with `,`)"
        );
        assert_eq!(
            err("depth=3"),
            "unknown key `depth` (the keys are frames, sample, capture, timeline and out)"
        );
        assert_eq!(err("out="), "`out=` needs a value");
        assert_eq!(err("sample= "), "`sample=` needs a value");
        assert_eq!(err("frames=2,frames=3"), "`frames` given twice");
        assert_eq!(err("capture=fp,capture=fp"), "`capture` given twice");
        assert_eq!(
            err("sample=1kb"),
            "sample=1kb: unknown size suffix (use k, m, g or KiB, MiB, GiB: powers of 1024)"
        );
        assert_eq!(
            err("sample=k"),
            "sample=k: a size must start with a whole number of bytes"
        );
        assert_eq!(
            err("capture=dwarf"),
            "capture=dwarf: use fp, unwind or auto"
        );
        assert!(err("out=heap.txt").starts_with("out=heap.txt: the file name must end in"));
        assert_eq!(
            err("out=heap.%d.json"),
            "out=heap.%d.json: `%` must be followed by `p` (the process id) or `%` (a `%`)"
        );
        assert!(err("out=heap%.json").starts_with("out=heap%.json: `%`"));
        assert_eq!(
            parse(&[b'o', b'u', b't', b'=', 0xff]),
            Err(ParseError::NotUtf8)
        );
        let many = ["out=a.json"; MAX_OUTS + 1].join(",");
        assert_eq!(err(&many), "more than 8 out= items");
        let ok = ["out=a.json"; MAX_OUTS].join(",");
        assert_eq!(
            parse(ok.as_bytes()).unwrap().unwrap().outs().count(),
            MAX_OUTS
        );
    }

    #[test]
    fn outputs_that_need_a_feature() {
        let pprof = parse(b"out=heap.pb.gz");
        let svg = parse(b"out=heap.svg");
        if cfg!(feature = "pprof") {
            assert!(pprof.is_ok());
        } else {
            assert_eq!(
                pprof.unwrap_err().to_string(),
                "out=heap.pb.gz: this format needs tracealloc's `pprof` cargo feature, which \
                 this program was built without"
            );
        }
        if cfg!(feature = "flamegraph") {
            assert!(svg.is_ok());
        } else {
            assert_eq!(
                svg.unwrap_err(),
                ParseError::OutFeature("heap.svg", "flamegraph")
            );
        }
    }

    #[test]
    fn pid_escapes() {
        let out = |path| Output {
            path,
            kind: Kind::Snapshot,
        };
        assert!(out("heap.%p.json").has_pid());
        assert!(!out("heap.json").has_pid());
        assert!(!out("heap.%%p.json").has_pid());
        assert!(out("heap.%%%p.json").has_pid());
        assert_eq!(
            out("t/heap.%p.json").resolve(42, None),
            PathBuf::from("t/heap.42.json")
        );
        assert_eq!(
            out("heap.%%p.%p.json").resolve(7, Some(Path::new("/w"))),
            PathBuf::from("/w/heap.%p.7.json")
        );
        assert_eq!(
            out("/abs/heap.json").resolve(7, Some(Path::new("/w"))),
            PathBuf::from("/abs/heap.json")
        );
    }

    #[test]
    fn error_line_is_one_line_and_cut_to_size() {
        let mut line = Line::new();
        line.push(&[b'x'; 5000]);
        assert_eq!(line.len, 1023);

        let raw = b"frames=0,out=a.json";
        let e = parse(raw).unwrap_err();
        let l = bad_line(raw, &e);
        assert_eq!(
            std::str::from_utf8(&l.buf[..l.len]).unwrap(),
            "tracealloc: TRACEALLOC=\"frames=0,out=a.json\": frames=0: the frame limit must \
             be a whole number from 1 to 256; tracing stays off"
        );

        let mut long = b"out=".to_vec();
        long.extend([b'a'; 600]);
        long.push(0xff);
        let l = bad_line(&long, &ParseError::NotUtf8);
        let text = std::str::from_utf8(&l.buf[..l.len]).unwrap();
        let quoted = format!("\"out={}...\"", "a".repeat(QUOTED - 4));
        assert_eq!(
            text,
            format!("tracealloc: TRACEALLOC={quoted}: not UTF-8; tracing stays off")
        );
        let l = bad_line(b"out=\xffx", &ParseError::NotUtf8);
        assert_eq!(
            std::str::from_utf8(&l.buf[..l.len]).unwrap(),
            "tracealloc: TRACEALLOC=\"out=\u{fffd}x\": not UTF-8; tracing stays off"
        );
    }
}
