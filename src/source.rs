//! Source lines for reports: read only from regular source files of bounded
//! size, and not at all when turned off.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether reports read source lines (see [`set_source_lines`]).
static SOURCE_LINES: AtomicBool = AtomicBool::new(true);

/// Source files larger than this are not read for a line.
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// File extensions of the source files reports read lines from.
const SOURCE_EXTENSIONS: &[&str] = &[
    "rs", "c", "h", "cc", "cpp", "cxx", "hh", "hpp", "hxx", "inc", "s", "S", "zig", "go", "py",
];

/// Whether the reports ([`Snapshot::top`](crate::Snapshot::top),
/// [`Snapshot::top_diff`](crate::Snapshot::top_diff),
/// [`Traceback::format`](crate::Traceback::format)) print the source line
/// under each frame; on by default. Process-wide.
///
/// A snapshot's file names come from wherever it came from: a loaded dump
/// can name any path. Reports read a line only from a regular file
/// (never a FIFO, a device or a directory; opened without blocking) whose
/// name ends in a source extension (`.rs`, `.c`, `.h`, `.cc`, `.cpp`, ...)
/// and that is at most [`MAX_SOURCE_BYTES`] long. Turn source lines off
/// when showing other people's dumps, or for output that must not depend
/// on the files at hand.
///
/// # Examples
///
/// ```
/// use tracealloc::{Frame, Traceback};
///
/// let here = Traceback::new(vec![Frame::new(file!(), line!(), "main")]);
/// tracealloc::set_source_lines(false);
/// assert_eq!(here.format(None, false).len(), 1, "the frame only");
/// tracealloc::set_source_lines(true);
/// ```
pub fn set_source_lines(on: bool) {
    SOURCE_LINES.store(on, Relaxed);
}

/// Line `lineno` of `filename`, stripped as Python's `str.strip()` strips
/// (Unicode white space and the ASCII separators U+001C to U+001F), after a
/// UTF-8 byte-order mark at the start of the file is dropped (as
/// `linecache` reads it); `None` if unreadable or empty, if source lines
/// are off, or if the file is not one reports read (see
/// [`set_source_lines`]).
pub(crate) fn source_line(filename: &str, lineno: u32) -> Option<String> {
    if lineno == 0 || !SOURCE_LINES.load(Relaxed) {
        return None;
    }
    let path = Path::new(filename);
    let extension = path.extension()?.to_str()?;
    if !SOURCE_EXTENSIONS.contains(&extension) {
        return None;
    }
    let file = crate::sys::open_regular(path, MAX_SOURCE_BYTES).ok()?;
    let mut text = String::new();
    // Bounded again while reading: the file may have grown since.
    file.take(MAX_SOURCE_BYTES).read_to_string(&mut text).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let line = text
        .lines()
        .nth(lineno as usize - 1)?
        .trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
    (!line.is_empty()).then(|| line.to_string())
}
