//! The allocation assertions: `assert_no_alloc!`, `assert_max_allocs!`,
//! `assert_allocs!`, `assert_max_bytes!`, `assert_no_leak!` and
//! `assert_alloc_baseline!`, and what they share.
//!
//! Each runs its expression in an assertion scope: a [`measure`] of the
//! calling thread that also records where that thread's allocations are
//! made (the tracer's `sites`), so that a failure names the lines. The
//! figures are the counters', exact whether or not a tracing session runs
//! or samples; the sites are recorded for this thread only, while the scope
//! is open, and symbolized only when an assertion fails.
//!
//! [`measure`]: crate::measure

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::{Range, RangeFrom, RangeInclusive, RangeTo, RangeToInclusive};
use std::panic::Location;
use std::path::Path;

use crate::counters::{require_installed, unmeasured, Delta, MeasureScope};
use crate::frame::{Frame, Traceback};
use crate::guard::{Guard, Internal};
use crate::symbols;
use crate::tracer::stacks::StackId;
use crate::tracer::{self, sites};

/// Frames of the calls under a line shown at most (the standard library's
/// count as one); the rest are counted.
const PATH_FRAMES: usize = 8;
/// Sites listed in a message; the rest are summed in one line.
const MAX_SITES: usize = 12;

/// What an assertion scope saw: the thread's figures, and the allocations
/// it recorded.
#[doc(hidden)]
pub struct __Outcome {
    delta: Delta,
    records: Vec<sites::Record>,
    lost: u64,
    /// Where the assertion is written.
    at: &'static Location<'static>,
    /// Whether the asserted expression's own lines are trusted (an
    /// unoptimized build of the caller: see [`describe`]).
    lines: bool,
}

impl Drop for __Outcome {
    fn drop(&mut self) {
        // The records were copied under the guard: tracer memory.
        let _guard = Guard::hold();
        drop(std::mem::take(&mut self.records));
    }
}

/// Runs `f` in an assertion scope; not public API. `lines`: the caller's
/// build is not optimized (see [`describe`]); `settle`: wait for other
/// threads' frees when something is still live at the end
/// (`assert_no_leak!`).
#[doc(hidden)]
#[track_caller]
pub fn __assert_scope<R>(
    what: &str,
    lines: bool,
    settle: bool,
    f: impl FnOnce() -> R,
) -> (R, __Outcome) {
    scope(what, lines, f, settle)
}

/// How long `assert_no_leak!` waits for other threads to free what the
/// expression handed them, when something it allocated is still live at
/// its end.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

