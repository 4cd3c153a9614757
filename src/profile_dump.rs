//! Saved whole-run profiles: [`Profile::save`] / [`Profile::load`], a
//! compact JSON file with a format name and version, written atomically and
//! read as defensively as snapshot dumps (`dump.rs`: the same memory
//! budget, size limits and error type).
//!
//! ```text
//! {"format": "tracealloc-profile", "version": 1,
//!  "info": {"pid": 4242, "command": ["prog", "--flag"], "traceback_limit": 16,
//!           "sample_bytes": null, "capture_method": "frame-pointers",
//!           "tracer_memory": 81920, "started": [1764366000, 5000],
//!           "duration": [3, 250000000], "peak_bytes": 5242880,
//!           "peak_at": [1, 0]},
//!  "strings": ["src/model.rs", "model::load", ...],       file and function names
//!  "frames":  [[0, 42, 1, 94558112], ...],                [file, line, function, address]
//!  "sites":   [[3, [0, 5], 2, 1, 2048, 1, 1024, 2048, 2, 1024, 1, [0, 5000]], ...]}
//!             [total_nframe, [frame, ...], allocs, frees, bytes_allocated,
//!              live_blocks, live_bytes, max_live_bytes, max_live_blocks,
//!              peak_bytes, peak_blocks, total_lifetime]
//!  "paths":   [[7, 12], ...]                              [frame, full path]
//! ```
//!
//! `paths` (optional, as in snapshot dumps) gives the full source path of the
//! frames whose file name is shortened ([`Frame::path`]).
//!
//! Times are `[seconds, nanoseconds]`: `started` since the Unix epoch
//! (seconds negative before it, nanoseconds always forward), durations
//! as they are. A frame is stored once per (frame, code address) and each
//! string once, so sites cost a few bytes each beyond their figures.
//! `capture_method` is `"frame-pointers"`, `"unwinder"` or `null`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::dump::{block, charge, entry, full_paths, load_json, write_atomic, Cost, Error, Seq};
use crate::dump::{MAX_FILE_BYTES, MAX_FRAMES, MAX_STRING};
use crate::frame::{Frame, Traceback};
use crate::method::CaptureMethod;
use crate::profile::{Profile, RunInfo, Site};
use crate::scope::untraced;

pub(crate) const FORMAT: &str = "tracealloc-profile";
const VERSION: u32 = 1;
const SNAPSHOT_FORMAT: &str = "tracealloc-snapshot";

/// A site in the file: see the module's documentation.
type SiteRecord<Frames> = (
    usize,
    Frames,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    (u64, u32),
);

#[derive(Serialize)]
struct SaveInfo<'a> {
    pid: u32,
    command: &'a [String],
    traceback_limit: usize,
    sample_bytes: Option<u64>,
    capture_method: Option<&'static str>,
    tracer_memory: usize,
    started: (i64, u32),
    duration: (u64, u32),
    peak_bytes: u64,
    peak_at: Option<(u64, u32)>,
}

#[derive(Serialize)]
struct SaveFile<'a> {
    format: &'static str,
    version: u32,
    info: SaveInfo<'a>,
    strings: Vec<&'a str>,
    frames: Vec<(u32, u32, u32, u64)>,
    sites: Vec<SiteRecord<Vec<u32>>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    paths: Vec<(u32, u32)>,
}

fn method_name(m: CaptureMethod) -> &'static str {
    match m {
        CaptureMethod::FramePointers => "frame-pointers",
        CaptureMethod::Unwinder => "unwinder",
    }
}

