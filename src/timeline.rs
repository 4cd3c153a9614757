//! A timeline: heap, peak and RSS sampled over time, with labelled marks (mprof's `run` and `plot`).
//!
//! [`Timeline::start`] spawns a sampler thread that reads [`stats`] and
//! [`rss`] every interval; [`mark!`](crate::mark!) and the `#[profile]`
//! hooks ([`enter`] / [`exit`]) add labelled marks, each with a sample of
//! its own; [`Sampler::stop`] joins the thread and hands back the
//! [`Timeline`], which saves to a small JSON file and draws itself as SVG.
//!
//! # Global state
//!
//! ```text
//! RUNNING   AtomicBool: set by Timeline::start (one timeline at a time),
//!           cleared by Sampler::stop / drop; read first by every mark, so a
//!           mark with no timeline costs one relaxed load
//! STOP      AtomicBool: set by Sampler::stop, read by the sampler thread
//!           between its sleeps (it is also unparked)
//! STATE     Mutex<Option<Recording>>: the samples and marks so far; written
//!           by the sampler thread and by marks, under the reentrancy guard
//!           (see below); taken by Sampler::stop
//! READY     AtomicBool: set by the sampler thread when it starts running
//!           this module's code; Timeline::start waits for it
//! ```
//!
//! # What the figures leave out
//!
//! The recording lives in tracer memory: everything the sampler allocates
//! for it (the sample and mark vectors, the labels, what reading RSS
//! allocates) is allocated and freed under the reentrancy guard, so it
//! counts in [`tracer_memory`](crate::tracer_memory) and never in
//! [`stats`] or in a sample, and a mark allocates nothing counted on the
//! marking thread. What is counted is the thread itself: its handle and
//! what std keeps for it (a few hundred bytes, allocated by `start` and
//! freed when `stop` joins it), as any thread of the program would be. It
//! is in every sample and in `stats()` alike, constant while the timeline
//! runs: `start` waits until the thread runs this module's code (std's
//! set-up done) before it takes the first sample. Only the [`Timeline`]
//! that `stop` returns is copied into counted memory: it is the caller's
//! heap from then on, as a snapshot is.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::counters::{stats, Stats};
use crate::dump::{block, charge, load_json, write_atomic, Cost, Error, Seq, MAX_STRING};
use crate::guard::Guard;
use crate::scope::untraced;

const FORMAT: &str = "tracealloc-timeline";
const VERSION: u32 = 1;

/// The shortest interval [`Timeline::start`] takes.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_micros(100);

/// Labels longer than this many bytes are cut (at a character boundary).
pub(crate) const MAX_LABEL: usize = 256;

static RUNNING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static READY: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<Option<Recording>> = Mutex::new(None);

/// One reading of the process's memory.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Time since the timeline started.
    pub t: Duration,
    /// Heap bytes live then ([`Stats::current_bytes`]).
    pub heap: u64,
    /// The highest heap since the timeline started, up to this sample (see
    /// [`Timeline`] for how exact it is).
    pub heap_peak: u64,
    /// The resident set size then, where the system tells
    /// ([`rss`](crate::rss())).
    pub rss: Option<u64>,
}

impl Sample {
    /// A sample (for tests and tools).
    pub fn new(t: Duration, heap: u64, heap_peak: u64, rss: Option<u64>) -> Sample {
        Sample {
            t,
            heap,
            heap_peak,
            rss,
        }
    }
}

/// What a [`Mark`] stands for.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkKind {
    /// A labelled moment, from [`mark!`](crate::mark!).
    Mark,
    /// A profiled function was entered (its name is the label): the start
    /// of one of mprof's function brackets.
    Enter,
    /// A profiled function returned or unwound (its name is the label).
    Exit,
}

impl MarkKind {
    fn name(self) -> &'static str {
        match self {
            MarkKind::Mark => "mark",
            MarkKind::Enter => "enter",
            MarkKind::Exit => "exit",
        }
    }

    fn from_name(s: &str) -> Option<MarkKind> {
        [MarkKind::Mark, MarkKind::Enter, MarkKind::Exit]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// A labelled moment of a timeline, with the memory then.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Time since the timeline started.
    pub t: Duration,
    /// The label (a function's name for [`MarkKind::Enter`] and
    /// [`MarkKind::Exit`]); at most 256 bytes (longer ones are cut).
    pub label: String,
    /// What the mark stands for.
    pub kind: MarkKind,
    /// Heap bytes live at the mark: [`stats`]`().current_bytes` read by
    /// the marking thread before it did anything else.
    pub heap: u64,
    /// The resident set size at the mark.
    pub rss: Option<u64>,
}