#[track_caller]
fn scope<R>(what: &str, lines: bool, f: impl FnOnce() -> R, settle: bool) -> (R, __Outcome) {
    /// Ends the scope's part of the recording, also when `f` panics (a
    /// recording left open would hold the thread's next assertions).
    struct Open(Option<sites::Mark>);
    impl Open {
        fn take(&mut self) -> (Vec<sites::Record>, u64) {
            let g = Guard::hold();
            self.0
                .take()
                .map_or((Vec::new(), 0), |m| sites::take(&g, m))
        }
    }
    impl Drop for Open {
        fn drop(&mut self) {
            let _guard = Guard::hold();
            drop(self.take());
        }
    }
    let mut open = {
        let g = Guard::hold();
        tracer::prepare_capture(&g);
        Open(Some(sites::begin(&g)))
    };
    let scope = MeasureScope::begin_recording_sites();
    let r = f();
    let delta = scope.delta();
    if settle {
        // A thread the expression started may free what it was handed a
        // moment after the expression's end (`std::thread::scope`'s
        // bookkeeping is freed as the thread exits): waited for, briefly,
        // and only when something is still live.
        let start = std::time::Instant::now();
        while open
            .0
            .is_some_and(|m| sites::live_since(&Guard::hold(), m) > 0)
            && start.elapsed() < SETTLE
        {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    let (records, lost) = open.take();
    drop(scope);
    require_installed(what);
    (
        r,
        __Outcome {
            delta,
            records,
            lost,
            at: Location::caller(),
            lines,
        },
    )
}

/// How many allocations an assertion allows: a count, or a range of them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct __Bound {
    min: u64,
    max: u64,
}

/// What `assert_allocs!` takes as its bound: an integer (exactly that many),
/// or a range of integers (`2..=4`, `..3`, `1..`).
pub trait AllocBound {
    #[doc(hidden)]
    fn __bound(self) -> __Bound;
}

fn count(n: i128) -> u64 {
    n.clamp(0, u64::MAX as i128) as u64
}

/// The bound from `min..=max` (as wide integers); an empty range (`5..3`,
/// `..0`) can hold no count, and is refused.
#[track_caller]
fn range(min: i128, max: i128) -> __Bound {
    if min > max || max < 0 {
        panic!("tracealloc: an allocation bound of {min}..={max} holds no count");
    }
    __Bound {
        min: count(min),
        max: count(max),
    }
}

macro_rules! bounds {
    ($($t:ty),*) => {$(
        impl AllocBound for $t {
            fn __bound(self) -> __Bound {
                range(self as i128, self as i128)
            }
        }
        impl AllocBound for RangeInclusive<$t> {
            fn __bound(self) -> __Bound {
                range(*self.start() as i128, *self.end() as i128)
            }
        }
        impl AllocBound for Range<$t> {
            fn __bound(self) -> __Bound {
                range(self.start as i128, self.end as i128 - 1)
            }
        }
        impl AllocBound for RangeFrom<$t> {
            fn __bound(self) -> __Bound {
                range(self.start as i128, u64::MAX as i128)
            }
        }
        impl AllocBound for RangeTo<$t> {
            fn __bound(self) -> __Bound {
                range(0, self.end as i128 - 1)
            }
        }
        impl AllocBound for RangeToInclusive<$t> {
            fn __bound(self) -> __Bound {
                range(0, self.end as i128)
            }
        }
    )*};
}
bounds!(i32, i64, u32, u64, usize);

/// Support for the macros; not public API.
#[doc(hidden)]
pub fn __bound(b: impl AllocBound) -> __Bound {
    b.__bound()
}

/// Support for the macros; not public API.
#[doc(hidden)]
pub fn __at_most(max: impl AllocBound) -> __Bound {
    __Bound {
        min: 0,
        max: max.__bound().max,
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn expected(b: __Bound) -> String {
    match (b.min, b.max) {
        (0, 0) => "none".to_string(),
        (0, max) => format!("at most {max}"),
        (min, u64::MAX) => format!("at least {min}"),
        (min, max) if min == max => format!("exactly {min}"),
        (min, max) => format!("{min} to {max}"),
    }
}

/// Support for the count assertions; not public API.
#[doc(hidden)]
#[track_caller]
pub fn __check_allocs(o: &__Outcome, bound: __Bound, what: &str) {
    let made = o.delta.allocs.saturating_add(o.delta.reallocs);
    if made < bound.min || made > bound.max {
        let kinds = if o.delta.reallocs == 0 {
            String::new()
        } else {
            format!(
                " ({} and {})",
                plural(o.delta.allocs, "new block", "new blocks"),
                plural(o.delta.reallocs, "realloc", "reallocs")
            )
        };
        let head = format!(
            "tracealloc: `{}` made {}{kinds}, {} expected: {}",
            one_line(what),
            plural(made, "allocation", "allocations"),
            expected(bound),
            o.delta
        );
        fail(&head, o, false);
    }
}

/// Support for `assert_max_bytes!`; not public API.
#[doc(hidden)]
#[track_caller]
pub fn __check_max_bytes(o: &__Outcome, max: u64, what: &str) {
    if o.delta.peak_bytes > max {
        let head = format!(
            "tracealloc: `{}` grew this thread's heap by {} B at its peak, at most {max} B expected: {}",
            one_line(what),
            o.delta.peak_bytes,
            o.delta
        );
        fail(&head, o, false);
    }
}

/// Support for `assert_no_leak!`; not public API.
#[doc(hidden)]
#[track_caller]
pub fn __check_no_leak(o: &__Outcome, what: &str) {
    let (blocks, bytes) = live(o);
    if blocks > 0 {
        let head = format!(
            "tracealloc: `{}` left {} of {} B live that it allocated (and its value was dropped): {}",
            one_line(what),
            plural(blocks, "block", "blocks"),
            bytes,
            o.delta
        );
        fail(&head, o, true);
    } else if o.lost > 0 {
        // What was not recorded may be live: a pass would be a guess.
        let head = format!(
            "tracealloc: `{}` cannot be checked for leaks: {} of its allocations could not be recorded (over {} in one assertion, or the tracer's memory was refused); assert on a smaller part: {}",
            one_line(what),
            o.lost,
            sites::MAX_RECORDS,
            o.delta
        );
        fail(&head, o, false);
    }
}

/// The expression's text on one line (`stringify!` keeps some line breaks).
fn one_line(what: &str) -> String {
    what.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The recorded blocks still live at the end: count and bytes.
fn live(o: &__Outcome) -> (u64, u64) {
    o.records
        .iter()
        .map(sites::Record::live_bytes)
        .filter(|&b| b > 0)
        .fold((0, 0), |(n, b), size| (n + 1, b + size as u64))
}

#[cold]
#[track_caller]
fn fail(head: &str, o: &__Outcome, live_only: bool) -> ! {
    let mut msg = head.to_string();
    msg.push_str(&sites_text(o, live_only));
    panic!("{msg}");
}

/// The message's list of sites: per line that allocated (the first frame
/// that is not this crate's nor the standard library's), its allocations
/// and bytes, and under it each path of calls that reached it, down to the
/// asserted expression; most allocations first.
fn sites_text(o: &__Outcome, live_only: bool) -> String {
    let mut by_stack: HashMap<Option<StackId>, (u64, u64)> = HashMap::new();
    for r in o
        .records
        .iter()
        .filter(|r| !live_only || r.live_bytes() > 0)
    {
        let e = by_stack.entry(r.stack).or_default();
        e.0 += 1;
        // Live blocks by the bytes of them allocated inside; the rest as
        // the counters count bytes allocated (a `realloc` by its growth).
        e.1 += if live_only { r.live_bytes() } else { r.grown } as u64;
    }
    let stacks: Vec<_> = by_stack.into_iter().collect();
    let tracebacks: Internal<Vec<Option<Traceback>>> = Internal::make(|g| {
        stacks
            .iter()
            .map(|(id, _)| id.map(|id| symbols::traceback(g, id, tracer::SITE_FRAMES)))
            .collect()
    });
    // Per line: its figures and its paths (what is shown under it, with
    // figures).
    /// A path under a line: its text, allocations and bytes.
    type Path = (String, u64, u64);
    /// A line: its text (`None`: no stack), allocations, bytes, paths.
    type Line = (Option<String>, u64, u64, Vec<Path>);
    let mut lines: Vec<Line> = Vec::new();
    for ((_, (n, bytes)), tb) in stacks.iter().zip(tracebacks.iter()) {
        let frames = tb.as_ref().map_or(&[][..], |t| t.frames());
        let (top, under) = describe(frames, o.at, o.lines);
        match lines.iter_mut().find(|l| l.0 == top) {
            Some(l) => {
                l.1 += n;
                l.2 += bytes;
                // Stacks that differ only in frames not shown are one path.
                match l.3.iter_mut().find(|p| p.0 == under) {
                    Some(p) => {
                        p.1 += n;
                        p.2 += bytes;
                    }
                    None => l.3.push((under, *n, *bytes)),
                }
            }
            None => lines.push((top, *n, *bytes, vec![(under, *n, *bytes)])),
        }
    }
    lines.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    let mut out = String::new();
    if !lines.is_empty() {
        out.push_str(if live_only {
            "\n  still live, allocated on this thread at:"
        } else {
            "\n  allocated on this thread at:"
        });
    }
    for (top, n, bytes, paths) in lines.iter_mut().take(MAX_SITES) {
        let _ = write!(
            out,
            "\n    {}, {bytes} B, at {}",
            plural(*n, "allocation", "allocations"),
            top.as_deref()
                .unwrap_or("a stack that could not be captured")
        );
        paths.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
        let several = paths.len() > 1;
        for (under, n, bytes) in paths.iter() {
            if several {
                let _ = write!(
                    out,
                    "\n      {}, {bytes} B, from:",
                    plural(*n, "allocation", "allocations")
                );
            }
            out.push_str(under);
        }
    }
    if lines.len() > MAX_SITES {
        let (n, bytes) = lines[MAX_SITES..]
            .iter()
            .fold((0, 0), |(n, b), l| (n + l.1, b + l.2));
        let _ = write!(
            out,
            "\n    and {} more ({}, {bytes} B)",
            plural((lines.len() - MAX_SITES) as u64, "line", "lines"),
            plural(n, "allocation", "allocations")
        );
    }
    if o.lost > 0 {
        let _ = write!(
            out,
            "\n    and {} not recorded (over {} in one assertion, or the tracer's memory was refused)",
            plural(o.lost, "allocation", "allocations"),
            sites::MAX_RECORDS
        );
    }
    out
}

/// A stack's line (the first frame, or the asserted expression when the
/// allocation is written in it) and the calls under it as message lines:
/// down to the asserted expression, with runs of the standard library's
/// frames folded into one line, at most [`PATH_FRAMES`]. The expression's
/// frame gives its own line where `lines` says the caller's build is not
/// optimized; otherwise the assertion's location: an optimized build may
/// fold the identical closures of several tests into one, whose line then
/// names another test.
fn describe(frames: &[Frame], at: &Location<'_>, lines: bool) -> (Option<String>, String) {
    let assertion = format!("{}:{} (the asserted expression)", at.file(), at.line());
    let expression = |f: &Frame| {
        if lines {
            format!("{f} (in the asserted expression)")
        } else {
            assertion.clone()
        }
    };
    let name = |f: &Frame| format!("{f} ({})", f.function());
    let Some(first) = frames.first() else {
        return (None, String::new());
    };
    // The assertion's scope; above it (past the standard library's call
    // shims) the asserted expression's closure, shown as the assertion's
    // location.
    let closure = frames
        .iter()
        .position(|f| f.function().contains("__assert_scope"))
        .and_then(|k| {
            // This file's frames (the scope's helpers, by the file of the
            // scope's own frame, however its path is written) and the
            // standard library's call shims are skipped.
            let ours = frames[k].path();
            (0..k)
                .rev()
                .find(|&i| !symbols::is_internal_frame(&frames[i]) && frames[i].path() != ours)
        });
    let top = if closure == Some(0) {
        expression(first)
    } else {
        let mut t = name(first);
        if let Some(hint) = first.line_hint() {
            let _ = write!(t, "\n        ({hint})");
        }
        t
    };
    let mut out = String::new();
    let end = match closure {
        Some(0) => return (Some(top), out),
        Some(c) => c,
        None => frames.len(),
    };
    let mut shown = 0;
    let mut i = 1;
    while i < end {
        if shown == PATH_FRAMES {
            let _ = write!(
                out,
                "\n        ... {} more",
                plural((end - i) as u64, "frame", "frames")
            );
            break;
        }
        let run = frames[i..end]
            .iter()
            .take_while(|f| symbols::is_internal_frame(f))
            .count();
        if run > 0 {
            let _ = write!(
                out,
                "\n        ... {} of the standard library",
                plural(run as u64, "frame", "frames")
            );
            i += run;
        } else {
            let _ = write!(out, "\n        {}", name(&frames[i]));
            i += 1;
        }
        shown += 1;
    }
    match closure {
        Some(c) => {
            let _ = write!(out, "\n        {}", expression(&frames[c]));
        }
        None => {
            let _ = write!(
                out,
                "\n        ... (deeper than {} frames)",
                tracer::SITE_FRAMES
            );
        }
    }
    (Some(top), out)
}

// ---------------------------------------------------------------------------
// Baselines.

/// The environment variable that makes `assert_alloc_baseline!` record its
/// file instead of comparing with it: `TRACEALLOC_BASELINE=record`.
pub const BASELINE_ENV: &str = "TRACEALLOC_BASELINE";

const FIGURES: [&str; 4] = ["allocations", "bytes", "peak", "live"];

fn figures(o: &__Outcome) -> [u64; 4] {
    let live_bytes = if o.lost == 0 {
        live(o).1
    } else {
        o.delta.net_bytes().max(0) as u64
    };
    [
        o.delta.allocs.saturating_add(o.delta.reallocs),
        o.delta.bytes_allocated,
        o.delta.peak_bytes,
        live_bytes,
    ]
}

fn baseline_text(what: &str, f: [u64; 4]) -> String {
    let mut s = format!(
        "# tracealloc baseline of `{}`\n# recorded with {BASELINE_ENV}=record; allocations and realloc calls, bytes allocated, the peak of net growth, and bytes allocated inside and still live at the end\n",
        what.replace('\n', " ")
    );
    for (name, v) in FIGURES.iter().zip(f) {
        let _ = writeln!(s, "{name}: {v}");
    }
    s
}

fn parse_baseline(text: &str) -> Result<[u64; 4], String> {
    let mut out = [None; 4];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {}: `{line}` is not `name: value`", i + 1));
        };
        let Some(k) = FIGURES.iter().position(|f| *f == name.trim()) else {
            return Err(format!(
                "line {}: unknown figure `{}` (known: {})",
                i + 1,
                name.trim(),
                FIGURES.join(", ")
            ));
        };
        let v = value
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("line {}: `{}`: {e}", i + 1, value.trim()))?;
        out[k] = Some(v);
    }
    let mut f = [0; 4];
    for (k, v) in out.iter().enumerate() {
        f[k] = v.ok_or_else(|| format!("no `{}:` line", FIGURES[k]))?;
    }
    Ok(f)
}

/// Support for `assert_alloc_baseline!`; not public API. `path` is relative
/// to `root` (the crate's `CARGO_MANIFEST_DIR`) unless absolute;
/// `tolerance` is a fraction (0 compares exactly).
#[doc(hidden)]
#[track_caller]
pub fn __check_baseline(o: &__Outcome, root: &str, path: &str, tolerance: f64, what: &str) {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        panic!("tracealloc: a baseline's tolerance is a fraction, 0 or more (0.1 for 10 %), not {tolerance}");
    }
    // The file's reading and writing are the assertion's work, not the
    // measured code's: an enclosing assertion does not count them.
    let outcome = unmeasured(|| baseline(o, &Path::new(root).join(path), tolerance, what));
    if let Err(head) = outcome {
        fail(&head, o, false);
    }
}