fn duration(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

/// `t` as (seconds, nanoseconds) from the epoch, nanoseconds forward.
fn since_epoch(t: SystemTime) -> (i64, u32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs().min(i64::MAX as u64) as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = d.as_secs().min(i64::MAX as u64) as i64;
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// The file's tables, each string and (frame, address) stored once.
#[derive(Default)]
struct Tables<'a> {
    strings: Vec<&'a str>,
    string_ids: HashMap<&'a str, u32>,
    frames: Vec<(u32, u32, u32, u64)>,
    frame_ids: HashMap<(&'a Frame, usize), u32>,
    /// (frame, path) for the frames whose path is not their file name.
    paths: Vec<(u32, u32)>,
}

impl<'a> Tables<'a> {
    fn string(&mut self, s: &'a str) -> u32 {
        let strings = &mut self.strings;
        *self.string_ids.entry(s).or_insert_with(|| {
            strings.push(s);
            (strings.len() - 1) as u32
        })
    }

    fn frame(&mut self, f: &'a Frame, address: usize) -> u32 {
        if let Some(&id) = self.frame_ids.get(&(f, address)) {
            return id;
        }
        let entry = (
            self.string(f.filename()),
            f.lineno(),
            self.string(f.function()),
            address as u64,
        );
        self.frames.push(entry);
        let id = (self.frames.len() - 1) as u32;
        self.frame_ids.insert((f, address), id);
        if f.path() != f.filename() {
            let path = self.string(f.path());
            self.paths.push((id, path));
        }
        id
    }
}

fn encode(p: &Profile) -> SaveFile<'_> {
    let mut tables = Tables::default();
    let sites = p
        .sites()
        .iter()
        .map(|s| {
            let addresses = s.addresses();
            let ids = s
                .traceback
                .frames()
                .iter()
                .enumerate()
                .map(|(i, f)| tables.frame(f, addresses.get(i).copied().unwrap_or(0)))
                .collect();
            (
                s.traceback.total_nframe(),
                ids,
                s.allocs,
                s.frees,
                s.bytes_allocated,
                s.live_blocks,
                s.live_bytes,
                s.max_live_bytes,
                s.max_live_blocks,
                s.peak_bytes,
                s.peak_blocks,
                duration(s.total_lifetime),
            )
        })
        .collect();
    let info = p.info();
    SaveFile {
        format: FORMAT,
        version: VERSION,
        info: SaveInfo {
            pid: info.pid,
            command: &info.command,
            traceback_limit: info.traceback_limit,
            sample_bytes: info.sample_bytes,
            capture_method: info.capture_method.map(method_name),
            tracer_memory: info.tracer_memory,
            started: since_epoch(info.started),
            duration: duration(info.duration),
            peak_bytes: info.peak_bytes,
            peak_at: info.peak_at.map(duration),
        },
        strings: tables.strings,
        frames: tables.frames,
        sites,
        paths: tables.paths,
    }
}

#[derive(Deserialize)]
struct LoadInfo {
    pid: u32,
    command: Seq<Arc<str>>,
    traceback_limit: usize,
    sample_bytes: Option<u64>,
    capture_method: Option<Arc<str>>,
    tracer_memory: usize,
    started: (i64, u32),
    duration: (u64, u32),
    peak_bytes: u64,
    peak_at: Option<(u64, u32)>,
}

#[derive(Deserialize)]
struct LoadFile {
    format: String,
    version: u32,
    info: LoadInfo,
    strings: Seq<Arc<str>>,
    frames: Seq<(u32, u32, u32, u64)>,
    sites: Seq<SiteRecord<Seq<u32>>>,
    #[serde(default)]
    paths: Option<Seq<(u32, u32)>>,
}

impl Cost for (u32, u32, u32, u64) {
    fn cost(&self) -> u64 {
        24
    }
}

impl Cost for SiteRecord<Seq<u32>> {
    fn cost(&self) -> u64 {
        std::mem::size_of::<Self>() as u64
    }
}

/// Reads a profile written by [`Profile::save`], checking everything.
fn load(path: &Path) -> Result<Profile, Error> {
    load_json(path, "profile", "not a valid profile file", build)
}

/// The profile a parsed file describes; every value charged to the budget.
fn build(
    file: LoadFile,
    err: &dyn Fn(String) -> Error,
    over: &dyn Fn() -> Error,
) -> Result<Profile, Error> {
    if file.format != FORMAT {
        return Err(err(format!("format is {:?}, not {FORMAT:?}", file.format)));
    }
    if file.version != VERSION {
        return Err(err(format!(
            "format version {} is not supported (this build reads {VERSION})",
            file.version
        )));
    }
    let spend = |bytes: u64| if charge(bytes) { Ok(()) } else { Err(over()) };
    let LoadFile {
        info,
        strings,
        frames,
        sites,
        paths,
        ..
    } = file;
    let time = |(secs, nanos): (u64, u32), what: &str| {
        if nanos >= 1_000_000_000 {
            Err(err(format!(
                "{what} has {nanos} nanoseconds, not fewer than a second's"
            )))
        } else {
            Ok(Duration::new(secs, nanos))
        }
    };

    let info = {
        let command = info.command.0;
        spend(block(24 * command.len() as u64))?;
        let mut built = Vec::with_capacity(command.len());
        for a in command {
            spend(block(a.len() as u64))?;
            built.push(a.to_string());
        }
        let capture_method = match info.capture_method.as_deref() {
            None => None,
            Some("frame-pointers") => Some(CaptureMethod::FramePointers),
            Some("unwinder") => Some(CaptureMethod::Unwinder),
            Some(other) => {
                let shown: String = other.chars().take(40).collect();
                return Err(err(format!("capture method {shown:?} is not known")));
            }
        };
        let (secs, nanos) = info.started;
        let after = time((secs.unsigned_abs(), nanos), "the start time")?;
        let started = if secs >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(after)
        } else {
            SystemTime::UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        }
        .ok_or_else(|| {
            err(format!(
                "the start time ({secs} s from the epoch) is out of this system's range"
            ))
        })?;
        RunInfo {
            pid: info.pid,
            command: built,
            traceback_limit: info.traceback_limit,
            sample_bytes: info.sample_bytes,
            capture_method,
            tracer_memory: info.tracer_memory,
            started,
            duration: time(info.duration, "the duration")?,
            peak_bytes: info.peak_bytes,
            peak_at: info
                .peak_at
                .map(|t| time(t, "the peak's time"))
                .transpose()?,
        }
    };

    let strings = strings.0;
    if let Some(s) = strings.iter().find(|s| s.len() > MAX_STRING) {
        return Err(err(format!(
            "a string of {} bytes is over the limit of {MAX_STRING}",
            s.len()
        )));
    }
    let string = |i: u32, who: &str| entry(&strings, i, who, "string", err);
    // A frame: a pointer to a shared 56-byte record, and its address.
    let frames = frames.0;
    spend(block(16 * frames.len() as u64) + frames.len() as u64 * block(16 + 40))?;
    let mut full = full_paths(paths, frames.len(), &strings, &spend, err)?;
    let mut built_frames = Vec::with_capacity(frames.len());
    for (i, (file_i, line, func_i, address)) in frames.into_iter().enumerate() {
        let address = usize::try_from(address).map_err(|_| {
            err(format!(
                "a frame's address {address:#x} is beyond this system's addresses"
            ))
        })?;
        let file = string(file_i, "a frame's file")?;
        let function = string(func_i, "a frame's function")?;
        let frame = match full.remove(&(i as u32)) {
            Some(path) => Frame::at_path(file, path, line, function),
            None => Frame::from_parts(file, line, function),
        };
        built_frames.push((frame, address));
    }
    let frames = built_frames;

    let sites = sites.0;
    spend(block(
        std::mem::size_of::<Site>() as u64 * sites.len() as u64,
    ))?;
    let mut built_sites = Vec::with_capacity(sites.len());
    for record in sites {
        let (total, ids, allocs, frees, bytes_allocated, live_blocks, live_bytes) = (
            record.0,
            record.1 .0,
            record.2,
            record.3,
            record.4,
            record.5,
            record.6,
        );
        let (max_live_bytes, max_live_blocks, peak_bytes, peak_blocks, lifetime) =
            (record.7, record.8, record.9, record.10, record.11);
        if ids.len() > MAX_FRAMES {
            return Err(err(format!(
                "a site's traceback has {} frames, over the limit of {MAX_FRAMES}",
                ids.len()
            )));
        }
        if total < ids.len() {
            return Err(err(format!(
                "a site's traceback keeps {} frames but says it had {total}",
                ids.len()
            )));
        }
        // The traceback's frames (16-byte header, 8 bytes a frame) and the
        // addresses.
        spend(block(16 + 8 * ids.len() as u64) + block(8 * ids.len() as u64))?;
        let mut fs = Vec::with_capacity(ids.len());
        let mut addresses = Vec::with_capacity(ids.len());
        for i in ids {
            let (frame, address) = entry(&frames, i, "a site", "frame", err)?;
            fs.push(frame);
            addresses.push(address);
        }
        built_sites.push(Site {
            traceback: Traceback::from_parts(fs.into(), total),
            allocs,
            frees,
            bytes_allocated,
            live_blocks,
            live_bytes,
            max_live_bytes,
            max_live_blocks,
            peak_bytes,
            peak_blocks,
            total_lifetime: time(lifetime, "a site's total lifetime")?,
            addresses,
        });
    }
    Ok(Profile::new(built_sites, info))
}