impl Mark {
    /// A mark (for tests and tools).
    pub fn new(
        t: Duration,
        label: impl Into<String>,
        kind: MarkKind,
        heap: u64,
        rss: Option<u64>,
    ) -> Mark {
        Mark {
            t,
            label: label.into(),
            kind,
            heap,
            rss,
        }
    }
}

/// Memory over time, with labelled marks: what mprof's `run` records and
/// `plot` draws. Started with [`Timeline::start`]; see the [`mark!`](crate::mark!)
/// macro for marks.
///
/// Every sample reads [`stats`] (heap live now) and [`rss`](crate::rss());
/// each mark adds a sample at its moment, so the heap at a mark is exact
/// (what `stats()` said on the marking thread when it marked).
///
/// # How exact the peak is
///
/// `heap_peak` is the highest heap since the timeline started, built from
/// two sources: the running maximum of the samples' heap, and the counters'
/// own peak ([`Stats::peak_bytes`]), which catches a peak between two
/// samples. The counters' peak is the process's since it started (or since
/// [`reset_peak`](crate::reset_peak), which belongs to the user), so the
/// sampler takes it only when it has changed since the previous sample: a
/// rise is a new high reached since then, and after a `reset_peak` it is a
/// value reached since the reset. So `heap_peak` is never below any
/// sample's heap, never includes a peak from before the timeline started,
/// and misses a peak between samples only by the counters' slack (up to
/// 64 KiB per thread allocating at that moment, see [`Stats`]), or when a
/// `reset_peak` between two samples hides a higher value reached before it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let sampler = tracealloc::Timeline::start(Duration::from_millis(10));
///     let model = std::hint::black_box(vec![0u8; 8 << 20]);
///     tracealloc::mark!("loaded {} MiB", model.len() >> 20);
///     drop(model);
///     let timeline = sampler.stop();
///     assert_eq!(timeline.marks[0].label, "loaded 8 MiB");
///     assert!(timeline.samples.iter().any(|s| s.heap_peak >= 8 << 20));
///     let svg = timeline.svg(800, 400);
///     # let _ = svg;
/// }
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Timeline {
    /// The sampling interval asked for.
    pub interval: Duration,
    /// The samples, in time order: the sampler's, one at the start, one at
    /// each mark and one at the stop.
    pub samples: Vec<Sample>,
    /// The marks, in the order they were made.
    pub marks: Vec<Mark>,
}

/// The running timeline: [`stop`](Sampler::stop) it to get the
/// [`Timeline`]. Dropping it stops the sampler and discards what it
/// recorded.
#[derive(Debug)]
#[must_use = "a timeline records until its Sampler is stopped or dropped"]
pub struct Sampler {
    /// `None` once joined.
    thread: Option<JoinHandle<()>>,
}

/// The recording in progress, in tracer memory (allocated and freed under
/// the guard only).
struct Recording {
    start: Instant,
    interval: Duration,
    samples: Vec<Sample>,
    marks: Vec<Mark>,
    /// The running peak since the start.
    peak: u64,
    /// The counters' peak at the previous reading.
    counter_peak: u64,
}

impl Recording {
    /// Adds a sample of `s` at `t`. Under the guard.
    fn sample(&mut self, _g: &Guard, t: Duration, s: &Stats, rss: Option<u64>) {
        if s.peak_bytes != self.counter_peak {
            self.counter_peak = s.peak_bytes;
            self.peak = self.peak.max(s.peak_bytes);
        }
        self.peak = self.peak.max(s.current_bytes);
        // Time order, though a mark and the sampler may race for the lock.
        let t = self.samples.last().map_or(t, |last| t.max(last.t));
        self.samples.push(Sample {
            t,
            heap: s.current_bytes,
            heap_peak: self.peak,
            rss,
        });
    }
}