/// Compares (or records) the baseline at `path`: `Err` with the failure's
/// first line.
#[track_caller]
fn baseline(o: &__Outcome, path: &Path, tolerance: f64, what: &str) -> Result<(), String> {
    let now = figures(o);
    let shown = path.display();
    let what = one_line(what);
    match std::env::var(BASELINE_ENV) {
        Ok(v) if v == "record" => {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(path, baseline_text(&what, now)));
            if let Err(e) = written {
                panic!("tracealloc: cannot record baseline {shown}: {e}");
            }
            eprintln!("tracealloc: recorded baseline {shown}");
            return Ok(());
        }
        Ok(v) => panic!(
            "tracealloc: {BASELINE_ENV}={v:?} is not understood: set {BASELINE_ENV}=record to record the baselines, or leave it unset to compare with them"
        ),
        Err(_) => {}
    }
    let now_text = FIGURES
        .iter()
        .zip(now)
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "tracealloc: baseline {shown} does not exist; `{what}` made: {now_text}. \
                 To record it, run the test with {BASELINE_ENV}=record, and commit the file"
            ))
        }
        Err(e) => panic!("tracealloc: cannot read baseline {shown}: {e}"),
    };
    let before = parse_baseline(&text).map_err(|e| {
        format!(
            "tracealloc: baseline {shown} is not a baseline file: {e}. \
             Run the test with {BASELINE_ENV}=record to write it again"
        )
    })?;
    let changed: Vec<String> = (0..4)
        .filter(|&k| {
            let (b, n) = (before[k], now[k]);
            if tolerance == 0.0 {
                b != n
            } else {
                n as f64 > b as f64 * (1.0 + tolerance)
            }
        })
        .map(|k| format!("{}: {} -> {}", FIGURES[k], before[k], now[k]))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let allowed = if tolerance == 0.0 {
        "exactly".to_string()
    } else {
        format!("within +{}%", (tolerance * 1000.0).round() / 10.0)
    };
    Err(format!(
        "tracealloc: `{what}` no longer matches baseline {shown} ({allowed}): {}. \
         If the change is meant, run the test with {BASELINE_ENV}=record, and commit the file",
        changed.join(", ")
    ))
}

