//! `Snapshot::dump` / `Snapshot::load`: a compact JSON file with a format name
//! and version, written atomically, read defensively.
//!
//! ```text
//! {"format": "tracealloc-snapshot", "version": 1,
//!  "traceback_limit": 1, "sample_bytes": null,
//!  "strings":    ["src/model.rs", "model::load", ...],   file and function names
//!  "frames":     [[0, 42, 1], ...],                      [file, line, function]
//!  "tracebacks": [[3, [0, 5]], ...],                     [total_nframe, [frame, ...]]
//!  "traces":     [[5242880, 0], ...],                    [size, traceback]
//!  "paths":      [[7, 12], ...],                         [frame, full path]
//!  "users":      [[0, [9, 4]], ...],                     [traceback, [user frame, ...]]
//!  "contents":   [[0, 1], [1, 8842213302174113], ...]}   [trace, content]
//! ```
//!
//! `users` (optional) gives each traceback's frames of the user's own code
//! ([`Traceback::user_frames`]), `contents` (optional) the content
//! fingerprint of the traces that have one ([`Trace::content`]: 1 for
//! [`Content::Uniform`], else the hash, never 0 or 1 — a hash of 0 or 1 is
//! written as 2); a file without them loads with none.
//!
//! `paths` (optional) gives the full source path of the frames whose file
//! name is shortened (`serde_json-1.0.154/src/map.rs` for a path under
//! `~/.cargo/registry/src/…`; see [`Frame::path`]), so that a loaded dump
//! shows their source lines as the live snapshot did. Files without it load
//! with each path equal to its file name.
//!
//! Strings, frames and tracebacks are stored once each and referred to by
//! index, so a million traces over a few thousand stacks take a few bytes
//! each.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::frame::{Frame, Traceback};
use crate::scope::untraced;
use crate::snapshot::{Content, Snapshot, Trace};

const FORMAT: &str = "tracealloc-snapshot";
const VERSION: u32 = 1;
/// Files larger than this are refused rather than read.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 30;
/// `load` may use this many times the file's size, plus [`BUDGET_EXTRA`].
const BUDGET_PER_FILE_BYTE: u64 = 16;
const BUDGET_EXTRA: u64 = 16 << 20;
/// Tracebacks with more frames than this are refused.
pub(crate) const MAX_FRAMES: usize = 4096;
/// Strings longer than this are refused.
pub(crate) const MAX_STRING: usize = 64 * 1024;

/// Why a snapshot (or another file of this crate: a saved profile, a DHAT,
/// pprof or flame-graph file) could not be written or read: the file, and
/// what is wrong.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    action: &'static str,
    noun: &'static str,
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    fn new(action: &'static str, path: &Path, what: impl Into<String>) -> Error {
        Error {
            path: path.to_path_buf(),
            action,
            noun: "snapshot",
            what: what.into(),
            source: None,
        }
    }

    /// The same error about a file of another kind (`"profile"`): "cannot
    /// `action` `noun` `path`".
    pub(crate) fn about(
        noun: &'static str,
        action: &'static str,
        path: &Path,
        what: impl Into<String>,
    ) -> Error {
        Error {
            noun,
            ..Error::new(action, path, what)
        }
    }

    pub(crate) fn because(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// The file concerned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error underneath, if any (an I/O error, a JSON syntax error),
    /// which the message already quotes: e.g. to tell a missing file
    /// (`std::io::ErrorKind::NotFound`) from a corrupt one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tracealloc: cannot {} {} {}: {}",
            self.action,
            self.noun,
            self.path.display(),
            self.what
        )?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// The cause is in the one line `Display` writes, so `source()` returns
/// `None`: error-chain printers (anyhow's `{:#}`, `Report`s) would show it
/// twice otherwise. [`Error::cause`] gives it to code that needs it.
impl std::error::Error for Error {}

#[derive(Serialize)]
struct DumpFile {
    format: String,
    version: u32,
    traceback_limit: usize,
    sample_bytes: Option<u64>,
    strings: Vec<String>,
    frames: Vec<(u32, u32, u32)>,
    tracebacks: Vec<(usize, Vec<u32>)>,
    traces: Vec<(usize, u32)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    paths: Vec<(u32, u32)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<(u32, Vec<u32>)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contents: Vec<(u64, u64)>,
}

