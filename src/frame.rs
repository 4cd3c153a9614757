//! Frames and tracebacks: where code was when it allocated, most recent
//! first. Plain data, a leaf of the crate.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::scope::untraced;
use crate::source::source_line;

/// One frame of a traceback: where code was when it called further down.
///
/// # Examples
///
/// ```
/// let f = tracealloc::Frame::new("src/model.rs", 42, "model::Model::load");
/// assert_eq!((f.filename(), f.lineno(), f.function()), ("src/model.rs", 42, "model::Model::load"));
/// assert_eq!(f.to_string(), "src/model.rs:42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Frame(pub(crate) Arc<FrameData>);

/// A frame's contents, shared: a traceback holds one pointer per frame, so
/// tracebacks that repeat a frame (recursion, or a loaded dump that says so)
/// cost 8 bytes a repetition.
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct FrameData {
    pub(crate) filename: Arc<str>,
    pub(crate) lineno: u32,
    pub(crate) function: Arc<str>,
    /// The path `filename` shortens (a dependency's in the cargo registry,
    /// the standard library's in the toolchain); the same `Arc` when it is
    /// not shortened.
    pub(crate) path: Arc<str>,
}

impl Frame {
    /// A frame at `filename:lineno` in `function`.
    pub fn new(filename: &str, lineno: u32, function: &str) -> Frame {
        Frame::from_parts(filename.into(), lineno, function.into())
    }

    pub(crate) fn from_parts(filename: Arc<str>, lineno: u32, function: Arc<str>) -> Frame {
        Frame(Arc::new(FrameData {
            path: filename.clone(),
            filename,
            lineno,
            function,
        }))
    }

    /// A frame whose `filename` is the short form of `path`.
    pub(crate) fn at_path(
        filename: Arc<str>,
        path: Arc<str>,
        lineno: u32,
        function: Arc<str>,
    ) -> Frame {
        Frame(Arc::new(FrameData {
            filename,
            lineno,
            function,
            path,
        }))
    }

    /// The source file's path as the debug information gives it (relative
    /// to the working directory when it lies under it), where
    /// [`filename`](Frame::filename) shortens it: a dependency's
    /// `~/.cargo/registry/src/index.crates.io-…/serde_json-1.0.154/src/map.rs`
    /// is `serde_json-1.0.154/src/map.rs` there. Reports read source lines
    /// from this path. A frame loaded from a dump has its `filename` here.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// The source file, relative to the working directory when it lies
    /// under it; `<unknown>` when the debug information does not say.
    pub fn filename(&self) -> &str {
        &self.0.filename
    }

    /// The line number; 0 when unknown (and in [`KeyType::Filename`](crate::KeyType::Filename) and
    /// [`KeyType::Function`](crate::KeyType::Function) statistics).
    pub fn lineno(&self) -> u32 {
        self.0.lineno
    }

    /// The function, demangled without its hash; `<unknown>` when the symbol
    /// is not known.
    pub fn function(&self) -> &str {
        &self.0.function
    }

    /// Why this frame has no source line, and what to do about it: `None`
    /// when it has one. The reports ([`Top`](crate::Top),
    /// [`TopDiff`](crate::TopDiff)) print it once under the table when an
    /// entry needs it.
    ///
    /// - `<unknown>:0`: the binary has no line tables for this code.
    /// - `file.rs:0`: the line tables give the address no line (code the
    ///   compiler made from several lines, or from none).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::Frame;
    ///
    /// assert!(Frame::new("src/model.rs", 42, "load").line_hint().is_none());
    /// let hint = Frame::new("<unknown>", 0, "load").line_hint().unwrap();
    /// assert!(hint.contains("line-tables-only"));
    /// ```
    pub fn line_hint(&self) -> Option<&'static str> {
        if self.0.filename.as_ref() == "<unknown>" {
            Some(
                "<unknown>:0 means the binary has no line tables for that code: \
                 in release builds, set `debug = \"line-tables-only\"` under \
                 [profile.release] in Cargo.toml, and do not strip the binary",
            )
        } else if self.0.lineno == 0 {
            Some(
                "a line 0 is code the compiler made from several lines or from \
                 none (drop glue, a macro's expansion, a closure's shim): \
                 KeyType::Traceback, with start(n) for n > 1, shows who called it",
            )
        } else {
            None
        }
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("filename", &self.0.filename)
            .field("lineno", &self.0.lineno)
            .field("function", &self.0.function)
            .finish()
    }
}