// ---------------------------------------------------------------------------
// The macros.

/// Asserts that an expression makes no allocation on this thread (no new
/// block and no `realloc`), and evaluates to its value.
///
/// The expression runs in an assertion scope (a [`measure`](crate::measure)
/// that also records where this thread allocates), in a closure: a `return`
/// or `?` in it leaves that closure, not the enclosing function. Frees are
/// allowed. On failure it panics with the figures and, per call site, the
/// allocations and bytes, the line that allocated and the calls under it.
/// Other threads are neither counted nor recorded, so it holds under the
/// parallel test runner; the counts are exact whether or not a tracing
/// session runs or samples.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let mut v = Vec::with_capacity(16);
///     tracealloc::assert_no_alloc!(v.extend_from_slice(&[1, 2, 3]));
///     let sum: i32 = tracealloc::assert_no_alloc!(v.iter().sum());
///     assert_eq!(sum, 6);
/// }
/// ```
///
/// ```should_panic
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     // panics: "tracealloc: `vec![vec![0u8; 8]; 3]` made 4 allocations, none
///     // expected: ...", then each line that allocated
///     tracealloc::assert_no_alloc!(vec![vec![0u8; 8]; 3]);
/// }
/// ```
#[macro_export]
macro_rules! assert_no_alloc {
    ($e:expr $(,)?) => {{
        let (value, outcome) = $crate::__assert_scope(
            "assert_no_alloc!",
            ::core::cfg!(debug_assertions),
            false,
            || $e,
        );
        $crate::__check_allocs(&outcome, $crate::__at_most(0), ::core::stringify!($e));
        value
    }};
}

