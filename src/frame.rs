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
    /// [`TopDiff`](crate::TopDiff), [`Duplicates`](crate::Duplicates)) print
    /// it once under the table when an entry needs it.
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
    pub(crate) frames: Arc<[Frame]>,
    pub(crate) total_nframe: usize,
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
        let total_nframe = total_nframe.max(self.frames.len());
        Traceback {
            total_nframe,
            ..self
        }
    }

    pub(crate) fn from_parts(frames: Arc<[Frame]>, total_nframe: usize) -> Traceback {
        Traceback {
            frames,
            total_nframe,
        }
    }

    /// The frames, most recent (the allocating call site) first.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// How many frames the stack had (after trimming the allocator's and the
    /// standard library's), before the traceback limit cut it.
    pub fn total_nframe(&self) -> usize {
        self.total_nframe
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
            let keep = limit.map_or(self.frames.len(), |l| l.min(self.frames.len()));
            let recent = &self.frames[..keep];
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
        match self.frames.first() {
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
    fn cmp(&self, other: &Self) -> Ordering {
        self.frames.iter().rev().cmp(other.frames.iter().rev())
    }
}