impl fmt::Display for Frame {
    /// `filename:lineno`, as tracemalloc writes a frame.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.filename, self.0.lineno)
    }
}

impl PartialOrd for Frame {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frame {
    /// By (filename, lineno), as tracemalloc orders frames; then function.
    fn cmp(&self, other: &Self) -> Ordering {
        (&*self.0.filename, self.0.lineno, &*self.0.function).cmp(&(
            &*other.0.filename,
            other.0.lineno,
            &*other.0.function,
        ))
    }
}

/// Where a block was allocated: frames, **index 0 the allocating call site**
/// (most recent first), at most the session's traceback limit of them.
///
/// # Examples
///
/// ```
/// use tracealloc::{Frame, Traceback};
///
/// let t = Traceback::new(vec![Frame::new("src/a.rs", 3, "a::f"), Frame::new("src/main.rs", 9, "main")]);
/// assert_eq!(t.frames()[0].lineno(), 3);
/// assert_eq!(t.total_nframe(), 2);
/// assert_eq!(t.to_string(), "src/a.rs:3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Traceback {
    /// The kept frames, then the user's frames (see
    /// [`Traceback::user_frames`]): one block, so that a traceback (cloned
    /// into every trace of its stack) stays 24 bytes.
    all: Arc<[Frame]>,
    /// How many of `all` are kept frames (the rest are the user frames).
    kept: u32,
    total_nframe: u32,
}

impl Traceback {
    /// A traceback of `frames`, most recent first, none cut off.
    pub fn new(frames: Vec<Frame>) -> Traceback {
        let total = frames.len();
        Traceback::from_parts(frames.into(), total)
    }

    /// The same frames, from a stack that had `total_nframe` frames before
    /// the traceback limit cut it (at least the number of frames kept).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Traceback};
    ///
    /// let t = Traceback::new(vec![Frame::new("src/a.rs", 3, "a::f")]).with_total_nframe(12);
    /// assert_eq!((t.frames().len(), t.total_nframe()), (1, 12));
    /// ```
    pub fn with_total_nframe(self, total_nframe: usize) -> Traceback {
        let total_nframe = total_nframe.max(self.kept as usize);
        Traceback {
            total_nframe: u32::try_from(total_nframe).unwrap_or(u32::MAX),
            ..self
        }
    }

    /// A traceback of `frames` from a stack of `total_nframe` frames (at
    /// most `u32::MAX` of either are counted).
    pub(crate) fn from_parts(frames: Arc<[Frame]>, total_nframe: usize) -> Traceback {
        let kept = u32::try_from(frames.len()).unwrap_or(u32::MAX);
        Traceback {
            all: frames,
            kept,
            total_nframe: u32::try_from(total_nframe.max(kept as usize)).unwrap_or(u32::MAX),
        }
    }

    /// The same frames, with `frames` as the frames of the user's own code
    /// in the whole stack, most recent first (see
    /// [`user_frames`](Traceback::user_frames)): for tools and tests that
    /// build snapshots.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Traceback};
    ///
    /// let deep = Traceback::new(vec![Frame::new("candle-core-0.11.1/src/dtype.rs", 167, "to_cpu_storage")])
    ///     .with_total_nframe(40)
    ///     .with_user_frames(vec![Frame::new("src/main.rs", 196, "main")]);
    /// assert_eq!(deep.user_frame().unwrap().to_string(), "src/main.rs:196");
    /// ```
    pub fn with_user_frames(self, frames: Vec<Frame>) -> Traceback {
        if frames.is_empty() && self.user_frames().is_empty() {
            return self;
        }
        let mut all: Vec<Frame> = self.frames().to_vec();
        all.extend(frames);
        Traceback {
            all: all.into(),
            ..self
        }
    }