/// Asserts that an expression makes at most `max` allocations on this thread
/// (new blocks plus `realloc`s), and evaluates to its value.
///
/// As [`assert_no_alloc!`]: the panic message gives the figures and the
/// sites.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let s = tracealloc::assert_max_allocs!(1, format!("{}-{}", 1, 2));
///     assert_eq!(s, "1-2");
/// }
/// ```
#[macro_export]
macro_rules! assert_max_allocs {
    ($max:expr, $e:expr $(,)?) => {{
        let (value, outcome) = $crate::__assert_scope(
            "assert_max_allocs!",
            ::core::cfg!(debug_assertions),
            false,
            || $e,
        );
        $crate::__check_allocs(&outcome, $crate::__at_most($max), ::core::stringify!($e));
        value
    }};
}

/// Asserts that an expression makes exactly `n` allocations on this thread,
/// or a number in a range (`2..=4`, `..3`, `1..`), and evaluates to its
/// value. Allocations are new blocks plus `realloc`s.
///
/// As [`assert_no_alloc!`]: the panic message gives the figures and the
/// sites.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let v = tracealloc::assert_allocs!(3, vec![vec![0u8; 4]; 2]);
///     assert_eq!(v.len(), 2);
///     tracealloc::assert_allocs!(1..=2, String::from("hello") + " world");
/// }
/// ```
#[macro_export]
macro_rules! assert_allocs {
    ($bound:expr, $e:expr $(,)?) => {{
        let (value, outcome) = $crate::__assert_scope(
            "assert_allocs!",
            ::core::cfg!(debug_assertions),
            false,
            || $e,
        );
        $crate::__check_allocs(&outcome, $crate::__bound($bound), ::core::stringify!($e));
        value
    }};
}