/// A content as the file writes it (see the module's notes); `None` for
/// [`Content::Unread`].
fn content_code(c: Content) -> Option<u64> {
    Some(c.code()).filter(|&code| code != 0)
}

/// The tables of a file being written, each value stored once.
#[derive(Default)]
struct Tables<'a> {
    strings: Vec<String>,
    string_ids: HashMap<&'a str, u32>,
    frames: Vec<(u32, u32, u32)>,
    frame_ids: HashMap<&'a Frame, u32>,
    tracebacks: Vec<(usize, Vec<u32>)>,
    traceback_ids: HashMap<&'a Traceback, u32>,
    /// (frame, path) for the frames whose path is not their file name.
    paths: Vec<(u32, u32)>,
    /// (traceback, frames) for the tracebacks with user frames.
    users: Vec<(u32, Vec<u32>)>,
}

impl<'a> Tables<'a> {
    fn string(&mut self, v: &'a str) -> u32 {
        if let Some(&id) = self.string_ids.get(v) {
            return id;
        }
        self.strings.push(v.to_string());
        let id = (self.strings.len() - 1) as u32;
        self.string_ids.insert(v, id);
        id
    }

    fn frame(&mut self, f: &'a Frame) -> u32 {
        if let Some(&id) = self.frame_ids.get(f) {
            return id;
        }
        let entry = (
            self.string(f.filename()),
            f.lineno(),
            self.string(f.function()),
        );
        self.frames.push(entry);
        let id = (self.frames.len() - 1) as u32;
        self.frame_ids.insert(f, id);
        if f.path() != f.filename() {
            let path = self.string(f.path());
            self.paths.push((id, path));
        }
        id
    }

    fn traceback(&mut self, t: &'a Traceback) -> u32 {
        if let Some(&id) = self.traceback_ids.get(t) {
            return id;
        }
        let ids = t.frames().iter().map(|f| self.frame(f)).collect();
        self.tracebacks.push((t.total_nframe(), ids));
        let id = (self.tracebacks.len() - 1) as u32;
        self.traceback_ids.insert(t, id);
        if !t.user_frames().is_empty() {
            let frames = t.user_frames().iter().map(|f| self.frame(f)).collect();
            self.users.push((id, frames));
        }
        id
    }
}

/// Builds the file's tables from a snapshot.
fn encode(s: &Snapshot) -> DumpFile {
    let mut tables = Tables::default();
    // Traces of one stack share their frames: look them up by that pointer
    // first, and hash a traceback's contents once per stack.
    let mut by_ptr: HashMap<usize, u32> = HashMap::new();
    let contents = s
        .traces()
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i as u64, content_code(t.content())?)))
        .collect();
    let traces = s
        .traces()
        .iter()
        .map(|t| {
            let ptr = t.traceback.frames().as_ptr() as usize;
            let id = *by_ptr
                .entry(ptr)
                .or_insert_with(|| tables.traceback(&t.traceback));
            (t.size, id)
        })
        .collect();
    DumpFile {
        format: FORMAT.to_string(),
        version: VERSION,
        traceback_limit: s.traceback_limit(),
        sample_bytes: s.sample_bytes(),
        strings: tables.strings,
        frames: tables.frames,
        tracebacks: tables.tracebacks,
        traces,
        paths: tables.paths,
        users: tables.users,
        contents,
    }
}

/// Numbers the temporary files of this process's dumps.
static DUMPS: AtomicU64 = AtomicU64::new(0);

/// Writes `s` to `path` atomically (see [`write_atomic`]).
pub(crate) fn dump(s: &Snapshot, path: &Path) -> Result<(), Error> {
    let file = encode(s);
    write_atomic(path, "dump", "snapshot", |w| {
        serde_json::to_writer(&mut *w, &file)?;
        w.write_all(b"\n")
    })
}