    /// The first frame, from the allocating one down, of the user's own
    /// code: the workspace's sources, not the standard library's, this
    /// crate's, or a dependency's from the cargo registry or a git checkout
    /// (a `.rs` file under neither). Found in the whole captured stack (its
    /// first 64 frames), so it is there even when the traceback limit keeps
    /// fewer frames than lie above it: a model loaded through candle is
    /// allocated 40 frames below the user's `src/main.rs:196`, and this is
    /// that line. `None` when no frame of the stack is the user's (a thread
    /// a library started and runs), and for tracebacks built without one.
    /// [`KeyType::UserLine`](crate::KeyType::UserLine) groups by it.
    pub fn user_frame(&self) -> Option<&Frame> {
        self.user_frames().first()
    }

    /// Every frame of the user's own code in the captured stack (see
    /// [`user_frame`](Traceback::user_frame)), most recent first: the line
    /// that called the library, then the lines that called that one, out to
    /// `main` or the thread's closure. Kept apart from
    /// [`frames`](Traceback::frames), which tracemalloc's keys use.
    pub fn user_frames(&self) -> &[Frame] {
        &self.all[self.kept as usize..]
    }

    /// The frames, most recent (the allocating call site) first.
    pub fn frames(&self) -> &[Frame] {
        &self.all[..self.kept as usize]
    }

    /// The block the frames live in: one per stack, shared by the clones
    /// (a key for grouping traces by stack).
    pub(crate) fn frames_ptr(&self) -> usize {
        self.all.as_ptr() as usize
    }

    /// How many frames the stack had (after trimming the allocator's and the
    /// standard library's), before the traceback limit cut it.
    pub fn total_nframe(&self) -> usize {
        self.total_nframe as usize
    }

    /// The traceback as tracemalloc's `Traceback.format` writes it: for each
    /// frame `  File "src/model.rs", line 42`, then the source line (stripped,
    /// indented by four) when the file can be read. Oldest frame first unless
    /// `most_recent_first`; `limit` keeps only the most recent `limit` frames.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Traceback};
    ///
    /// let t = Traceback::new(vec![Frame::new("no/such/a.rs", 3, "a::f"), Frame::new("no/such/main.rs", 9, "main")]);
    /// assert_eq!(t.format(None, false), ["  File \"no/such/main.rs\", line 9", "  File \"no/such/a.rs\", line 3"]);
    /// assert_eq!(t.format(Some(1), true), ["  File \"no/such/a.rs\", line 3"]);
    /// ```
    pub fn format(&self, limit: Option<usize>, most_recent_first: bool) -> Vec<String> {
        untraced(|| {
            let frames = self.frames();
            let keep = limit.map_or(frames.len(), |l| l.min(frames.len()));
            let recent = &frames[..keep];
            let ordered: Vec<&Frame> = if most_recent_first {
                recent.iter().collect()
            } else {
                recent.iter().rev().collect()
            };
            let mut lines = Vec::new();
            for f in ordered {
                lines.push(format!("  File \"{}\", line {}", f.0.filename, f.0.lineno));
                if let Some(src) = source_line(&f.0.path, f.0.lineno) {
                    lines.push(format!("    {src}"));
                }
            }
            lines
        })
    }
}

impl fmt::Display for Traceback {
    /// The allocating call site, `filename:lineno` (`<unknown>:0` if empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.frames().first() {
            Some(frame) => fmt::Display::fmt(frame, f),
            None => f.write_str("<unknown>:0"),
        }
    }
}

impl PartialOrd for Traceback {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Traceback {
    /// As tracemalloc compares tracebacks: frame by frame from the oldest.
    /// (Then by user frame, so that the order agrees with equality.)
    fn cmp(&self, other: &Self) -> Ordering {
        self.frames()
            .iter()
            .rev()
            .cmp(other.frames().iter().rev())
            .then_with(|| self.user_frames().cmp(other.user_frames()))
    }
}
