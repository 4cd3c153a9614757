//! Return addresses -> frames (function, file, line; inlined frames
//! included), cached, and the trimming that makes frame 0 the user's line.
//!
//! Resolution runs only outside the allocation path (snapshots,
//! `object_traceback`), under the reentrancy guard: the symbolizer allocates
//! and locks while it resolves, and what it keeps is tracer memory. On Linux
//! x86_64 the symbolizer is `addr2line` over mapped files
//! ([`dwarf`], one unit's lines and functions parsed at a time); elsewhere,
//! the `backtrace` crate's.
//!
//! ```text
//! CACHE   Mutex<Option<Cache>>, taken by take_snapshot / object_traceback
//!   ips         return address -> its frames, innermost (inlined) first
//!   stacks      (stack id, nframe) -> trimmed Traceback
//!   strings     one Arc<str> per distinct file or function name
//!   symbolizer  the DWARF contexts and mapped files (dropped by
//!               release_symbols, reloaded when a new address needs them)
//! ```
//!
//! Nothing in `ips`, `stacks` and `strings` is ever evicted: entries depend
//! on code addresses only, and snapshots share the cached strings and frames
//! (a cached value is only ever freed under the guard, so a snapshot dropped
//! by user code never frees tracer memory).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::sync::Mutex;

use crate::frame::{Frame, Traceback};
use crate::guard::Guard;
use crate::tracer::stacks::{self, StackId};
use crate::tracer::{lock, Held};

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod dwarf;

/// A resolved frame, and whether it is the tracer's, the unwinder's or the
/// standard library's (decided on the full path, before it is shortened).
type Classified = (Frame, bool);

/// A trimmed traceback, and each of its frames' return address.
type Located = (Traceback, Arc<[usize]>);