/// The file format, built in: save and load.
impl Profile {
    /// Writes the profile to `path` as JSON (format `tracealloc-profile`,
    /// version 1): every figure of every site, the frames' code addresses
    /// and the [`RunInfo`], with file and function names and frames stored
    /// once each. Written as [`Snapshot::dump`](crate::Snapshot::dump) writes: through a
    /// temporary file beside `path`, synced and renamed over it, so `path`
    /// never holds half a file. Read it back with [`Profile::load`], or
    /// with the `tracealloc` command-line tool.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Profile, Snapshot, Trace, Traceback};
    ///
    /// let at = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
    /// let p = Profile::from_snapshot(&Snapshot::new(vec![Trace::new(4096, at)], 1));
    /// let path = std::env::temp_dir().join(format!("tracealloc-doc-profile-{}.json", std::process::id()));
    /// p.save(&path)?;
    /// assert_eq!(Profile::load(&path)?, p);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), tracealloc::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        untraced(|| {
            let file = encode(self);
            write_atomic(path.as_ref(), "save", "profile", |w| {
                serde_json::to_writer(&mut *w, &file)?;
                w.write_all(b"\n")
            })
        })
    }

    /// Reads a profile written by [`save`](Self::save).
    ///
    /// The file is untrusted input, read as [`Snapshot::load`](crate::Snapshot::load) reads a
    /// dump: only a regular file of at most 1 GiB, within a memory bound
    /// of **16 times the file's size plus 16 MiB** (what is read and what
    /// is built, counted as it goes); a file that would need more is
    /// refused. A profile this crate wrote needs a few times its size.
    ///
    /// # Errors
    ///
    /// A missing, unreadable, truncated or corrupt file, another format
    /// (a snapshot dump is one) or version, a value of the wrong type or
    /// out of range (a negative count, nanoseconds of a second or more, a
    /// time the system cannot hold, an unknown capture method), or one past
    /// the limits (not a regular file, over 1 GiB, over the memory bound,
    /// a traceback of more than 4096 frames, a string over 64 KiB, an index
    /// out of its table): an [`Error`] naming the path and what is wrong.
    /// It never panics.
    pub fn load(path: impl AsRef<Path>) -> Result<Profile, Error> {
        untraced(|| load(path.as_ref()))
    }

    /// Whether the file at `path` is a saved profile (`true`) or a snapshot
    /// dump (`false`), by its format name, before either is loaded (with
    /// [`Profile::load`] or [`Snapshot::load`](crate::Snapshot::load), which check everything).
    /// For the `tracealloc` tool, which reads both: not a stable API (the
    /// binary can reach only public items).
    ///
    /// # Errors
    ///
    /// A file that cannot be opened (or is not a regular file), is not
    /// JSON, or whose format name is neither: "cannot load file PATH: ...".
    #[doc(hidden)]
    pub fn __is_profile_file(path: impl AsRef<Path>) -> Result<bool, Error> {
        untraced(|| Ok(matches!(kind_of(path.as_ref())?, Kind::Profile)))
    }
}

