//! Whole-run profiles: per call site, what was allocated since tracing
//! started, what is live now and the most that was live at once. Plain data.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::frame::Traceback;
use crate::method::CaptureMethod;
use crate::snapshot::format_size;

/// One call site's whole-run figures (see [`Profile`]). In a sampled
/// session every figure is an estimate: each sampled block counts for the
/// inverse of its probability of being sampled, as in
/// [`Snapshot::statistics`](crate::Snapshot::statistics).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Where the blocks were allocated (the whole stack, up to the
    /// session's traceback limit).
    pub traceback: Traceback,
    /// Traced blocks allocated here since the session started (or the
    /// profile was reset).
    pub allocs: u64,
    /// Traced blocks of this site freed (or reallocated away) since then;
    /// after a reset, blocks allocated before it count too.
    pub frees: u64,
    /// Bytes of the traced blocks allocated here.
    pub bytes_allocated: u64,
    /// Traced blocks of this site live now.
    pub live_blocks: u64,
    /// Bytes of this site's traced blocks live now.
    pub live_bytes: u64,
    /// The most bytes this site had live at once. A site whose line calls
    /// from several code addresses (a loop the compiler unrolled, a
    /// function inlined in several places) adds up each address's most:
    /// an upper bound, reached when they peaked together.
    pub max_live_bytes: u64,
    /// The blocks this site had live when its live bytes were at
    /// `max_live_bytes`.
    pub max_live_blocks: u64,
    /// Bytes of this site's blocks live at the session's traced peak (see
    /// [`RunInfo::peak_bytes`]): the peak's composition.
    pub peak_bytes: u64,
    /// Blocks of this site live at the session's traced peak.
    pub peak_blocks: u64,
    /// The lifetimes of this site's blocks added up: each freed block's,
    /// and each live block's up to the reading (see
    /// [`Site::average_lifetime`]).
    pub total_lifetime: Duration,
    /// The return address of each frame of `traceback` (inlined frames
    /// share their caller's), 0 where unknown.
    pub(crate) addresses: Vec<usize>,
}

impl Site {
    /// The average lifetime of this site's blocks, live ones counted up to
    /// the reading; `None` when the site allocated nothing.
    pub fn average_lifetime(&self) -> Option<Duration> {
        let n = self.allocs.max(self.live_blocks);
        (n > 0)
            .then(|| Duration::from_nanos((self.total_lifetime.as_nanos() / u128::from(n)) as u64))
    }

    /// The code address of each frame of [`traceback`](Site::traceback),
    /// most recent first (inlined frames share their caller's address), 0
    /// where unknown (as in a profile loaded from a file that had none).
    pub fn addresses(&self) -> &[usize] {
        &self.addresses
    }
}

/// What the run was: the process and the tracing session.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// The process id.
    pub pid: u32,
    /// The command line.
    pub command: Vec<String>,
    /// The session's traceback limit.
    pub traceback_limit: usize,
    /// The sampling mean in bytes, when the session sampled.
    pub sample_bytes: Option<u64>,
    /// How stacks were captured.
    pub capture_method: Option<CaptureMethod>,
    /// Bytes the tracer itself held when the profile was read.
    pub tracer_memory: usize,
    /// When the session started (or the profile was last reset), by the
    /// wall clock.
    pub started: SystemTime,
    /// From `started` to the reading: the time the `live_*` figures
    /// describe ("the end" in DHAT's words).
    pub duration: Duration,
    /// The traced peak: the most bytes in traced blocks at once since
    /// `started`, as [`traced_memory`](crate::traced_memory) gives it (in
    /// a sampled session, the sampled blocks' bytes, not an estimate).
    pub peak_bytes: u64,
    /// When the sites' `peak_*` figures were taken, from `started`; `None`
    /// when no block was traced.
    pub peak_at: Option<Duration>,
}