/// Writes a file at `path` through a temporary file in the same folder,
/// `<name>.tmp-<pid>-<n>` (`n` counts this process's writes, so concurrent
/// writes never share one; it is created new, never opened over another
/// file), filled by `write`, synced, and renamed over `path` once complete;
/// on failure the temporary file is removed. Errors read "cannot `action`
/// `noun` `path`" ("cannot dump snapshot heap.json").
pub(crate) fn write_atomic(
    path: &Path,
    action: &'static str,
    noun: &'static str,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let err = |what: &str| Error {
        noun,
        ..Error::new(action, path, what)
    };
    let name = path
        .file_name()
        .ok_or_else(|| err("the path names no file"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        DUMPS.fetch_add(1, Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let run = || -> Result<(), Error> {
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| err("cannot create a temporary file beside it").because(e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        write(&mut w).map_err(|e| err("cannot write").because(e))?;
        let f = w
            .into_inner()
            .map_err(|e| err("cannot write").because(e.into_error()))?;
        f.sync_all().map_err(|e| err("cannot sync").because(e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| err("cannot rename the temporary file over it").because(e))
    };
    let result = run();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The file format, built in: dump and load.
impl Snapshot {
    /// Writes the snapshot to `path` as JSON (format `tracealloc-snapshot`,
    /// version 1; strings, frames and tracebacks stored once each). The file
    /// is written beside `path` under a temporary name of its own
    /// (`<name>.tmp-<pid>-<n>`), synced, then renamed over it: a crash never
    /// leaves half a file at `path`, and dumps from several threads or
    /// processes to one path each leave a complete file (the last renamed
    /// wins). A process killed in the middle of a dump leaves its temporary
    /// file behind (as large as the dump had got); nothing removes it later.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let site = Traceback::new(vec![Frame::new("src/model.rs", 42, "load")]);
    /// let s = Snapshot::new(vec![Trace::new(100, site)], 1);
    /// let path = std::env::temp_dir().join(format!("tracealloc-doc-{}.json", std::process::id()));
    /// s.dump(&path)?;
    /// assert_eq!(Snapshot::load(&path)?, s);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), tracealloc::Error>(())
    /// ```
    pub fn dump(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        untraced(|| dump(self, path.as_ref()))
    }

    /// Reads a snapshot written by [`dump`](Self::dump).
    ///
    /// A dump is untrusted input: it is read defensively, and within a
    /// memory bound. `load` uses at most **16 times the file's size plus
    /// 16 MiB** of heap at its peak (what it has read and what it builds,
    /// counted as it goes, each block at least malloc's smallest); a file
    /// that would need more is refused. A dump written by this crate needs
    /// about 4 to 6 times its size (a trace takes 32 bytes once loaded, from
    /// about 11 in the file). Frames are
    /// shared: a traceback holds 8 bytes per frame, however often the file
    /// repeats one.
    ///
    /// Only a regular file is read (never a FIFO or a device, and opening
    /// one does not block).
    ///
    /// # Errors
    ///
    /// A missing, unreadable, truncated or corrupt file, another format or
    /// version, or one past the limits (not a regular file, over 1 GiB, over
    /// the memory bound, a traceback of more than 4096 frames, a string over
    /// 64 KiB, a block over `isize::MAX` bytes, an index out of range): an
    /// [`Error`] naming the path and what is wrong. It never panics.
    pub fn load(path: impl AsRef<Path>) -> Result<Snapshot, Error> {
        untraced(|| load(path.as_ref()))
    }
}

// ---------------------------------------------------------------------------
// Loading, with a memory budget: every element read from the file and every
// value built from it is charged to the budget of the load (what it will
// take in memory, Vec growth included), and the load stops with an error as
// soon as the budget is spent. So a small file that says "repeat this frame
// 4096 times" in every traceback cannot make the reader take gigabytes.

thread_local! {
    /// Bytes the load running on this thread may still use.
    static BUDGET: Cell<u64> = const { Cell::new(0) };
}

/// Takes `bytes` from this thread's load budget; false if it is spent.
pub(crate) fn charge(bytes: u64) -> bool {
    BUDGET.with(|b| match b.get().checked_sub(bytes) {
        Some(left) => {
            b.set(left);
            true
        }
        None => false,
    })
}

pub(crate) const OVER_BUDGET: &str = "it would take more memory than the limit";

/// The least a heap block takes (glibc's smallest chunk).
const HEAP_BLOCK: u64 = 32;

/// What a heap block of `bytes` takes at least.
pub(crate) fn block(bytes: u64) -> u64 {
    bytes.next_multiple_of(16).max(HEAP_BLOCK)
}

/// What an element of the file costs once read, in bytes.
pub(crate) trait Cost {
    fn cost(&self) -> u64;
}

impl Cost for u32 {
    fn cost(&self) -> u64 {
        4
    }
}

impl Cost for Arc<str> {
    fn cost(&self) -> u64 {
        // The pointer, and the shared allocation (two counts, the bytes,
        // rounded up by malloc).
        16 + block(16 + self.len() as u64)
    }
}

impl Cost for (u32, u32, u32) {
    fn cost(&self) -> u64 {
        12
    }
}

impl Cost for (usize, Seq<u32>) {
    fn cost(&self) -> u64 {
        32
    }
}

impl Cost for (u32, u32) {
    fn cost(&self) -> u64 {
        8
    }
}

impl Cost for (usize, u32) {
    fn cost(&self) -> u64 {
        16
    }
}

impl Cost for (u32, Seq<u32>) {
    fn cost(&self) -> u64 {
        32
    }
}

impl Cost for (u64, u64) {
    fn cost(&self) -> u64 {
        16
    }
}

/// A JSON array read element by element, each charged (twice its size, for
/// the vector's growth) before the next is read.
pub(crate) struct Seq<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de> + Cost> Deserialize<'de> for Seq<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Cost> serde::de::Visitor<'de> for Visit<T> {
            type Value = Seq<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Seq<T>, A::Error> {
                // The vector's own block, however small (malloc's least).
                if !charge(HEAP_BLOCK) {
                    return Err(serde::de::Error::custom(OVER_BUDGET));
                }
                let mut v = Vec::new();
                while let Some(x) = a.next_element::<T>()? {
                    if !charge(2 * x.cost()) {
                        return Err(serde::de::Error::custom(OVER_BUDGET));
                    }
                    v.push(x);
                }
                Ok(Seq(v))
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct LoadFile {
    format: String,
    version: u32,
    traceback_limit: usize,
    sample_bytes: Option<u64>,
    strings: Seq<Arc<str>>,
    frames: Seq<(u32, u32, u32)>,
    tracebacks: Seq<(usize, Seq<u32>)>,
    traces: Seq<(usize, u32)>,
    #[serde(default)]
    paths: Option<Seq<(u32, u32)>>,
    #[serde(default)]
    users: Option<Seq<(u32, Seq<u32>)>>,
    #[serde(default)]
    contents: Option<Seq<(u64, u64)>>,
}

/// Reads a snapshot written by [`dump`], checking everything, within a
/// memory budget of 16 times the file's size plus 16 MiB.
pub(crate) fn load(path: &Path) -> Result<Snapshot, Error> {
    load_json(path, "snapshot", "not a valid snapshot file", build)
}

/// Reads the JSON file at `path` as an `F` and makes an `R` of it with
/// `build`, within a memory budget of 16 times the file's size plus 16 MiB,
/// charged through [`charge`] (by [`Seq`] while reading, by `build` after).
/// Only a regular file of at most [`MAX_FILE_BYTES`] is read. `build` gets
/// the error makers: for what is wrong, and for a spent budget. Errors read
/// "cannot load `noun` `path`"; a file that is not JSON of the shape of `F`
/// is `invalid`.
pub(crate) fn load_json<F: serde::de::DeserializeOwned, R>(
    path: &Path,
    noun: &'static str,
    invalid: &str,
    build: impl FnOnce(F, &dyn Fn(String) -> Error, &dyn Fn() -> Error) -> Result<R, Error>,
) -> Result<R, Error> {
    let err = |what: String| Error::about(noun, "load", path, what);
    let f = crate::sys::open_regular(path, MAX_FILE_BYTES)
        .map_err(|e| err("cannot open".into()).because(e))?;
    let len = f
        .metadata()
        .map_err(|e| err("cannot stat".into()).because(e))?
        .len();
    let budget = len * BUDGET_PER_FILE_BYTE + BUDGET_EXTRA;
    let over = || {
        err(format!(
            "{OVER_BUDGET} ({budget} bytes: {BUDGET_PER_FILE_BYTE} times the file's size plus {} MiB)",
            BUDGET_EXTRA >> 20
        ))
    };
    let outer = BUDGET.with(|b| b.replace(budget));
    let result = (|| {
        // Read no further than the size checked, should the file grow.
        let file: F = serde_json::from_reader(BufReader::with_capacity(1 << 20, f.take(len)))
            .map_err(|e| {
                if e.to_string().starts_with(OVER_BUDGET) {
                    over()
                } else {
                    err(invalid.into()).because(e)
                }
            })?;
        build(file, &err, &over)
    })();
    BUDGET.with(|b| b.set(outer));
    result
}

/// Entry `i` of a table a file refers to, or an error saying what refers
/// out of it ("`who` refers to `kind` `i`, but there are ...").
pub(crate) fn entry<T: Clone>(
    table: &[T],
    i: u32,
    who: &str,
    kind: &str,
    err: &dyn Fn(String) -> Error,
) -> Result<T, Error> {
    table.get(i as usize).cloned().ok_or_else(|| {
        err(format!(
            "{who} refers to {kind} {i}, but there are {}",
            table.len()
        ))
    })
}

/// The optional `paths` table of a snapshot or profile file (`[frame, full
/// path]`; see [`Frame::path`]) as full path by frame, for a file of
/// `frames` frames and the string table `strings`; charged to the budget
/// through `spend`.
pub(crate) fn full_paths(
    paths: Option<Seq<(u32, u32)>>,
    frames: usize,
    strings: &[Arc<str>],
    spend: &dyn Fn(u64) -> Result<(), Error>,
    err: &dyn Fn(String) -> Error,
) -> Result<HashMap<u32, Arc<str>>, Error> {
    let paths = paths.map_or_else(Vec::new, |p| p.0);
    spend(paths.len() as u64 * 48)?;
    let mut full = HashMap::with_capacity(paths.len());
    for (frame_i, path_i) in paths {
        if frame_i as usize >= frames {
            return Err(err(format!(
                "a path refers to frame {frame_i}, but there are {frames}"
            )));
        }
        full.insert(
            frame_i,
            entry(strings, path_i, "a frame's path", "string", err)?,
        );
    }
    Ok(full)
}

/// The snapshot a parsed file describes; every value charged to the budget.
fn build(
    file: LoadFile,
    err: &dyn Fn(String) -> Error,
    over: &dyn Fn() -> Error,
) -> Result<Snapshot, Error> {
    if file.format != FORMAT {
        return Err(err(format!("format is {:?}, not {FORMAT:?}", file.format)));
    }
    if file.version != VERSION {
        return Err(err(format!(
            "format version {} is not supported (this build reads {VERSION})",
            file.version
        )));
    }
    let LoadFile {
        traceback_limit,
        sample_bytes,
        strings,
        frames,
        tracebacks,
        traces,
        paths,
        users,
        contents,
        ..
    } = file;
    let strings = strings.0;
    if let Some(s) = strings.iter().find(|s| s.len() > MAX_STRING) {
        return Err(err(format!(
            "a string of {} bytes is over the limit of {MAX_STRING}",
            s.len()
        )));
    }
    // The memory a built value takes, from the budget.
    let spend = |bytes: u64| if charge(bytes) { Ok(()) } else { Err(over()) };
    let string = |i: u32, who: &str| entry(&strings, i, who, "string", err);
    // Built values, each vector allocated once at its length: a frame is a
    // pointer to a shared 56-byte record; a traceback, 24 bytes and its
    // frames' block (8 bytes a frame after a 16-byte header); a trace, 40
    // bytes, its content's 8 included. The arrays read from the file are
    // dropped as they are used.
    let frames = frames.0;
    spend(block(8 * frames.len() as u64) + frames.len() as u64 * block(16 + 40))?;
    let mut full = full_paths(paths, frames.len(), &strings, &spend, err)?;
    let mut built_frames = Vec::with_capacity(frames.len());
    for (i, (file_i, line, func_i)) in frames.into_iter().enumerate() {
        let file = string(file_i, "a frame's file")?;
        let function = string(func_i, "a frame's function")?;
        built_frames.push(match full.remove(&(i as u32)) {
            Some(path) => Frame::at_path(file, path, line, function),
            None => Frame::from_parts(file, line, function),
        });
    }
    let frames = built_frames;
    let tracebacks = tracebacks.0;
    spend(block(24 * tracebacks.len() as u64))?;
    let users = users.map_or_else(Vec::new, |u| u.0);
    spend(users.len() as u64 * 48)?;
    let mut user_of: HashMap<u32, Vec<Frame>> = HashMap::with_capacity(users.len());
    for (tb, ids) in users {
        if tb as usize >= tracebacks.len() {
            return Err(err(format!(
                "user frames refer to traceback {tb}, but there are {}",
                tracebacks.len()
            )));
        }
        if ids.0.len() > MAX_FRAMES {
            return Err(err(format!(
                "a traceback has {} user frames, over the limit of {MAX_FRAMES}",
                ids.0.len()
            )));
        }
        spend(8 * ids.0.len() as u64)?;
        let fs = ids
            .0
            .into_iter()
            .map(|i| entry(&frames, i, "a user frame", "frame", err))
            .collect::<Result<Vec<Frame>, Error>>()?;
        user_of.insert(tb, fs);
    }
    let mut built_tracebacks = Vec::with_capacity(tracebacks.len());
    for (total, ids) in tracebacks {
        let ids = ids.0;
        if ids.len() > MAX_FRAMES {
            return Err(err(format!(
                "a traceback has {} frames, over the limit of {MAX_FRAMES}",
                ids.len()
            )));
        }
        if total < ids.len() {
            return Err(err(format!(
                "a traceback keeps {} frames but says it had {total}",
                ids.len()
            )));
        }
        spend(block(16 + 8 * ids.len() as u64))?;
        let mut fs = Vec::with_capacity(ids.len());
        for i in ids {
            fs.push(entry(&frames, i, "a traceback", "frame", err)?);
        }
        let t = Traceback::from_parts(fs.into(), total);
        built_tracebacks.push(match user_of.remove(&(built_tracebacks.len() as u32)) {
            Some(u) => t.with_user_frames(u),
            None => t,
        });
    }
    let tracebacks = built_tracebacks;
    let traces = traces.0;
    spend(block(40 * traces.len() as u64))?;
    let contents = contents.map_or_else(Vec::new, |c| c.0);
    let mut content_of: HashMap<u64, Content> = HashMap::with_capacity(contents.len());
    spend(contents.len() as u64 * 32)?;
    for (i, code) in contents {
        if i >= traces.len() as u64 || code == 0 {
            return Err(err(format!(
                "a content refers to trace {i} (of {}) with code {code}",
                traces.len()
            )));
        }
        content_of.insert(i, Content::of_code(code));
    }
    let mut built_traces = Vec::with_capacity(traces.len());
    for (size, tb) in traces {
        if size > isize::MAX as usize {
            return Err(err(format!(
                "a trace of {size} bytes is larger than any block can be"
            )));
        }
        let traceback = entry(&tracebacks, tb, "a trace", "traceback", err)?;
        let content = content_of
            .remove(&(built_traces.len() as u64))
            .unwrap_or(Content::Unread);
        built_traces.push(Trace::new(size, traceback).with_content(content));
    }
    let traces = built_traces;
    Ok(Snapshot::from_parts(traces, traceback_limit, sample_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracealloc-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn sample() -> Snapshot {
        let a = Traceback::new(vec![
            Frame::new("src/a.rs", 1, "a::f"),
            Frame::new("src/main.rs", 9, "main"),
        ]);
        let b = Traceback::new(vec![
            Frame::new("dep-1.0.0/src/b.rs", 2, "b::g"),
            Frame::new("dep-1.0.0/src/lib.rs", 9, "load"),
        ])
        .with_total_nframe(30)
        .with_user_frames(vec![
            Frame::new("src/load.rs", 3, "load"),
            Frame::new("src/main.rs", 12, "main"),
        ]);
        let content = |i: usize| match i % 4 {
            0 => Content::Unread,
            1 => Content::Uniform,
            2 => Content::Hash((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).max(2)),
            _ => Content::Hash(u64::MAX - i as u64),
        };
        let traces = (0..1000).map(|i| {
            Trace::new(i * 8 + 1, if i % 3 == 0 { a.clone() } else { b.clone() })
                .with_content(content(i))
        });
        let mut s = Snapshot::new(traces.collect(), 2);
        s = Snapshot::from_parts(s.traces().to_vec(), 2, Some(4096));
        s
    }

    #[test]
    fn round_trip_is_exact_and_compact() {
        let s = sample();
        let path = temp("round.json");
        s.dump(&path).unwrap();
        assert_eq!(Snapshot::load(&path).unwrap(), s);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"format":"tracealloc-snapshot","version":1,"#),
            "{}",
            &text[..60]
        );
        // Interned: each file name appears once, whatever the trace count.
        assert_eq!(text.matches("src/main.rs").count(), 1);
        assert!(
            text.len() < 1000 * 32,
            "{} bytes for 1000 traces",
            text.len()
        );
    }

    /// A dependency's frame keeps its full path through a dump, so that a
    /// loaded dump reads its source line as the live snapshot did; a path
    /// that names a frame out of the table is an error.
    #[test]
    fn shortened_frames_keep_their_full_path() {
        let full =
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/dep-1.0.0/src/lib.rs";
        let f = Frame::at_path(
            "dep-1.0.0/src/lib.rs".into(),
            full.into(),
            7,
            "dep::f".into(),
        );
        let tb = Traceback::new(vec![f, Frame::new("src/main.rs", 9, "main")]);
        let s = Snapshot::new(vec![Trace::new(64, tb)], 2);
        let path = temp("paths.json");
        s.dump(&path).unwrap();
        let loaded = Snapshot::load(&path).unwrap();
        assert_eq!(loaded, s);
        let frame = &loaded.traces()[0].traceback.frames()[0];
        assert_eq!(
            (frame.filename(), frame.path()),
            ("dep-1.0.0/src/lib.rs", full)
        );
        // The frame whose path is its name has no entry.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.trim_end().ends_with(r#""paths":[[0,2]]}"#), "{text}");
        std::fs::write(
            &path,
            text.replace(r#""paths":[[0,2]]"#, r#""paths":[[5,2]]"#),
        )
        .unwrap();
        let e = Snapshot::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("a path refers to frame 5, but there are 2"),
            "{e}"
        );
        // A file without paths (as before) loads with paths equal to names.
        std::fs::write(&path, text.replace(r#","paths":[[0,2]]"#, "")).unwrap();
        let old = Snapshot::load(&path).unwrap();
        let frame = &old.traces()[0].traceback.frames()[0];
        assert_eq!(frame.path(), "dep-1.0.0/src/lib.rs");
    }

    #[test]
    fn dump_replaces_atomically_and_cleans_up() {
        let path = temp("replace.json");
        std::fs::write(&path, "old").unwrap();
        sample().dump(&path).unwrap();
        assert!(Snapshot::load(&path).is_ok());
        let dir = path.parent().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let missing_dir = temp("no/such/dir/x.json");
        let err = sample().dump(&missing_dir).unwrap_err();
        assert_eq!(err.path(), missing_dir);
        assert!(
            err.to_string()
                .starts_with("tracealloc: cannot dump snapshot "),
            "{err}"
        );
    }

    /// Two threads dumping to one path, over and over: every dump succeeds,
    /// the file is always one complete snapshot, and no temporary file is
    /// left.
    #[test]
    fn concurrent_dumps_to_one_path_all_succeed() {
        let dir = temp("concurrent");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap.json");
        let s = Arc::new(sample());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (s, path) = (s.clone(), path.clone());
                std::thread::spawn(move || (0..100).filter(|_| s.dump(&path).is_err()).count())
            })
            .collect();
        let failed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(failed, 0, "{failed} of 200 dumps failed");
        assert_eq!(Snapshot::load(&path).unwrap(), *s);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["snap.json"]);
    }

    fn load_text(name: &str, text: &str) -> Error {
        let path = temp(name);
        std::fs::write(&path, text).unwrap();
        let err = Snapshot::load(&path).expect_err(text.get(..text.len().min(80)).unwrap_or(""));
        assert_eq!(err.path(), path);
        err
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let err = Snapshot::load(temp("missing.json")).unwrap_err();
        assert!(
            err.to_string().contains("missing.json: cannot open"),
            "{err}"
        );

        let good = {
            let path = temp("good.json");
            sample().dump(&path).unwrap();
            std::fs::read_to_string(&path).unwrap()
        };
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "not a valid snapshot file"),
            (
                "truncated",
                good[..good.len() / 2].to_string(),
                "not a valid snapshot file",
            ),
            (
                "garbage",
                "\u{0}\u{1}binary".into(),
                "not a valid snapshot file",
            ),
            ("array", "[1,2,3]".into(), "not a valid snapshot file"),
            (
                "format",
                good.replace("tracealloc-snapshot", "other"),
                "format is \"other\"",
            ),
            (
                "version",
                good.replace("\"version\":1", "\"version\":99"),
                "format version 99 is not supported",
            ),
            (
                "huge number",
                good.replace(
                    "\"traceback_limit\":2",
                    "\"traceback_limit\":99999999999999999999999",
                ),
                "not a valid snapshot file",
            ),
            (
                "negative",
                good.replace("\"traceback_limit\":2", "\"traceback_limit\":-2"),
                "not a valid snapshot file",
            ),
            (
                "bad string index",
                good.replace("\"frames\":[[0,", "\"frames\":[[4000000000,"),
                "refers to string 4000000000",
            ),
            (
                "bad frame index",
                good.replace("\"tracebacks\":[[2,[0,", "\"tracebacks\":[[2,[77,"),
                "refers to frame 77",
            ),
            (
                "bad traceback index",
                good.replace("\"traces\":[[1,0]", "\"traces\":[[1,9]"),
                "refers to traceback 9",
            ),
            (
                "total below kept",
                good.replace("\"tracebacks\":[[2,", "\"tracebacks\":[[1,"),
                "keeps 2 frames but says it had 1",
            ),
            (
                "deep nesting",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
                "not a valid snapshot file",
            ),
        ];
        for (name, text, want) in cases {
            let err = load_text(&format!("{}.json", name.replace(' ', "-")), &text);
            assert!(err.to_string().contains(want), "{name}: {err}");
        }

        // A million frames in one traceback.
        let frames: Vec<String> = (0..1_000_000).map(|_| "0".to_string()).collect();
        let text = format!(
            r#"{{"format":"tracealloc-snapshot","version":1,"traceback_limit":1,"sample_bytes":null,"strings":["a"],"frames":[[0,1,0]],"tracebacks":[[1000000,[{}]]],"traces":[[8,0]]}}"#,
            frames.join(",")
        );
        let err = load_text("million.json", &text);
        assert!(
            err.to_string()
                .contains("a traceback has 1000000 frames, over the limit of 4096"),
            "{err}"
        );

        // A string over the limit.
        let text = format!(
            r#"{{"format":"tracealloc-snapshot","version":1,"traceback_limit":1,"sample_bytes":null,"strings":["{}"],"frames":[],"tracebacks":[],"traces":[]}}"#,
            "x".repeat(100_000)
        );
        let err = load_text("long-string.json", &text);
        assert!(
            err.to_string().contains("a string of 100000 bytes"),
            "{err}"
        );
    }
}