struct Cache {
    ips: HashMap<usize, Arc<[Classified]>>,
    /// The trimmed traceback, and each of its frames' return address.
    stacks: HashMap<(StackId, usize), Located>,
    strings: HashSet<Arc<str>>,
    /// The working directory, to show paths under it as relative ones.
    cwd: Option<String>,
    symbolizer: Symbolizer,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

const UNKNOWN: &str = "<unknown>";

impl Cache {
    fn new() -> Cache {
        Cache {
            ips: HashMap::new(),
            stacks: HashMap::new(),
            strings: HashSet::new(),
            cwd: std::env::current_dir()
                .ok()
                .and_then(|d| d.to_str().map(|s| format!("{}/", s.trim_end_matches('/')))),
            symbolizer: Symbolizer::default(),
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    /// The frames at return address `ip`, innermost first.
    fn frames_at(&mut self, ip: usize) -> Arc<[Classified]> {
        if let Some(f) = self.ips.get(&ip) {
            return f.clone();
        }
        // A return address points after the call; `ip - 1` is inside it
        // (the `backtrace` crate looked one byte further back, still inside
        // the call instruction: the same line-table row).
        let mut raw = self.symbolizer.resolve(ip.saturating_sub(1));
        for (_, _, function) in &mut raw {
            if let Some(f) = function {
                *f = demangle(f.as_bytes());
            }
        }
        if raw
            .iter()
            .all(|(file, _, function)| file.is_none() && function.is_none())
        {
            // In no object the symbolizer can read (a file deleted since it
            // was loaded, or a mapping without a file), or one the `backtrace`
            // crate did not see when it first ran (it never reads the list
            // again: one loaded later with `dlopen`): the dynamic linker
            // still names the object and the nearest exported function.
            raw.clear();
            raw.push(match crate::sys::object_at(ip.saturating_sub(1)) {
                Some((object, symbol)) => (Some(object), 0, symbol.map(|s| demangle(&s))),
                None => (None, 0, None),
            });
        }
        let frames: Vec<Classified> = raw
            .into_iter()
            .map(|(file, line, function)| {
                let function = function.as_deref().unwrap_or(UNKNOWN);
                let internal = is_internal(file.as_deref().unwrap_or(UNKNOWN), function);
                let file = match (&file, &self.cwd) {
                    (Some(f), Some(cwd)) => normalize(f.strip_prefix(cwd.as_str()).unwrap_or(f)),
                    (Some(f), None) => normalize(f),
                    (None, _) => UNKNOWN.to_string(),
                };
                let line = if file == UNKNOWN { 0 } else { line };
                let short = shorten(&file);
                let filename = self.intern(short);
                let path = if short.len() == file.len() {
                    filename.clone()
                } else {
                    self.intern(&file)
                };
                let function = self.intern(function);
                (Frame::at_path(filename, path, line, function), internal)
            })
            .collect();
        let frames: Arc<[Classified]> = frames.into();
        self.ips.insert(ip, frames.clone());
        frames
    }
}

/// A symbol's name as the `backtrace` crate prints it with `{:#}`: a Rust
/// name demangled without its hash, anything else as it is.
fn demangle(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match std::str::from_utf8(raw).map(rustc_demangle::try_demangle) {
        Ok(Ok(d)) => format!("{d:#}"),
        _ => text.into_owned(),
    }
}

/// The symbolizer of other targets: the `backtrace` crate's, which keeps
/// what it loads in its own global cache.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
#[derive(Default)]
struct Symbolizer {
    /// Heap bytes its cache took, as measured.
    heap: i64,
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
impl Symbolizer {
    fn resolve(&mut self, addr: usize) -> Vec<(Option<String>, u32, Option<String>)> {
        let addr = addr as *mut std::ffi::c_void;
        // Once without keeping anything, to measure what the crate keeps.
        let before = crate::counters::tracer_heap_bytes() as i64;
        backtrace::resolve(addr, |_| {});
        self.heap += crate::counters::tracer_heap_bytes() as i64 - before;
        let mut raw = Vec::new();
        backtrace::resolve(addr, |sym| {
            let function = sym.name().map(|n| n.as_bytes().to_vec());
            let function = function.map(|f| String::from_utf8_lossy(&f).into_owned());
            let file = sym.filename().map(|p| p.to_string_lossy().into_owned());
            raw.push((file, sym.lineno().unwrap_or(0), function));
        });
        raw
    }

    fn heap_bytes(&self) -> usize {
        usize::try_from(self.heap).unwrap_or(0)
    }

    /// The crate maps files it does not show: not known.
    fn mapped_resident(&self) -> usize {
        0
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use dwarf::Symbolizer;

/// Drops what the symbolizer loaded to resolve call sites: the debug
/// information's parsed units, the decompressed sections and symbol
/// indexes on the heap (tracer memory), and the mapped files (resident
/// pages in the RSS); on glibc, the freed heap is trimmed back to the
/// system (`malloc_trim`). What snapshots share stays: every return address
/// resolved so far keeps its frames, so taking a snapshot of the same call
/// sites later loads nothing; a new call site reloads what it needs.
///
/// Call it after the snapshots whose cost you want out of the process's
/// figures: [`symbolizer_memory`] says what it holds.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(8);
///     let v = vec![0u8; 1 << 16];
///     let first = tracealloc::take_snapshot();
///     tracealloc::release_symbols();
///     assert_eq!(tracealloc::symbolizer_memory(), 0);
///     // The same call sites, from the cache.
///     let second = tracealloc::take_snapshot();
///     assert_eq!(first.traces().len(), second.traces().len());
///     tracealloc::stop();
///     drop(v);
/// }
/// ```
pub fn release_symbols() {
    let g = Guard::hold();
    let mut guard = lock(&CACHE);
    if let Some(cache) = guard.as_mut() {
        // Freed under the guard: tracer memory, never the user's.
        cache.symbolizer = Symbolizer::default();
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        backtrace::clear_symbol_cache();
    }
    drop(guard);
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    crate::sys::map::trim_heap();
    drop(g);
}

/// Bytes the symbolizer holds now: its heap (the parsed debug information,
/// decompressed sections and symbol indexes, counted in
/// [`tracer_memory`](crate::tracer_memory)) plus the pages of the files it
/// mapped that are resident (counted in [`rss`](crate::rss), not on the
/// heap). 0 before the first snapshot and after [`release_symbols`].
///
/// The heap part is measured as the tracer memory that loading took: other
/// threads' tracer memory taken at the same moment is counted in it. Where
/// the `backtrace` crate resolves (targets other than Linux x86_64), its
/// mapped files are not seen: heap only.
///
/// # Examples
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// fn main() {
///     tracealloc::start(8);
///     let v = vec![0u8; 1 << 16];
///     let snapshot = tracealloc::take_snapshot();
///     println!("symbolizer: {} KiB", tracealloc::symbolizer_memory() / 1024);
///     tracealloc::release_symbols();
///     assert_eq!(tracealloc::symbolizer_memory(), 0);
///     tracealloc::stop();
///     drop((v, snapshot));
/// }
/// ```
pub fn symbolizer_memory() -> usize {
    let g = Guard::hold();
    let guard = lock(&CACHE);
    let n = guard.as_ref().map_or(0, |c| {
        c.symbolizer.heap_bytes() + c.symbolizer.mapped_resident()
    });
    drop(guard);
    drop(g);
    n
}

/// A dependency's or the toolchain's path, from the crate on: the cargo
/// registry's `…/registry/src/index.crates.io-<hash>/serde_json-1.0.154/src/map.rs`
/// is `serde_json-1.0.154/src/map.rs`, a git dependency's
/// `…/git/checkouts/<repo>-<hash>/<rev>/src/lib.rs` is
/// `<repo>-<hash>/<rev>/src/lib.rs`, and the standard library's
/// `/rustc/<hash>/library/core/src/…` (or a toolchain's
/// `…/lib/rustlib/src/rust/library/core/src/…`) is `library/core/src/…`,
/// as dhat-rs shortens them. Other paths are kept.
fn shorten(path: &str) -> &str {
    if let Some(i) = path.find("/registry/src/") {
        let rest = &path[i + "/registry/src/".len()..];
        // Past the registry's folder (index.crates.io-<hash>).
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    if let Some(i) = path.find("/git/checkouts/") {
        return &path[i + "/git/checkouts/".len()..];
    }
    if path.starts_with("/rustc/") || path.contains("/lib/rustlib/src/rust/") {
        if let Some(i) = path.find("/library/") {
            return &path[i + 1..];
        }
    }
    path
}

/// `path` with `.` components and `dir/..` pairs removed (lexically: a
/// module included with `#[path = "../x.rs"]` shows as `x.rs`, not
/// `tests/../x.rs`).
fn normalize(path: &str) -> String {
    if !path.contains("/.") {
        return path.to_string();
    }
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The trimmed traceback of stack `id`, at most `nframe` frames. Must run
/// under the reentrancy guard.
pub(crate) fn traceback(g: &Guard, id: StackId, nframe: usize) -> Traceback {
    traceback_at(g, id, nframe).0
}

/// [`traceback`], and the return address of each of its frames (inlined
/// frames share their caller's; 0 for a stack with no frame at all).
pub(crate) fn traceback_at(_g: &Guard, id: StackId, nframe: usize) -> Located {
    let mut guard = lock(&CACHE);
    let cache = guard.get_or_insert_with(Cache::new);
    if let Some(t) = cache.stacks.get(&(id, nframe)) {
        return t.clone();
    }
    let ips = stacks::record(id).map_or(&[][..], |r| r.frames());
    let mut all: Vec<Classified> = Vec::new();
    let mut at: Vec<usize> = Vec::new();
    for &ip in ips {
        let frames = cache.frames_at(ip);
        at.extend(std::iter::repeat_n(ip, frames.len()));
        all.extend(frames.iter().cloned());
    }
    let t = trimmed(all, &mut at, nframe);
    let t = (t, Arc::from(at));
    cache.stacks.insert((id, nframe), t.clone());
    t
}

/// Drops this crate's, the unwinder's and the standard library's frames from
/// the top, and those below the last user frame (the runtime that called
/// `main` or started the thread), then keeps `nframe`. If nothing but such frames (or unknown
/// ones) is left, the stack is kept from the first frame not known to be
/// internal: better an unhelpful frame than none. A stack with no frame at
/// all (nothing could be captured) is `<unknown>:0`, as tracemalloc gives
/// it: every traceback has a frame 0. `at`, each frame's address, is
/// trimmed alike.
fn trimmed(mut frames: Vec<Classified>, at: &mut Vec<usize>, nframe: usize) -> Traceback {
    if frames.is_empty() {
        let unknown: Arc<str> = Arc::from(UNKNOWN);
        frames.push((Frame::from_parts(unknown.clone(), 0, unknown), false));
        at.clear();
        at.push(0);
    }
    let first_user = frames
        .iter()
        .position(|(f, internal)| !internal && f.filename() != UNKNOWN);
    let k = first_user.unwrap_or_else(|| {
        frames
            .iter()
            .position(|(_, internal)| !internal)
            .unwrap_or(0)
    });
    frames.drain(..k);
    at.drain(..k);
    // The bottom: below the last user frame, the runtime that called it
    // (`lang_start`, `call_once`, libtest's runner, the C `main`,
    // `__libc_start_main`, a thread's start routine) says nothing about
    // the program, and fills flame graphs and DHAT trees; dhat-rs trims it
    // too.
    if let Some(last) = frames
        .iter()
        .rposition(|(f, internal)| !internal && f.filename() != UNKNOWN)
    {
        frames.truncate(last + 1);
        at.truncate(last + 1);
    }
    let total = frames.len();
    let user: Vec<Frame> = frames
        .iter()
        .filter(|(f, internal)| !internal && is_own(f.path()))
        .map(|(f, _)| f.clone())
        .collect();
    frames.truncate(nframe);
    at.truncate(nframe);
    let frames: Vec<Frame> = frames.into_iter().map(|(f, _)| f).collect();
    Traceback::from_parts(frames.into(), total).with_user_frames(user)
}

/// Whether source file `path` (a frame's full path, not internal) is the
/// user's own code: a Rust file not from the cargo registry, a git
/// checkout, a vendored dependency or the toolchain (see
/// [`Traceback::user_frame`]).
fn is_own(path: &str) -> bool {
    path.ends_with(".rs")
        && ![
            "/registry/src/",
            "/git/checkouts/",
            "/vendor/",
            "/rustc/",
            "/lib/rustlib/",
        ]
        .iter()
        .any(|d| path.contains(d))
}

/// This crate's sources, as the compiler saw them.
const OUR_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Whether a frame at `file` (the full path from the debug information) in
/// `function` belongs to this crate, the stack unwinder or the standard
/// library. With line tables only, inlined frames carry short function names
/// (`alloc`, `with_capacity_in<u8>`), so the path decides where there is one.
/// Whether `frame` belongs to this crate, the stack unwinder or the
/// standard library (see [`is_internal`]).
pub(crate) fn is_internal_frame(frame: &Frame) -> bool {
    is_internal(frame.path(), frame.function())
}

fn is_internal(file: &str, function: &str) -> bool {
    if file.starts_with("/rustc/")
        || file.contains("/rust/deps/")
        || file.contains("/library/std/src/")
        || file.starts_with(OUR_SOURCES)
        || file.contains("/backtrace-0.")
    {
        return true;
    }
    if [
        "__rust",
        "__rdl_",
        "__rg_",
        "_Unwind_",
        "__libc_start",
        "_start",
    ]
    .iter()
    .any(|p| function.starts_with(p))
    {
        return true;
    }
    // The C library's thread start and the system call that made the
    // thread, by exact name in a file that is not Rust (a user's inlined
    // `clone` has a short name too, with line tables only): with the C
    // library's debug information installed (Debian's libc6-dbg) they have
    // files, and would pass for user code at the bottom of every thread's
    // stack.
    if !file.ends_with(".rs")
        && ["start_thread", "clone", "clone3", "__clone", "__clone3"].contains(&function)
    {
        return true;
    }
    if file != UNKNOWN {
        // Known file, not ours nor std's: user code.
        return false;
    }
    const INTERNAL: [&str; 5] = ["std", "core", "alloc", "tracealloc", "backtrace"];
    let root = |path: &str| {
        path.trim_start_matches('<')
            .split("::")
            .next()
            .unwrap_or("")
            .to_string()
    };
    if let Some(rest) = function.strip_prefix('<') {
        // `<Type as Trait>::method`: internal if the type is, or if the type
        // is a primitive or generic parameter and the trait is.
        if let Some((ty, tr)) = rest.split_once(" as ") {
            let ty_root = root(ty);
            if INTERNAL.contains(&ty_root.as_str()) {
                return true;
            }
            let primitive = !ty.contains("::");
            return primitive && INTERNAL.contains(&root(tr).as_str());
        }
    }
    INTERNAL.contains(&root(function).as_str())
}

/// Takes the cache lock into `held` (before `fork()`).
pub(crate) fn hold(_g: &Guard, held: &mut Held) {
    held.push(Box::new(lock(&CACHE)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize("tests/../examples/model/mod.rs"),
            "examples/model/mod.rs"
        );
        assert_eq!(normalize("/a/./b/../c.rs"), "/a/c.rs");
        assert_eq!(normalize("../up.rs"), "../up.rs");
        assert_eq!(normalize("/../x.rs"), "/x.rs");
        assert_eq!(normalize("src/a.rs"), "src/a.rs");
        assert_eq!(normalize("./src/.hidden/a.rs"), "src/.hidden/a.rs");
    }

    #[test]
    fn internal_frames() {
        let ours = format!("{OUR_SOURCES}alloc.rs");
        let internal = [
            ("/rustc/abc123/library/alloc/src/raw_vec.rs", "finish_grow"),
            (ours.as_str(), "on_alloc"),
            (
                "/home/u/.cargo/registry/src/x/backtrace-0.3.77/src/backtrace/libunwind.rs",
                "trace",
            ),
            ("src/main.rs", "__rust_alloc"),
            (UNKNOWN, "_Unwind_Backtrace"),
            (UNKNOWN, "<alloc::vec::Vec<T> as core::clone::Clone>::clone"),
            (
                UNKNOWN,
                "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            ),
            (UNKNOWN, "tracealloc::alloc::on_alloc"),
            (
                "/rust/deps/hashbrown-0.15.2/src/raw/mod.rs",
                "reserve_rehash",
            ),
            ("./nptl/pthread_create.c", "start_thread"),
            ("../sysdeps/unix/sysv/linux/x86_64/clone3.S", "clone3"),
        ];
        for (file, func) in internal {
            assert!(is_internal(file, func), "{file} {func}");
        }
        let user = [
            ("/work/model/src/model.rs", "load"),
            ("src/main.rs", "main"),
            ("src/model.rs", "clone"),
            (UNKNOWN, "<model::Model as core::fmt::Display>::fmt"),
            (UNKNOWN, "model::main::{{closure}}"),
            (
                "/home/u/.cargo/registry/src/x/hashbrown-0.15.2/src/map.rs",
                "insert",
            ),
        ];
        for (file, func) in user {
            assert!(!is_internal(file, func), "{file} {func}");
        }
    }

    fn frame(file: &str, line: u32, func: &str) -> Classified {
        (Frame::new(file, line, func), is_internal(file, func))
    }

    #[test]
    fn dependency_and_toolchain_paths_are_shortened() {
        assert_eq!(
            shorten("/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde_json-1.0.154/src/map.rs"),
            "serde_json-1.0.154/src/map.rs"
        );
        assert_eq!(
            shorten("/home/u/.cargo/git/checkouts/framehop-0123abcd/9f8e7d6/src/lib.rs"),
            "framehop-0123abcd/9f8e7d6/src/lib.rs"
        );
        assert_eq!(
            shorten("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/iter/mod.rs"),
            "library/core/src/iter/mod.rs"
        );
        assert_eq!(
            shorten("/home/u/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/library/alloc/src/vec/mod.rs"),
            "library/alloc/src/vec/mod.rs"
        );
        for kept in [
            "src/main.rs",
            "/work/app/src/library/x.rs",
            "examples/model/mod.rs",
            UNKNOWN,
        ] {
            assert_eq!(shorten(kept), kept);
        }
    }

    #[test]
    fn trimming_keeps_nframe_user_frames() {
        let ours = format!("{OUR_SOURCES}tracer/mod.rs");
        let frames = vec![
            frame(&ours, 1, "record"),
            frame("/rustc/x/library/alloc/src/alloc.rs", 2, "alloc"),
            frame("src/model.rs", 42, "load"),
            frame("src/main.rs", 7, "main"),
            frame("/rustc/x/library/std/src/rt.rs", 9, "lang_start"),
        ];
        let mut at = vec![10, 20, 30, 40, 50];
        let t = trimmed(frames.clone(), &mut at, 1);
        assert_eq!(t.frames(), &[frames[2].0.clone()]);
        assert_eq!(at, [30], "addresses trimmed alike");
        // The runtime below `main` is gone too.
        assert_eq!(t.total_nframe(), 2);
        let t = trimmed(frames.clone(), &mut vec![0; 5], 10);
        assert_eq!(t.frames().len(), 2);
        assert_eq!(t.frames()[1], frames[3].0);
        // Nothing but internal and unknown frames: keep from the unknown one.
        let t = trimmed(
            vec![frames[0].clone(), frame(UNKNOWN, 0, "mystery")],
            &mut vec![0; 2],
            5,
        );
        assert_eq!(t.frames()[0].function(), "mystery");
        // No frame at all: tracemalloc's `<unknown>:0`.
        let mut at = Vec::new();
        let t = trimmed(Vec::new(), &mut at, 5);
        assert_eq!(at, [0]);
        assert_eq!(t.frames(), &[Frame::new(UNKNOWN, 0, UNKNOWN)]);
        assert_eq!(t.total_nframe(), 1);
        assert_eq!(t.to_string(), "<unknown>:0");
    }
}
