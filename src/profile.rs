//! Whole-run profiles: per call site, what was allocated since tracing
//! started, what is live now and the most that was live at once. Plain data.

use std::fmt;

use crate::frame::Traceback;
use crate::method::CaptureMethod;
use crate::snapshot::format_size;

/// One call site's whole-run figures (see [`Profile`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Where the blocks were allocated (the whole stack, up to the
    /// session's traceback limit).
    pub traceback: Traceback,
    /// Traced blocks allocated here.
    pub allocs: u64,
    /// Of those, how many were freed (or reallocated away).
    pub frees: u64,
    /// Bytes of the traced blocks allocated here.
    pub bytes_allocated: u64,
    /// Bytes of this site's traced blocks live now.
    pub live_bytes: u64,
    /// The most bytes this site had live at once. A site whose line calls
    /// from several code addresses (a loop the compiler unrolled, a
    /// function inlined in several places) adds up each address's most:
    /// an upper bound, reached when they peaked together.
    pub max_live_bytes: u64,
}

impl Site {
    /// Traced blocks of this site live now.
    pub fn live_blocks(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
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
}

/// The whole-run profile of a tracing session, from
/// [`profile`](crate::profile): per call site (stack), the traced blocks
/// and bytes allocated since the session started (or the last
/// [`clear_traces`](crate::clear_traces)), those live now, and the most the
/// site had live at once; sorted by bytes allocated, biggest first.
///
/// Where a snapshot sees what is live at one moment, a profile sees the
/// whole run's volume: short-lived blocks that no snapshot catches.
///
/// Exactness: each thread adds its events to shared per-site totals in
/// batches (64 events or 64 KiB per site); the reading thread's own batches
/// are added first, another live thread's can lag by one batch per site,
/// and a thread that has exited has added everything. With sampling, the
/// figures are those of the sampled blocks, not estimates of the whole.
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

impl fmt::Display for Profile {
    /// A short table: the ten biggest sites by volume.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Whole-run profile: {} sites, {} allocated",
            self.sites.len(),
            format_size(self.bytes_allocated() as f64, false)
        )?;
        for (i, s) in self.sites.iter().take(10).enumerate() {
            writeln!(
                f,
                "#{}: {}: {} in {} blocks, {} live in {}, at most {} live",
                i + 1,
                s.traceback,
                format_size(s.bytes_allocated as f64, false),
                s.allocs,
                format_size(s.live_bytes as f64, false),
                s.live_blocks(),
                format_size(s.max_live_bytes as f64, false),
            )?;
        }
        Ok(())
    }
}