fn state() -> MutexGuard<'static, Option<Recording>> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timeline {
    /// Starts sampling the heap ([`stats`]), its peak and the RSS every
    /// `interval` on a background thread named `tracealloc-timeline`, until
    /// [`Sampler::stop`]. A first sample is taken at once, on the calling
    /// thread; [`mark!`](crate::mark!) adds marks meanwhile.
    ///
    /// The recording is tracer memory, not in the figures; the thread's
    /// handle (a few hundred bytes) is, while it runs, as any thread's
    /// (see the module docs). Samples cost 48 bytes each of tracer memory
    /// (at 10 ms, about 17 MiB an hour).
    ///
    /// # Panics
    ///
    /// When a timeline is already running (one per process), when
    /// `interval` is under 100 µs, when no
    /// [`TraceAlloc`](crate::TraceAlloc) is the global allocator, or when
    /// the thread cannot be spawned.
    #[track_caller]
    pub fn start(interval: Duration) -> Sampler {
        assert!(
            interval >= MIN_INTERVAL,
            "tracealloc: the timeline's interval must be at least 100 µs, not {interval:?}"
        );
        crate::counters::require_installed("Timeline::start");
        if RUNNING.swap(true, AcqRel) {
            panic!(
                "tracealloc: a timeline is already running: stop its Sampler before starting \
                 another (one timeline per process)"
            );
        }
        // The thread's handle and what std keeps for it are the process's
        // heap (counted, not traced) while it runs; see the module docs.
        READY.store(false, Release);
        STOP.store(false, Release);
        let spawned = untraced(|| {
            std::thread::Builder::new()
                .name("tracealloc-timeline".into())
                .spawn(run)
        });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                RUNNING.store(false, Release);
                panic!("tracealloc: cannot start the timeline's thread: {e}")
            }
        };
        // Until the thread runs our code, std is still setting it up
        // (allocating and freeing): the first sample comes after.
        while !READY.load(Acquire) && !handle.is_finished() {
            std::thread::yield_now();
        }
        let s = stats();
        let rss = rss_now();
        let start = Instant::now();
        {
            let g = Guard::hold();
            let mut rec = Recording {
                start,
                interval,
                samples: Vec::with_capacity(1024),
                marks: Vec::new(),
                peak: s.current_bytes,
                counter_peak: s.peak_bytes,
            };
            rec.sample(&g, Duration::ZERO, &s, rss);
            *state() = Some(rec);
        }
        handle.thread().unpark();
        Sampler {
            thread: Some(handle),
        }
    }

    /// A timeline of the given samples and marks (for tests and tools).
    pub fn new(interval: Duration, samples: Vec<Sample>, marks: Vec<Mark>) -> Timeline {
        Timeline {
            interval,
            samples,
            marks,
        }
    }

    /// The highest `heap_peak` of the samples (0 without samples).
    pub fn peak(&self) -> u64 {
        self.samples.iter().map(|s| s.heap_peak).max().unwrap_or(0)
    }

    /// The time span covered: the latest sample's or mark's time.
    pub fn duration(&self) -> Duration {
        let s = self.samples.iter().map(|s| s.t).max();
        let m = self.marks.iter().map(|m| m.t).max();
        s.max(m).unwrap_or_default()
    }
}

/// The RSS, read under the guard: what reading it allocates is tracer
/// memory, so it shows neither in the figures nor in the caller's
/// [`measure`](crate::measure).
fn rss_now() -> Option<u64> {
    let _g = Guard::hold();
    crate::rss::rss()
}