/// The whole-run profile of a tracing session, from
/// [`profile`](fn@crate::profile): per call site (stack), the traced blocks
/// and bytes allocated since the session started (or the last
/// [`clear_traces`](crate::clear_traces) or
/// [`reset_profile`](crate::reset_profile)), those live now, the most the
/// site had live at once, those live at the session's traced peak, and how
/// long its blocks lived; sorted by bytes allocated, biggest first.
///
/// Where a snapshot sees what is live at one moment, a profile sees the
/// whole run's volume: short-lived blocks that no snapshot catches, what
/// the peak was made of, and what was still live at the end. It is written
/// for the viewers people use: [`dhat`](Profile::dhat) (valgrind's
/// `dh_view.html`), `pprof` (feature `pprof`), [`folded`](Profile::folded)
/// and `flamegraph` (feature `flamegraph`), and saved for the `tracealloc`
/// command-line tool with [`save`](Profile::save).
///
/// # Exactness
///
/// - **Totals.** Each thread adds its events to shared per-site totals in
///   batches (64 events or 64 KiB per site); the reading thread's own
///   batches are added first, another live thread's can lag by one batch
///   per site, and a thread that has exited has added everything. On one
///   thread, every figure is exact.
/// - **The peak's composition** (`peak_bytes`, `peak_blocks`). The live
///   figures of every site are copied at the first traced free after the
///   traced total rose 1/128 above the last copy, and at a reading: the
///   copy is of a moment when the total was at least 128/129 of the traced
///   peak ([`RunInfo::peak_bytes`], which is never below the copy's total),
///   and exactly the peak when the peak was reached by an allocation of
///   more than 1/128 of it. (Copying at every new high would cost a pass
///   over the sites at each step of a growing program.) Other threads
///   allocating at that moment can be missing up to 64 KiB each from the
///   copy's total and one batch per site from its sites.
/// - **Lifetimes** are the sum over blocks of (free time - allocation
///   time), live blocks counted up to the reading, read from the processor's
///   time-stamp counter (x86-64) or the monotonic clock: within the clock's
///   resolution (nanoseconds).
/// - **Sampling.** In a sampled session each sampled block counts for the
///   inverse of its probability, as in
///   [`Snapshot::statistics`](crate::Snapshot::statistics): the figures
///   are estimates of the whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    sites: Vec<Site>,
    info: RunInfo,
}

impl Profile {
    pub(crate) fn new(mut sites: Vec<Site>, info: RunInfo) -> Profile {
        sites.sort_by(|a, b| {
            (b.bytes_allocated, b.allocs, &b.traceback).cmp(&(
                a.bytes_allocated,
                a.allocs,
                &a.traceback,
            ))
        });
        Profile { sites, info }
    }