/// What a file of this crate holds, by its format name.
pub(crate) enum Kind {
    /// A snapshot dump ([`Snapshot::dump`](crate::Snapshot::dump)).
    Snapshot,
    /// A saved profile ([`Profile::save`]).
    Profile,
}

/// The file's kind by its format name. Both writers begin the file with
/// `{"format":"NAME"`: that is read from the first bytes; another file
/// (written by hand, fields reordered) is scanned for its top-level
/// `format`, the other values skipped without being kept.
pub(crate) fn kind_of(path: &Path) -> Result<Kind, Error> {
    let err = |what: String| Error::about("file", "load", path, what);
    let mut f = crate::sys::open_regular(path, MAX_FILE_BYTES)
        .map_err(|e| err("cannot open".into()).because(e))?;
    let len = f
        .metadata()
        .map_err(|e| err("cannot stat".into()).because(e))?
        .len();
    let mut head = Vec::with_capacity(256);
    (&mut f)
        .take(256)
        .read_to_end(&mut head)
        .map_err(|e| err("cannot read".into()).because(e))?;
    let text = String::from_utf8_lossy(&head);
    let fast = text
        .trim_start()
        .strip_prefix(r#"{"format":""#)
        .and_then(|rest| rest.split_once('"'))
        .map(|(name, _)| name.to_string())
        .filter(|name| name == SNAPSHOT_FORMAT || name == FORMAT);
    let format = match fast {
        Some(name) => name,
        None if text.contains("\"dhatFileVersion\"") => {
            return Err(err(
                "a DHAT file, not a snapshot dump or a saved profile: open it in \
                 valgrind's dh_view.html"
                    .into(),
            ));
        }
        None => {
            #[derive(Deserialize)]
            struct Probe {
                format: String,
            }
            let reader = std::io::Cursor::new(head).chain(f).take(len);
            let probe: Probe = serde_json::from_reader(std::io::BufReader::new(reader))
                .map_err(|e| err("not a tracealloc snapshot or profile file".into()).because(e))?;
            probe.format
        }
    };
    match format.as_str() {
        SNAPSHOT_FORMAT => Ok(Kind::Snapshot),
        FORMAT => Ok(Kind::Profile),
        other => {
            let shown: String = other.chars().take(60).collect();
            Err(err(format!(
                "format is {shown:?}, neither {SNAPSHOT_FORMAT:?} nor {FORMAT:?}"
            )))
        }
    }
}

/// The seeded mutations the tests of tests/ use too.
#[cfg(test)]
#[path = "../tests/mutants/mod.rs"]
mod mutants;

#[cfg(test)]
mod tests {
    use super::mutants::{mutate, Rng};
    use super::*;
    use crate::snapshot::Snapshot;
    use std::path::PathBuf;

    /// What a file of this crate holds.
    #[derive(Debug)]
    enum Loaded {
        /// A snapshot dump ([`Snapshot::dump`]).
        Snapshot(Snapshot),
        /// A saved profile ([`Profile::save`]).
        Profile(Profile),
    }

    /// What the `tracealloc` tool does with a file: the kind, then its
    /// loader.
    fn load_any(path: &Path) -> Result<Loaded, Error> {
        untraced(|| match kind_of(path)? {
            Kind::Snapshot => Snapshot::load(path).map(Loaded::Snapshot),
            Kind::Profile => Profile::load(path).map(Loaded::Profile),
        })
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracealloc-pdump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn site(frames: &[(&str, u32, &str, usize)], n: u64) -> Site {
        Site {
            traceback: Traceback::new(
                frames
                    .iter()
                    .map(|&(file, line, function, _)| Frame::new(file, line, function))
                    .collect(),
            )
            .with_total_nframe(frames.len() + 3),
            allocs: 10 * n,
            frees: 9 * n,
            bytes_allocated: 1000 * n + 7,
            live_blocks: n,
            live_bytes: 100 * n,
            max_live_bytes: 300 * n,
            max_live_blocks: 3 * n,
            peak_bytes: 200 * n,
            peak_blocks: 2 * n,
            total_lifetime: Duration::new(n, 123_456_789),
            addresses: frames.iter().map(|f| f.3).collect(),
        }
    }

    /// A profile using every field, with frames shared between sites (at
    /// one address and at two), a `;` in a name and odd characters.
    pub(crate) fn sample() -> Profile {
        let main = ("src/main.rs", 9, "main", 0x5555_0000_1000);
        Profile::new(
            vec![
                site(
                    &[("src/model.rs", 42, "model::load", 0x5555_0000_2000), main],
                    5,
                ),
                site(
                    &[
                        (
                            "src/buf.rs",
                            3,
                            "<[u8; 4] as buf::Fill>::fill",
                            0x5555_0000_3000,
                        ),
                        main,
                    ],
                    2,
                ),
                site(
                    &[
                        (
                            "src/buf.rs",
                            3,
                            "<[u8; 4] as buf::Fill>::fill",
                            0x5555_0000_3008,
                        ),
                        ("src/é \"quoted\".rs", 1, "f\n", usize::MAX),
                    ],
                    1,
                ),
            ],
            RunInfo {
                pid: 4242,
                command: vec!["prog".into(), "--name=a b".into(), "ü".into()],
                traceback_limit: 16,
                sample_bytes: Some(512 * 1024),
                capture_method: Some(CaptureMethod::FramePointers),
                tracer_memory: 81920,
                started: SystemTime::UNIX_EPOCH + Duration::new(1_764_366_000, 5_000),
                duration: Duration::new(3, 250_000_000),
                peak_bytes: 5 << 20,
                peak_at: Some(Duration::from_millis(1500)),
            },
        )
    }

    fn sample_snapshot() -> Snapshot {
        let a = Traceback::new(vec![
            Frame::new("src/a.rs", 1, "a::f"),
            Frame::new("src/main.rs", 9, "main"),
        ]);
        let b = Traceback::new(vec![Frame::new("src/b.rs", 2, "b::g")]).with_total_nframe(5);
        let traces = (0..100)
            .map(|i| {
                crate::snapshot::Trace::new(
                    i * 8 + 1,
                    if i % 3 == 0 { a.clone() } else { b.clone() },
                )
            })
            .collect();
        Snapshot::new(traces, 2)
    }

    fn saved(p: &Profile, name: &str) -> (PathBuf, String) {
        let path = temp(name);
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    #[test]
    fn shortened_frames_keep_their_full_path() {
        let full =
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/dep-1.0.0/src/lib.rs";
        let mut s = site(&[("x", 7, "dep::f", 0x1000)], 1);
        s.traceback = Traceback::new(vec![Frame::at_path(
            "dep-1.0.0/src/lib.rs".into(),
            full.into(),
            7,
            "dep::f".into(),
        )]);
        let p = Profile::new(vec![s], sample().info().clone());
        let (path, text) = saved(&p, "paths.json");
        assert!(text.contains(r#""paths":[[0,"#), "{text}");
        let loaded = Profile::load(&path).unwrap();
        assert_eq!(loaded, p);
        let f = &loaded.sites()[0].traceback.frames()[0];
        assert_eq!((f.filename(), f.path()), ("dep-1.0.0/src/lib.rs", full));
        // Without the optional table, as files written before it.
        let cut = text.find(r#","paths":"#).unwrap();
        std::fs::write(&path, format!("{}}}", &text[..cut])).unwrap();
        let old = Profile::load(&path).unwrap();
        assert_eq!(
            old.sites()[0].traceback.frames()[0].path(),
            "dep-1.0.0/src/lib.rs"
        );
    }

    #[test]
    fn round_trip_is_exact() {
        let p = sample();
        let (path, text) = saved(&p, "round.json");
        assert!(
            text.starts_with(r#"{"format":"tracealloc-profile","version":1,"info":{"#),
            "{text}"
        );
        assert_eq!(Profile::load(&path).unwrap(), p);
        // Every kind of value, including before the epoch and without
        // optional values.
        for (started, method, peak_at, sample) in [
            (
                SystemTime::UNIX_EPOCH - Duration::new(10, 1),
                Some(CaptureMethod::Unwinder),
                None,
                None,
            ),
            (
                SystemTime::UNIX_EPOCH - Duration::from_secs(10),
                None,
                Some(Duration::ZERO),
                Some(1),
            ),
            (SystemTime::now(), None, None, None),
        ] {
            let mut info = p.info().clone();
            info.started = started;
            info.capture_method = method;
            info.peak_at = peak_at;
            info.sample_bytes = sample;
            let q = Profile::new(p.sites().to_vec(), info);
            let (path, _) = saved(&q, "round-variant.json");
            assert_eq!(Profile::load(&path).unwrap(), q);
        }
        let empty = Profile::new(Vec::new(), p.info().clone());
        let (path, _) = saved(&empty, "empty.json");
        assert_eq!(Profile::load(&path).unwrap(), empty);
        // A snapshot's profile too.
        let s = sample_snapshot();
        let q = Profile::from_snapshot(&s);
        let (path, _) = saved(&q, "from-snapshot.json");
        assert_eq!(Profile::load(&path).unwrap(), q);
    }

    /// Frames and names are stored once: 100 000 sites over a few hundred
    /// frames take tens of bytes a site, and are written and read back
    /// quickly.
    #[test]
    fn large_profiles_stay_small() {
        let frames: Vec<Frame> = (0..500)
            .map(|i| {
                Frame::new(
                    &format!("src/module_{}/file_{}.rs", i % 37, i % 11),
                    i,
                    &format!("crate::module_{}::function_{i}", i % 37),
                )
            })
            .collect();
        let sites = (0..100_000u64)
            .map(|i| {
                let fs: Vec<Frame> = (0..8)
                    .map(|d| frames[((i * 7 + d * 13) % 500) as usize].clone())
                    .collect();
                Site {
                    addresses: (0..8).map(|d| 0x1000 + ((i + d) % 500) as usize).collect(),
                    traceback: Traceback::new(fs),
                    allocs: i,
                    frees: i / 2,
                    bytes_allocated: i * 64,
                    live_blocks: i / 2,
                    live_bytes: i * 32,
                    max_live_bytes: i * 40,
                    max_live_blocks: i,
                    peak_bytes: i,
                    peak_blocks: 1,
                    total_lifetime: Duration::from_nanos(i * 1000),
                }
            })
            .collect();
        let p = Profile::new(sites, sample().info().clone());
        let path = temp("large.json");
        let t = std::time::Instant::now();
        p.save(&path).unwrap();
        let save = t.elapsed();
        let len = std::fs::metadata(&path).unwrap().len();
        let t = std::time::Instant::now();
        let q = Profile::load(&path).unwrap();
        let load = t.elapsed();
        eprintln!("100 000 sites: {len} bytes, saved in {save:?}, loaded in {load:?}");
        assert_eq!(q, p);
        assert!(len < 100_000 * 120, "{len} bytes");
    }

    fn load_text(name: &str, text: &str) -> Error {
        let path = temp(name);
        std::fs::write(&path, text).unwrap();
        let err = Profile::load(&path).expect_err(text.get(..text.len().min(80)).unwrap_or(""));
        assert_eq!(err.path(), path);
        assert!(
            err.to_string().starts_with(&format!(
                "tracealloc: cannot load profile {}: ",
                path.display()
            )),
            "{err}"
        );
        err
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let err = Profile::load(temp("missing.json")).unwrap_err();
        assert!(
            err.to_string().contains("missing.json: cannot open"),
            "{err}"
        );
        let err = Profile::load(temp("")).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");

        let (_, good) = saved(&sample(), "good.json");
        let snapshot_path = temp("snapshot.json");
        sample_snapshot().dump(&snapshot_path).unwrap();
        let snapshot_text = std::fs::read_to_string(&snapshot_path).unwrap();
        let sites_at = good.find("\"sites\":[[").unwrap() + "\"sites\":[[".len();
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "not a valid profile file"),
            (
                "truncated",
                good[..good.len() / 2].to_string(),
                "not a valid profile file",
            ),
            (
                "garbage",
                "\u{0}\u{1}binary".into(),
                "not a valid profile file",
            ),
            ("array", "[1,2,3]".into(), "not a valid profile file"),
            ("snapshot", snapshot_text, "not a valid profile file"),
            (
                "format",
                good.replace("tracealloc-profile", "other"),
                "format is \"other\"",
            ),
            (
                "version",
                good.replace("\"version\":1", "\"version\":2"),
                "format version 2 is not supported",
            ),
            (
                "version type",
                good.replace("\"version\":1", "\"version\":\"1\""),
                "not a valid profile file",
            ),
            (
                "negative count",
                format!("{}-{}", &good[..sites_at], &good[sites_at..]),
                "not a valid profile file",
            ),
            (
                "huge pid",
                good.replace("\"pid\":4242", "\"pid\":4294967296"),
                "not a valid profile file",
            ),
            (
                "float",
                good.replace("\"peak_bytes\":5242880", "\"peak_bytes\":1.5"),
                "not a valid profile file",
            ),
            (
                "missing info field",
                good.replace("\"tracer_memory\":81920,", ""),
                "missing field `tracer_memory`",
            ),
            (
                "nanoseconds",
                good.replace("\"duration\":[3,250000000]", "\"duration\":[3,1000000000]"),
                "the duration has 1000000000 nanoseconds",
            ),
            // (Every i64 of seconds is a time on Linux: the range check
            // is for systems with a narrower SystemTime.)
            (
                "far future",
                good.replace(
                    "\"started\":[1764366000,5000]",
                    "\"started\":[9223372036854775808,5000]",
                ),
                "not a valid profile file",
            ),
            (
                "capture method",
                good.replace("\"frame-pointers\"", "\"magic\""),
                "capture method \"magic\" is not known",
            ),
            (
                "bad string index",
                good.replace("\"frames\":[[0,", "\"frames\":[[4000000000,"),
                "a frame's file refers to string 4000000000",
            ),
            (
                "bad frame index",
                good.replace("\"sites\":[[5,[0,", "\"sites\":[[5,[77,"),
                "a site refers to frame 77",
            ),
            (
                "total below kept",
                good.replace("\"sites\":[[5,", "\"sites\":[[1,"),
                "keeps 2 frames but says it had 1",
            ),
            (
                "short site",
                good.replace(",[5,123456789]]", "]"),
                "not a valid profile file",
            ),
            (
                "deep nesting",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
                "not a valid profile file",
            ),
        ];
        for (name, text, want) in cases {
            assert_ne!(text, good, "{name}: the case changes nothing");
            let err = load_text(&format!("{}.json", name.replace(' ', "-")), &text);
            assert!(err.to_string().contains(want), "{name}: {err}");
        }

        // A million frames in one site's traceback.
        let refs = vec!["0"; 1_000_000].join(",");
        let text = good.replacen(
            "\"sites\":[[5,[0,1]",
            &format!("\"sites\":[[1000000,[{refs}]"),
            1,
        );
        assert_ne!(text, good);
        let err = load_text("million.json", &text);
        assert!(
            err.to_string()
                .contains("a site's traceback has 1000000 frames, over the limit of 4096"),
            "{err}"
        );

        // A string over the limit.
        let text = good.replacen(
            "\"src/main.rs\"",
            &format!("\"{}\"", "x".repeat(100_000)),
            1,
        );
        let err = load_text("long-string.json", &text);
        assert!(
            err.to_string().contains("a string of 100000 bytes"),
            "{err}"
        );

        // Over the memory budget: two million empty command arguments cost
        // far more than the 3 bytes of file each.
        let text = good.replacen(
            "\"command\":[",
            &format!("\"command\":[{}", "\"\",".repeat(2_000_000)),
            1,
        );
        let err = load_text("over-budget.json", &text);
        assert!(
            err.to_string()
                .contains("it would take more memory than the limit"),
            "{err}"
        );
    }

    #[test]
    fn snapshots_and_profiles_are_told_apart() {
        let (profile_path, good) = saved(&sample(), "either-profile.json");
        let snapshot = sample_snapshot();
        let snapshot_path = temp("either-snapshot.json");
        snapshot.dump(&snapshot_path).unwrap();
        match load_any(&snapshot_path).unwrap() {
            Loaded::Snapshot(s) => assert_eq!(s, snapshot),
            other => panic!("{other:?}"),
        }
        match load_any(&profile_path).unwrap() {
            Loaded::Profile(p) => assert_eq!(p, sample()),
            other => panic!("{other:?}"),
        }
        // Fields reordered (the format name last) and spaced: found by the
        // full scan.
        let moved = good.replacen(r#"{"format":"tracealloc-profile","#, "{ ", 1);
        let moved = format!(
            "{}, \"format\": \"tracealloc-profile\"}}\n",
            moved.trim_end().trim_end_matches('}')
        );
        let path = temp("either-moved.json");
        std::fs::write(&path, &moved).unwrap();
        assert!(matches!(load_any(&path).unwrap(), Loaded::Profile(_)));

        let cases = [
            (
                "either-empty.json",
                String::new(),
                "not a tracealloc snapshot or profile file",
            ),
            (
                "either-array.json",
                "[1]".into(),
                "not a tracealloc snapshot or profile file",
            ),
            (
                "either-other.json",
                r#"{"format":"dhat","x":1}"#.into(),
                "format is \"dhat\", neither \"tracealloc-snapshot\" nor \"tracealloc-profile\"",
            ),
            (
                "either-deep.json",
                format!(
                    r#"{{"x":{}{},"format":"dhat"}}"#,
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                ),
                "format is \"dhat\"",
            ),
            (
                "either-no-format.json",
                r#"{"version":1}"#.into(),
                "missing field `format`",
            ),
        ];
        for (name, text, want) in cases {
            let path = temp(name);
            std::fs::write(&path, text).unwrap();
            let err = load_any(&path).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!(
                    "tracealloc: cannot load file {}: ",
                    path.display()
                )),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
        // A truncated profile is found to be one, and refused by its loader.
        let path = temp("either-truncated.json");
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        let err = load_any(&path).unwrap_err();
        assert!(
            err.to_string().contains("cannot load profile")
                && err.to_string().contains("not a valid profile file"),
            "{err}"
        );
        let err = load_any(&temp("either-missing.json")).unwrap_err();
        assert!(err.to_string().contains("cannot open"), "{err}");
    }

    /// xorshift64*, seeded: the mutants are the same on every run.
    const HOSTILE: &[&str] = &[
        "0",
        "1",
        "-1",
        "4096",
        "4097",
        "999999999",
        "1000000000",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "1e309",
        "0.5",
        "null",
        "\"\"",
        "\"unwinder\"",
        "[]",
        "{}",
    ];

    /// Seeded mutants of a valid profile: none makes `load` (nor
    /// `load_any`) panic, and every one that loads can be saved, reloaded
    /// equal, and drawn (folded stacks, the table) without a panic.
    #[test]
    fn mutated_profiles_never_panic() {
        let (_, good) = saved(&sample(), "mutant-good.json");
        let good = good.into_bytes();
        let mut rng = Rng(0x7ace_a110_c9f1_1e01);
        let (mut loaded, mut refused) = (0, 0);
        let mutant = temp("mutant.json");
        let again = temp("mutant-again.json");
        for i in 0..3000 {
            let m = mutate(&good, &mut rng, HOSTILE);
            std::fs::write(&mutant, &m).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                let any = load_any(&mutant);
                let result = Profile::load(&mutant);
                if let Ok(p) = &result {
                    assert!(matches!(any, Ok(Loaded::Profile(_))), "{any:?}");
                    for metric in [
                        crate::profile::Metric::BytesAllocated,
                        crate::profile::Metric::Blocks,
                        crate::profile::Metric::LiveBytes,
                        crate::profile::Metric::MaxLiveBytes,
                        crate::profile::Metric::PeakBytes,
                    ] {
                        std::hint::black_box(p.folded(metric));
                    }
                    std::hint::black_box(p.to_string());
                    for s in p.sites() {
                        std::hint::black_box(s.average_lifetime());
                    }
                    p.save(&again).unwrap();
                    assert_eq!(&Profile::load(&again).unwrap(), p);
                }
                result.is_ok()
            });
            match outcome {
                Ok(true) => loaded += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!(
                    "mutant {i} panicked: {}",
                    String::from_utf8_lossy(&m[..m.len().min(400)])
                ),
            }
        }
        eprintln!("3000 mutants: {loaded} loaded, {refused} refused");
        assert!(
            loaded > 100 && refused > 100,
            "{loaded} loaded, {refused} refused"
        );
    }

    /// Writes the profile fixture of the command-line tool's tests
    /// (`tests/fixtures/cli/profile.json`) when `TRACEALLOC_WRITE_FIXTURES`
    /// is set, and otherwise checks that the committed file is what this
    /// build saves. To regenerate: `TRACEALLOC_WRITE_FIXTURES=1 cargo test
    /// --lib profile_dump::tests::cli_fixture`.
    #[test]
    fn cli_fixture() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli/profile.json");
        if std::env::var_os("TRACEALLOC_WRITE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            sample().save(&path).unwrap();
        }
        assert_eq!(Profile::load(&path).unwrap(), sample());
        let (_, text) = saved(&sample(), "fixture.json");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