/// The sampler thread.
fn run() {
    READY.store(true, Release);
    // The recording, once `start` has made it.
    let (start, interval) = loop {
        if STOP.load(Acquire) {
            return;
        }
        if let Some(r) = &*state() {
            break (r.start, r.interval);
        }
        std::thread::park_timeout(Duration::from_millis(1));
    };
    // Everything this loop allocates is tracer memory, freed under the
    // guard too; the guard goes before the thread's end, where std frees
    // what the spawning thread allocated for it (counted memory).
    let g = Guard::hold();
    let mut due = start + interval;
    loop {
        loop {
            if STOP.load(Acquire) {
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::park_timeout(due - now);
        }
        let t = start.elapsed();
        let s = stats();
        let rss = rss_now();
        if let Some(rec) = &mut *state() {
            rec.sample(&g, t, &s, rss);
        }
        // The next multiple of the interval (ticks missed are skipped).
        let ticks = t.as_nanos() / interval.as_nanos().max(1) + 1;
        due = start + interval.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
    }
}

impl Sampler {
    /// Stops the sampler thread (it is joined before this returns), takes a
    /// last sample, and returns the timeline.
    ///
    /// # Panics
    ///
    /// When the sampler thread panicked (a bug of this crate).
    pub fn stop(mut self) -> Timeline {
        let end = self.finish();
        match end {
            Some(t) => t,
            None => panic!("tracealloc: the timeline's sampler thread panicked"),
        }
    }

    /// Stops and joins the thread; the recording copied into counted
    /// memory, or `None` when the thread had panicked.
    fn finish(&mut self) -> Option<Timeline> {
        let thread = self.thread.take()?;
        let s = stats();
        let rss = rss_now();
        STOP.store(true, Release);
        thread.thread().unpark();
        // Not under the guard: joining frees the thread's handle, counted
        // memory.
        let joined = thread.join().is_ok();
        let rec = {
            let g = Guard::hold();
            let mut rec = state().take();
            if let Some(r) = &mut rec {
                let t = r.start.elapsed();
                r.sample(&g, t, &s, rss);
            }
            rec
        };
        RUNNING.store(false, Release);
        let rec = Internal(rec);
        if !joined {
            return None;
        }
        let r = rec.0.as_ref()?;
        // The caller's result: counted memory, not traced.
        Some(untraced(|| Timeline {
            interval: r.interval,
            samples: r.samples.clone(),
            marks: r.marks.clone(),
        }))
    }
}

/// A recording dropped under the guard, wherever it goes out of scope.
struct Internal(Option<Recording>);

impl Drop for Internal {
    fn drop(&mut self) {
        let _g = Guard::hold();
        drop(self.0.take());
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

// ---------------------------------------------------------------------------
// Marks.

/// A label formatted into a fixed buffer on the stack: marks allocate
/// nothing on the marking thread (beyond what the arguments' own `Display`
/// does); what does not fit is cut at a character boundary.
struct Label {
    buf: [u8; MAX_LABEL],
    len: usize,
}

impl fmt::Write for Label {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_LABEL - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Label {
    fn as_str(&self) -> &str {
        // Only whole characters were copied in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Records a mark of `kind` now, when a timeline is running.
fn record(kind: MarkKind, label: fmt::Arguments<'_>) {
    if !RUNNING.load(Relaxed) {
        return;
    }
    // First the figures, so that the heap at the mark is the caller's.
    let s = stats();
    let rss = rss_now();
    let mut text = Label {
        buf: [0; MAX_LABEL],
        len: 0,
    };
    match label.as_str() {
        Some(s) => {
            let _ = text.write_str(s);
        }
        None => {
            let _ = text.write_fmt(label);
        }
    }
    let g = Guard::hold();
    if let Some(rec) = &mut *state() {
        let t = rec.start.elapsed();
        rec.sample(&g, t, &s, rss);
        let t = rec.samples.last().map_or(t, |s| s.t);
        rec.marks.push(Mark {
            t,
            label: text.as_str().to_owned(),
            kind,
            heap: s.current_bytes,
            rss,
        });
    }
}

/// What [`mark!`](crate::mark!) calls.
#[doc(hidden)]
pub fn __mark(label: fmt::Arguments<'_>) {
    record(MarkKind::Mark, label);
}

/// The hook `#[tracealloc::profile]` calls on entering a function: a
/// [`MarkKind::Enter`] mark labelled `name` when a timeline is running.
#[doc(hidden)]
pub fn enter(name: &str) {
    record(MarkKind::Enter, format_args!("{name}"));
}

/// The hook `#[tracealloc::profile]` calls when a function returns or
/// unwinds: a [`MarkKind::Exit`] mark labelled `name`.
#[doc(hidden)]
pub fn exit(name: &str) {
    record(MarkKind::Exit, format_args!("{name}"));
}

/// Adds a labelled mark to the running [`Timeline`] (mprof's
/// `with profile.timestamp("name")`), with a sample at its moment; the
/// arguments are those of [`format!`]. Without a running timeline it does
/// nothing, at the cost of one atomic load (the arguments are not
/// formatted).
///
/// The label is formatted into a buffer on the stack (at most
/// 256 bytes; longer ones are cut at a character boundary):
/// a mark allocates nothing on the calling thread, beyond what the
/// arguments' own `Display` allocates. With a timeline running a mark
/// costs about 9 µs, most of it reading the RSS (`/proc/self/statm`,
/// about 7 µs); without one, about 3 ns (measured in release on Linux).
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     let sampler = tracealloc::Timeline::start(std::time::Duration::from_millis(5));
///     tracealloc::mark!("start");
///     for i in 0..2 {
///         tracealloc::mark!("step {i}");
///     }
///     let t = sampler.stop();
///     let labels: Vec<&str> = t.marks.iter().map(|m| m.label.as_str()).collect();
///     assert_eq!(labels, ["start", "step 0", "step 1"]);
/// }
/// ```
#[macro_export]
macro_rules! mark {
    ($($arg:tt)+) => {
        $crate::__mark(::core::format_args!($($arg)+))
    };
}

// ---------------------------------------------------------------------------
// The file: small JSON.
//
// {"format": "tracealloc-timeline", "version": 1, "interval_ns": 10000000,
//  "samples": [[t_ns, heap, heap_peak, rss or null], ...],
//  "marks":   [[t_ns, "mark" | "enter" | "exit", label, heap, rss or null], ...]}

#[derive(Serialize)]
struct SaveFile<'a> {
    format: &'a str,
    version: u32,
    interval_ns: u64,
    samples: Vec<(u64, u64, u64, Option<u64>)>,
    marks: Vec<(u64, &'a str, &'a str, u64, Option<u64>)>,
}

#[derive(Deserialize)]
struct LoadFile {
    format: String,
    version: u32,
    interval_ns: u64,
    samples: Seq<(u64, u64, u64, Option<u64>)>,
    marks: Seq<(u64, String, String, u64, Option<u64>)>,
}

impl Cost for (u64, u64, u64, Option<u64>) {
    fn cost(&self) -> u64 {
        48
    }
}

impl Cost for (u64, String, String, u64, Option<u64>) {
    fn cost(&self) -> u64 {
        block(self.1.len() as u64) + block(self.2.len() as u64) + 80
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Timeline {
    /// Writes the timeline to `path` as small JSON (format
    /// `tracealloc-timeline`, version 1), through a temporary file renamed
    /// over `path`, as [`Snapshot::dump`](crate::Snapshot::dump) writes.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracealloc::{Mark, MarkKind, Sample, Timeline};
    ///
    /// let t = Timeline::new(
    ///     Duration::from_millis(10),
    ///     vec![Sample::new(Duration::ZERO, 100, 100, Some(4096))],
    ///     vec![Mark::new(Duration::ZERO, "start", MarkKind::Mark, 100, None)],
    /// );
    /// let path = std::env::temp_dir().join(format!("tracealloc-doc-{}.timeline.json", std::process::id()));
    /// t.save(&path)?;
    /// assert_eq!(Timeline::load(&path)?, t);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), tracealloc::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        untraced(|| {
            let file = SaveFile {
                format: FORMAT,
                version: VERSION,
                interval_ns: nanos(self.interval),
                samples: self
                    .samples
                    .iter()
                    .map(|s| (nanos(s.t), s.heap, s.heap_peak, s.rss))
                    .collect(),
                marks: self
                    .marks
                    .iter()
                    .map(|m| (nanos(m.t), m.kind.name(), m.label.as_str(), m.heap, m.rss))
                    .collect(),
            };
            write_atomic(path.as_ref(), "save", "timeline", |w| {
                serde_json::to_writer(&mut *w, &file)?;
                std::io::Write::write_all(w, b"\n")
            })
        })
    }

    /// Reads a timeline written by [`save`](Self::save), defensively: only
    /// a regular file of at most 1 GiB, within a memory bound of 16 times
    /// its size plus 16 MiB.
    ///
    /// # Errors
    ///
    /// A missing, unreadable, truncated or corrupt file, another format or
    /// version, a label over 64 KiB or an unknown mark kind: an [`Error`]
    /// naming the path and what is wrong. It never panics.
    pub fn load(path: impl AsRef<Path>) -> Result<Timeline, Error> {
        untraced(|| {
            load_json(
                path.as_ref(),
                "timeline",
                "not a valid timeline file",
                build,
            )
        })
    }
}

fn build(
    f: LoadFile,
    err: &dyn Fn(String) -> Error,
    over: &dyn Fn() -> Error,
) -> Result<Timeline, Error> {
    if f.format != FORMAT {
        return Err(err(format!(
            "the format is {:?}, not {FORMAT:?}",
            f.format.chars().take(64).collect::<String>()
        )));
    }
    if f.version != VERSION {
        return Err(err(format!(
            "version {} (this build reads version {VERSION})",
            f.version
        )));
    }
    if !charge(
        (f.samples.0.len() as u64).saturating_mul(std::mem::size_of::<Sample>() as u64)
            + (f.marks.0.len() as u64).saturating_mul(std::mem::size_of::<Mark>() as u64),
    ) {
        return Err(over());
    }
    let mut samples = Vec::with_capacity(f.samples.0.len());
    for (t, heap, peak, rss) in f.samples.0 {
        samples.push(Sample {
            t: Duration::from_nanos(t),
            heap,
            heap_peak: peak,
            rss,
        });
    }
    let mut marks = Vec::with_capacity(f.marks.0.len());
    for (t, kind, label, heap, rss) in f.marks.0 {
        let kind = MarkKind::from_name(&kind).ok_or_else(|| {
            err(format!(
                "unknown mark kind {:?} (mark, enter or exit)",
                kind.chars().take(64).collect::<String>()
            ))
        })?;
        if label.len() > MAX_STRING {
            return Err(err(format!(
                "a label of {} bytes, over the limit of {MAX_STRING}",
                label.len()
            )));
        }
        marks.push(Mark {
            t: Duration::from_nanos(t),
            label,
            kind,
            heap,
            rss,
        });
    }
    Ok(Timeline {
        interval: Duration::from_nanos(f.interval_ns),
        samples,
        marks,
    })
}

// ---------------------------------------------------------------------------
// The chart.

/// Escapes text for an XML (and HTML) text node or attribute value.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Not allowed in XML 1.0, nor useful in a label.
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about `n` ticks
/// over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick's label: `step` decides the decimals.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

const MIB: f64 = (1u64 << 20) as f64;

/// Line colours: heap, heap peak, RSS.
const HEAP_COLOR: &str = "#1f77b4";
const PEAK_COLOR: &str = "#d62728";
const RSS_COLOR: &str = "#2ca02c";
const MARK_COLOR: &str = "#555555";
/// Bracket fills, one per function in turn.
const BRACKET_COLORS: [&str; 6] = [
    "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
];

/// One function bracket: from an Enter to its Exit.
struct Bracket<'a> {
    name: &'a str,
    from: Duration,
    to: Duration,
    depth: usize,
}

/// Pairs each Enter with the next Exit of the same name at the same depth
/// (innermost first); an Enter without an Exit runs to `end`.
fn brackets(marks: &[Mark], end: Duration) -> Vec<Bracket<'_>> {
    let mut open: Vec<&Mark> = Vec::new();
    let mut out = Vec::new();
    for m in marks {
        match m.kind {
            MarkKind::Enter => open.push(m),
            MarkKind::Exit => {
                if let Some(i) = open.iter().rposition(|o| o.label == m.label) {
                    let e = open.remove(i);
                    out.push(Bracket {
                        name: &e.label,
                        from: e.t,
                        to: m.t,
                        depth: i,
                    });
                }
            }
            _ => {}
        }
    }
    for (i, e) in open.into_iter().enumerate() {
        out.push(Bracket {
            name: &e.label,
            from: e.t,
            to: end,
            depth: i,
        });
    }
    out.sort_by_key(|b| (b.from, b.depth));
    out
}

/// Polylines of `(t, value)` points, broken where a value is missing.
fn polylines(
    out: &mut String,
    points: impl Iterator<Item = (Duration, Option<u64>)>,
    x: &dyn Fn(Duration) -> f64,
    y: &dyn Fn(u64) -> f64,
    attrs: &str,
) {
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.contains(' ') {
            let _ = writeln!(out, "<polyline points=\"{}\" {attrs}/>", run.trim_end());
        }
        run.clear();
    };
    for (t, v) in points {
        match v {
            Some(v) => {
                let _ = write!(run, "{:.1},{:.1} ", x(t), y(v));
            }
            None => flush(&mut run, out),
        }
    }
    flush(&mut run, out);
}

impl Timeline {
    /// The timeline as an SVG chart of `width` × `height` pixels (mprof's
    /// `plot`): time on the x axis, MiB on the y axis, lines for the heap,
    /// the heap peak and the RSS, a dashed vertical line for each mark with
    /// its label, a shaded band from each function's [`MarkKind::Enter`] to
    /// its [`MarkKind::Exit`] (mprof's brackets) with the function's name,
    /// a legend and the axes' ticks. Hand-written SVG 1.1 with no script
    /// and no external reference (a standalone file: it opens in a web
    /// browser), every label escaped.
    ///
    /// Sizes under 320 × 200 are raised to that.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracealloc::{Sample, Timeline};
    ///
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new(ms(10), vec![
    ///     Sample::new(ms(0), 1 << 20, 1 << 20, Some(8 << 20)),
    ///     Sample::new(ms(10), 5 << 20, 5 << 20, Some(12 << 20)),
    /// ], vec![]);
    /// let svg = t.svg(800, 400);
    /// assert!(svg.starts_with("<svg") && svg.contains("heap peak"));
    /// ```
    pub fn svg(&self, width: u32, height: u32) -> String {
        untraced(|| self.draw(width.max(320) as f64, height.max(200) as f64))
    }

    fn draw(&self, w: f64, h: f64) -> String {
        let mut o = String::new();
        let (left, right, top, bottom) = (70.0, 20.0, 44.0, 46.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let end = self.duration();
        let secs = end.as_secs_f64().max(1e-3);
        let ymax_bytes = self
            .samples
            .iter()
            .flat_map(|s| [s.heap, s.heap_peak, s.rss.unwrap_or(0)])
            .chain(self.marks.iter().flat_map(|m| [m.heap, m.rss.unwrap_or(0)]))
            .max()
            .unwrap_or(0);
        let ystep = nice_step((ymax_bytes as f64 / MIB).max(1.0), 5.0);
        let ymax = ((ymax_bytes as f64 / MIB * 1.05) / ystep).ceil().max(1.0) * ystep;
        let xs = move |t: Duration| left + t.as_secs_f64() / secs * pw;
        let ys = move |b: u64| top + ph - (b as f64 / MIB) / ymax * ph;

        let _ = writeln!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w}\" \
             height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">"
        );
        let _ = writeln!(
            o,
            "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>"
        );
        // Brackets first, under everything.
        let bracket_list = brackets(&self.marks, end);
        let mut colour_of: Vec<&str> = Vec::new();
        for b in &bracket_list {
            let i = match colour_of.iter().position(|n| *n == b.name) {
                Some(i) => i,
                None => {
                    colour_of.push(b.name);
                    colour_of.len() - 1
                }
            };
            let colour = BRACKET_COLORS[i % BRACKET_COLORS.len()];
            let (x0, x1) = (xs(b.from), xs(b.to).max(xs(b.from) + 1.0));
            let _ = writeln!(
                o,
                "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{ph:.1}\" \
                 fill=\"{colour}\" fill-opacity=\"0.13\"><title>{} ({:.3} s to {:.3} s)</title></rect>",
                x1 - x0,
                escape(b.name),
                b.from.as_secs_f64(),
                b.to.as_secs_f64()
            );
            // A labelled bar along the bottom of the plot, one row per depth.
            let by = top + ph - 16.0 - 16.0 * b.depth as f64;
            let _ = writeln!(
                o,
                "<rect x=\"{x0:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{colour}\" \
                 fill-opacity=\"0.55\"/>",
                x1 - x0
            );
            // The name, cut to the bar's width (about 6 px a character).
            let fits = ((x1 - x0 - 6.0) / 6.0).max(0.0) as usize;
            let name: String = if b.name.chars().count() <= fits {
                b.name.to_string()
            } else if fits >= 2 {
                b.name.chars().take(fits - 1).chain(['…']).collect()
            } else {
                String::new()
            };
            if !name.is_empty() {
                let _ = writeln!(
                    o,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#000000\">{}</text>",
                    x0 + 3.0,
                    by + 11.0,
                    escape(&name)
                );
            }
        }
        // Grid and y ticks.
        let mut v = 0.0;
        while v <= ymax + ystep * 1e-9 {
            let y = top + ph - v / ymax * ph;
            let _ = writeln!(
                o,
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left + pw,
                left - 6.0,
                y + 4.0,
                tick_label(v, ystep)
            );
            v += ystep;
        }
        // x ticks, in seconds.
        let xstep = nice_step(secs, 8.0);
        let mut v = 0.0;
        while v <= secs + xstep * 1e-9 {
            let x = left + v / secs * pw;
            let _ = writeln!(
                o,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000000\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                top + ph,
                top + ph + 5.0,
                top + ph + 17.0,
                tick_label(v, xstep)
            );
            v += xstep;
        }
        // Axes and their titles.
        let _ = writeln!(
            o,
            "<path d=\"M{left},{top} V{:.1} H{:.1}\" fill=\"none\" stroke=\"#000000\"/>",
            top + ph,
            left + pw
        );
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>",
            left + pw / 2.0,
            h - 10.0
        );
        let _ = writeln!(
            o,
            "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">\
             memory (MiB)</text>",
            top + ph / 2.0,
            top + ph / 2.0
        );
        // The lines.
        polylines(
            &mut o,
            self.samples.iter().map(|s| (s.t, s.rss)),
            &xs,
            &ys,
            &format!("fill=\"none\" stroke=\"{RSS_COLOR}\" stroke-width=\"1.5\""),
        );
        polylines(
            &mut o,
            self.samples.iter().map(|s| (s.t, Some(s.heap_peak))),
            &xs,
            &ys,
            &format!(
                "fill=\"none\" stroke=\"{PEAK_COLOR}\" stroke-width=\"1.2\" stroke-dasharray=\"5 3\""
            ),
        );
        polylines(
            &mut o,
            self.samples.iter().map(|s| (s.t, Some(s.heap))),
            &xs,
            &ys,
            &format!("fill=\"none\" stroke=\"{HEAP_COLOR}\" stroke-width=\"1.8\""),
        );
        // Marks: a dashed line, a dot at the heap, the label down the
        // line's right side from the top (rotated text extends to the left
        // of its anchor by the font's height).
        for m in self.marks.iter().filter(|m| m.kind == MarkKind::Mark) {
            let x = xs(m.t);
            let _ = writeln!(
                o,
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" \
                 stroke=\"{MARK_COLOR}\" stroke-dasharray=\"3 3\"/>\
                 <circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{HEAP_COLOR}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{MARK_COLOR}\" \
                 transform=\"rotate(-90 {:.1} {:.1})\">{}</text>",
                top + ph,
                ys(m.heap),
                x + 11.0,
                top + 4.0,
                x + 11.0,
                top + 4.0,
                escape(&m.label)
            );
        }
        if self.samples.is_empty() && self.marks.is_empty() {
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">No samples</text>",
                left + pw / 2.0,
                top + ph / 2.0
            );
        }
        // The legend, above the plot.
        let items: [(&str, &str, &str); 3] = [
            ("heap", HEAP_COLOR, ""),
            ("heap peak", PEAK_COLOR, " stroke-dasharray=\"5 3\""),
            ("RSS", RSS_COLOR, ""),
        ];
        let mut lx = left;
        for (name, colour, dash) in items {
            let _ = writeln!(
                o,
                "<line x1=\"{lx:.1}\" y1=\"16\" x2=\"{:.1}\" y2=\"16\" stroke=\"{colour}\" \
                 stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"20\">{name}</text>",
                lx + 22.0,
                lx + 26.0
            );
            lx += 36.0 + 6.5 * name.len() as f64;
        }
        let _ = writeln!(
            o,
            "<line x1=\"{lx:.1}\" y1=\"10\" x2=\"{lx:.1}\" y2=\"24\" stroke=\"{MARK_COLOR}\" \
             stroke-dasharray=\"3 3\"/><text x=\"{:.1}\" y=\"20\">mark</text>",
            lx + 5.0
        );
        lx += 46.0;
        let _ = writeln!(
            o,
            "<rect x=\"{lx:.1}\" y=\"10\" width=\"22\" height=\"12\" fill=\"{}\" \
             fill-opacity=\"0.55\"/><text x=\"{:.1}\" y=\"20\">function (enter to exit)</text>",
            BRACKET_COLORS[0],
            lx + 26.0
        );
        o.push_str("</svg>\n");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(1.0, 8.0), 0.2);
        assert_eq!(nice_step(700.0, 5.0), 200.0);
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(200.0, 100.0), "200");
    }

    #[test]
    fn brackets_pair_nested_and_unclosed() {
        let ms = Duration::from_millis;
        let m = |t, l: &str, k| Mark::new(ms(t), l, k, 0, None);
        let marks = [
            m(1, "outer", MarkKind::Enter),
            m(2, "inner", MarkKind::Enter),
            m(3, "x", MarkKind::Mark),
            m(4, "inner", MarkKind::Exit),
            m(5, "outer", MarkKind::Exit),
            m(6, "open", MarkKind::Enter),
        ];
        let b = brackets(&marks, ms(9));
        let got: Vec<_> = b.iter().map(|b| (b.name, b.from, b.to, b.depth)).collect();
        assert_eq!(
            got,
            [
                ("outer", ms(1), ms(5), 0),
                ("inner", ms(2), ms(4), 1),
                ("open", ms(6), ms(9), 0)
            ]
        );
    }

    #[test]
    fn labels_are_cut_at_char_boundaries() {
        let mut l = Label {
            buf: [0; MAX_LABEL],
            len: 0,
        };
        let long = "é".repeat(MAX_LABEL);
        let _ = l.write_str(&long);
        assert_eq!(l.as_str().len(), MAX_LABEL);
        assert!(l.as_str().chars().all(|c| c == 'é'));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<T>&\"'"), "a&lt;T&gt;&amp;&quot;&#39;");
    }
}