    /// A profile of a snapshot's live blocks, for the exports that take a
    /// profile (DHAT, pprof, flame graphs): one site per traceback, whose
    /// blocks count as allocated, live and at their most (`frees` 0, the
    /// `peak_*` figures and `peak_at` unknown: 0 and `None`). A sampled
    /// snapshot's blocks are weighted as in its statistics. The run's
    /// process and times are unknown: pid 0, no command, `started` at the
    /// epoch, `duration` 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Profile, Snapshot, Trace, Traceback};
    ///
    /// let at = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
    /// let snapshot = Snapshot::new(vec![Trace::new(4096, at.clone()), Trace::new(4096, at)], 1);
    /// let p = Profile::from_snapshot(&snapshot);
    /// let site = &p.sites()[0];
    /// assert_eq!((site.live_blocks, site.live_bytes), (2, 8192));
    /// assert_eq!(site.traceback.frames()[0].function(), "model::load");
    /// ```
    pub fn from_snapshot(snapshot: &crate::snapshot::Snapshot) -> Profile {
        crate::scope::untraced(|| {
            // By whole traceback, functions included (statistics by
            // traceback keep only files and lines, as tracemalloc's do).
            let mut groups: std::collections::HashMap<&Traceback, (f64, f64)> =
                std::collections::HashMap::new();
            for t in snapshot.traces() {
                let w = snapshot.weight(t.size);
                let g = groups.entry(&t.traceback).or_default();
                g.0 += t.size as f64 * w;
                g.1 += w;
            }
            let sites = groups
                .into_iter()
                .map(|(traceback, (bytes, blocks))| {
                    let (bytes, blocks) = (bytes.round() as u64, blocks.round() as u64);
                    Site {
                        addresses: vec![0; traceback.frames().len()],
                        traceback: traceback.clone(),
                        allocs: blocks,
                        frees: 0,
                        bytes_allocated: bytes,
                        live_blocks: blocks,
                        live_bytes: bytes,
                        max_live_bytes: bytes,
                        max_live_blocks: blocks,
                        peak_bytes: 0,
                        peak_blocks: 0,
                        total_lifetime: Duration::ZERO,
                    }
                })
                .collect();
            Profile::new(
                sites,
                RunInfo {
                    pid: 0,
                    command: Vec::new(),
                    traceback_limit: snapshot.traceback_limit(),
                    sample_bytes: snapshot.sample_bytes(),
                    capture_method: None,
                    tracer_memory: 0,
                    started: SystemTime::UNIX_EPOCH,
                    duration: Duration::ZERO,
                    peak_bytes: 0,
                    peak_at: None,
                },
            )
        })
    }

    /// The call sites, biggest volume first.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// What the run was.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    /// Bytes allocated over every site.
    pub fn bytes_allocated(&self) -> u64 {
        self.sites
            .iter()
            .fold(0, |sum, s| sum.saturating_add(s.bytes_allocated))
    }
}

/// What a flame graph of a [`Profile`] measures (see [`Profile::folded`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Bytes allocated over the run.
    BytesAllocated,
    /// Blocks allocated over the run.
    Blocks,
    /// Bytes live now (what a leak report shows at the end).
    LiveBytes,
    /// The most bytes each site had live at once.
    MaxLiveBytes,
    /// Bytes live at the traced peak: what the peak was made of.
    PeakBytes,
}

impl Profile {
    /// The profile as collapsed stacks, the input of flame-graph tools
    /// (`inferno-flamegraph`, `flamegraph.pl`, speedscope): one line per
    /// site, its frames from the outermost to the allocating one joined by
    /// `;`, a space, and the site's figure for `metric` (sites at 0 are
    /// left out). A frame is written `function (file:line)`; a `;` inside
    /// a name (as in `[u8; 4]`) is written `,`.
    ///
    /// # Examples
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
    ///
    /// fn main() {
    ///     tracealloc::start(8);
    ///     drop(std::hint::black_box(vec![0u8; 4096]));
    ///     let folded = tracealloc::profile().folded(tracealloc::Metric::BytesAllocated);
    ///     assert!(folded.lines().any(|l| l.ends_with(" 4096")));
    ///     std::fs::write(std::env::temp_dir().join("heap.folded"), folded).unwrap();
    ///     tracealloc::stop();
    /// }
    /// ```
    pub fn folded(&self, metric: Metric) -> String {
        use std::fmt::Write;
        crate::scope::untraced(|| {
            let mut out = String::new();
            for s in &self.sites {
                let n = match metric {
                    Metric::BytesAllocated => s.bytes_allocated,
                    Metric::Blocks => s.allocs,
                    Metric::LiveBytes => s.live_bytes,
                    Metric::MaxLiveBytes => s.max_live_bytes,
                    Metric::PeakBytes => s.peak_bytes,
                };
                if n == 0 {
                    continue;
                }
                for (i, f) in s.traceback.frames().iter().rev().enumerate() {
                    if i > 0 {
                        out.push(';');
                    }
                    let frame = format!("{} ({}:{})", f.function(), f.filename(), f.lineno());
                    // Names are free text: no `;` (the separator) nor line
                    // breaks may stay in them.
                    out.extend(frame.chars().map(|c| match c {
                        ';' => ',',
                        '\n' | '\r' => ' ',
                        c => c,
                    }));
                }
                let _ = writeln!(out, " {n}");
            }
            out
        })
    }
}