/// Asserts that an expression grows this thread's heap by at most `max`
/// bytes at its peak (the highest of bytes allocated less bytes freed at
/// any moment while it ran, as [`Delta::peak_bytes`](crate::Delta)), and
/// evaluates to its value.
///
/// As [`assert_no_alloc!`]: the panic message gives the figures and the
/// sites.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     // Two 4 KiB buffers, one after the other: 4 KiB at the peak.
///     let n = tracealloc::assert_max_bytes!(4096, {
///         let a = std::hint::black_box(vec![0u8; 4096]);
///         drop(a);
///         std::hint::black_box(vec![1u8; 4096]).len()
///     });
///     assert_eq!(n, 4096);
/// }
/// ```
#[macro_export]
macro_rules! assert_max_bytes {
    ($max:expr, $e:expr $(,)?) => {{
        let (value, outcome) = $crate::__assert_scope(
            "assert_max_bytes!",
            ::core::cfg!(debug_assertions),
            false,
            || $e,
        );
        $crate::__check_max_bytes(&outcome, $max, ::core::stringify!($e));
        value
    }};
}

/// Asserts that everything an expression allocates on this thread is freed
/// by its end, its value dropped first: nothing it made stays behind (a
/// cache it fills, a leaked box). The panic message lists the sites of the
/// blocks still live.
///
/// Blocks are followed wherever they are freed: one handed to another
/// thread and freed there is not a leak. When something is still live at
/// the end, the assertion waits up to 50 ms for other threads to free it (a
/// thread the expression started frees its bookkeeping as it exits); a
/// block freed later counts as live. Blocks the expression frees that were
/// allocated before it are fine, and a block allocated before it and grown
/// inside counts by its growth. Over 65 536 allocations the check refuses
/// (what was not recorded may be live).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::assert_no_leak!(format!("{}", 42).len());
/// }
/// ```
///
/// ```should_panic
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     // panics: "... left 1 block of 64 B live that it allocated ...", and where
///     tracealloc::assert_no_leak!(std::hint::black_box(Box::leak(Box::new([0u8; 64]))).len());
/// }
/// ```
#[macro_export]
macro_rules! assert_no_leak {
    ($e:expr $(,)?) => {{
        let ((), outcome) = $crate::__assert_scope(
            "assert_no_leak!",
            ::core::cfg!(debug_assertions),
            true,
            || {
                ::core::mem::drop($e);
            },
        );
        $crate::__check_no_leak(&outcome, ::core::stringify!($e));
    }};
}

/// Asserts that an expression's allocation figures on this thread
/// (allocations, bytes allocated, the peak of net growth, bytes still live
/// at the end) match a small committed text file, and evaluates to its
/// value. The path is relative to the crate's root (`CARGO_MANIFEST_DIR`),
/// or absolute.
///
/// Exact by default; `tolerance = 0.1` lets each figure grow by 10 % (and
/// shrink freely). A failure names each figure that changed
/// (`allocations: 3 -> 4`) and the sites. With
/// `TRACEALLOC_BASELINE=record` in the environment the file is written
/// instead, and the assertion passes; a missing file fails (it is never
/// recorded silently), and so does any other value of the variable.
///
/// # Panics
///
/// As the other assertions, and when the file cannot be read or written,
/// is not a baseline file, or the tolerance is negative or not finite.
///
/// # Examples
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let words: Vec<&str> = tracealloc::assert_alloc_baseline!(
///         "tests/baselines/split.txt",
///         "a b c".split(' ').collect()
///     );
///     assert_eq!(words.len(), 3);
///     tracealloc::assert_alloc_baseline!("tests/baselines/join.txt", words.join("-"), tolerance = 0.1);
/// }
/// ```
#[macro_export]
macro_rules! assert_alloc_baseline {
    ($path:literal, $e:expr, tolerance = $tol:expr $(,)?) => {{
        let (value, outcome) = $crate::__assert_scope(
            "assert_alloc_baseline!",
            ::core::cfg!(debug_assertions),
            false,
            || $e,
        );
        $crate::__check_baseline(
            &outcome,
            ::core::env!("CARGO_MANIFEST_DIR"),
            $path,
            $tol,
            ::core::stringify!($e),
        );
        value
    }};
    ($path:literal, $e:expr $(,)?) => {
        $crate::assert_alloc_baseline!($path, $e, tolerance = 0.0)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_from_counts_and_ranges() {
        let b = |x: __Bound| (x.min, x.max);
        assert_eq!(b(__bound(3)), (3, 3));
        assert_eq!(b(__bound(2..=4)), (2, 4));
        assert_eq!(b(__bound(2..4)), (2, 3));
        assert_eq!(b(__bound(..3)), (0, 2));
        assert_eq!(b(__bound(..=3)), (0, 3));
        assert_eq!(b(__bound(1..)), (1, u64::MAX));
        assert_eq!(b(__bound(..1)), (0, 0));
        assert_eq!(b(__at_most(5usize)), (0, 5));
        assert_eq!(expected(__bound(3)), "exactly 3");
        assert_eq!(expected(__bound(2..=4)), "2 to 4");
        assert_eq!(expected(__bound(1..)), "at least 1");
        assert_eq!(expected(__at_most(0)), "none");
        assert_eq!(expected(__at_most(2)), "at most 2");
        for empty in [
            std::panic::catch_unwind(|| {
                let (start, end) = std::hint::black_box((5, 3));
                __bound(start..end)
            }),
            std::panic::catch_unwind(|| __bound(..0)),
            std::panic::catch_unwind(|| __bound(-1)),
        ] {
            assert!(empty.is_err());
        }
    }

    #[test]
    fn baselines_round_trip_and_refuse_what_they_cannot_read() {
        let text = baseline_text("parse(&s)", [3, 120, 96, 0]);
        assert_eq!(parse_baseline(&text), Ok([3, 120, 96, 0]));
        assert!(text.contains("allocations: 3\n"), "{text}");
        let err = parse_baseline("allocations: 3\nbytes: x\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = parse_baseline("allocations: 3\nbytes: 1\npeak: 1\n").unwrap_err();
        assert_eq!(err, "no `live:` line");
        let err = parse_baseline("allocs: 3").unwrap_err();
        assert!(err.contains("unknown figure `allocs`"), "{err}");
        let err = parse_baseline("\u{0}\u{1}garbage").unwrap_err();
        assert!(err.contains("not `name: value`"), "{err}");
    }
}