impl fmt::Display for Profile {
    /// A short table: the ten biggest sites by volume.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |n: u64| format_size(n as f64, false);
        write!(
            f,
            "Whole-run profile: {} sites, {} allocated in {:.3} s, traced peak {}",
            self.sites.len(),
            size(self.bytes_allocated()),
            self.info.duration.as_secs_f64(),
            size(self.info.peak_bytes),
        )?;
        match self.info.peak_at {
            Some(at) => writeln!(f, " at {:.3} s", at.as_secs_f64())?,
            None => writeln!(f)?,
        }
        for (i, s) in self.sites.iter().take(10).enumerate() {
            writeln!(
                f,
                "#{}: {}: {} in {} blocks, {} live in {}, at most {} live, {} at the peak",
                i + 1,
                s.traceback,
                size(s.bytes_allocated),
                s.allocs,
                size(s.live_bytes),
                s.live_blocks,
                size(s.max_live_bytes),
                size(s.peak_bytes),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn profile() -> Profile {
        let site = |frames: &[(&str, u32, &str)], allocs, bytes, live| Site {
            traceback: Traceback::new(
                frames
                    .iter()
                    .map(|&(file, line, function)| Frame::new(file, line, function))
                    .collect(),
            ),
            allocs,
            frees: allocs - 1,
            bytes_allocated: bytes,
            live_blocks: 1,
            live_bytes: live,
            max_live_bytes: bytes,
            max_live_blocks: allocs,
            peak_bytes: bytes,
            peak_blocks: allocs,
            total_lifetime: Duration::from_millis(allocs),
            addresses: frames.iter().map(|_| 0).collect(),
        };
        Profile::new(
            vec![
                site(
                    &[
                        ("src/model.rs", 42, "model::load"),
                        ("src/main.rs", 7, "main"),
                    ],
                    2,
                    2048,
                    0,
                ),
                site(
                    &[
                        ("src/buf.rs", 3, "<[u8; 4] as buf::Fill>::fill"),
                        ("src/main.rs", 9, "main"),
                    ],
                    5,
                    100,
                    20,
                ),
            ],
            RunInfo {
                pid: 1,
                command: vec!["prog".into()],
                traceback_limit: 2,
                sample_bytes: None,
                capture_method: None,
                tracer_memory: 0,
                started: SystemTime::UNIX_EPOCH,
                duration: Duration::from_secs(1),
                peak_bytes: 2048,
                peak_at: Some(Duration::from_millis(500)),
            },
        )
    }

    #[test]
    fn folded_stacks_root_first_one_line_per_site() {
        let p = profile();
        assert_eq!(
            p.folded(Metric::BytesAllocated),
            "main (src/main.rs:7);model::load (src/model.rs:42) 2048\n\
             main (src/main.rs:9);<[u8, 4] as buf::Fill>::fill (src/buf.rs:3) 100\n"
        );
        assert_eq!(
            p.folded(Metric::LiveBytes),
            "main (src/main.rs:9);<[u8, 4] as buf::Fill>::fill (src/buf.rs:3) 20\n",
            "sites at 0 are left out"
        );
        assert!(p.folded(Metric::Blocks).ends_with(" 5\n"));
    }

    /// inferno, as users' flame-graph tools, reads the file and draws it.
    #[test]
    fn inferno_draws_the_folded_stacks() {
        let folded = profile().folded(Metric::BytesAllocated);
        let mut svg = Vec::new();
        let mut options = inferno::flamegraph::Options::default();
        inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("model::load (src/model.rs:42)"));
    }
}
