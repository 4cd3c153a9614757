//! memory_profiler's line-by-line table: the runtime of `#[tracealloc::profile]`.
//!
//! The attribute (in `macros/`) rewrites a function so that it calls
//! [`__ProfiledFn::enter`] first and opens a [`__ProfiledLine`] guard around
//! each statement; this file measures, accumulates per line, and prints.
//!
//! # What the columns are
//!
//! For each line, over every time it ran (`Occurrences`):
//!
//! | column        | whose           | what |
//! |---------------|-----------------|------|
//! | `Mem usage`   | process         | the heap (bytes in live blocks, all threads: `stats().current_bytes`) right after the line's last run |
//! | `Increment`   | process         | the heap after the line minus before it, summed over its runs (memory_profiler's column, from exact counters instead of RSS) |
//! | `Thread net`  | calling thread  | bytes this thread allocated minus freed in the line, summed: `Increment` without the other threads |
//! | `Peak inside` | calling thread  | the most this thread's heap grew above the line's start at any moment inside it (the highest over its runs): a line that allocates 500 MiB and frees it shows `+0` but a 500 MiB peak |
//! | `Allocs`      | calling thread  | new blocks allocated in the line (`alloc`, `alloc_zeroed`; not reallocs), summed |
//! | `RSS`, `RSS incr` | process     | with `#[tracealloc::profile(rss)]`: the resident set size after the line's last run, and its change summed over runs |
//!
//! The first row, the `fn` line, holds the whole call (memory_profiler puts
//! the memory at entry there; the header line gives it). A line that holds a
//! block (`if`, `match`, a loop) counts everything that ran inside it; the
//! lines inside also have rows of their own.
//!
//! # Global state
//!
//! ```text
//! TABLES   Mutex<VecDeque<LineTable>>: the last KEPT tables, pushed by the
//!          profiled functions on return, read by line_tables(); allocated
//!          and freed under the reentrancy guard
//! OUTPUT   Mutex<Sink>: where tables are printed; set by
//!          line_profile_output, read on every return
//! ```
//!
//! Everything this runtime allocates (the per-call accumulators, the
//! tables, their text, the RSS reads) is allocated and freed under the
//! reentrancy [`Guard`]: tracer memory, never in `stats()`, `measure` or a
//! row. Each line costs two readings of the counters (`heap_bytes_now`) and
//! a nested measure scope; `rss` adds two reads of `/proc/self/statm`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::counters::{heap_bytes_now, require_installed, thread_bytes, MeasureScope};
use crate::dump::Error;
use crate::guard::{Guard, Internal};
use crate::scope::untraced;

/// How many tables [`line_tables`] keeps (the last ones).
const KEPT: usize = 64;

static TABLES: Mutex<VecDeque<LineTable>> = Mutex::new(VecDeque::new());
static OUTPUT: Mutex<LineOutput> = Mutex::new(LineOutput::Stderr);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line of a profiled function's table (see [`LineTable`] for the
/// columns, and whose figures they are).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRow {
    /// The line number in the source file.
    pub line: u32,
    /// The line as written (its indentation kept).
    pub source: String,
    /// How many times the line ran; 0 for lines that are not statements
    /// (comments, braces) or did not run. All figures below are 0 (or
    /// `None`) when this is.
    pub occurrences: u64,
    /// `Mem usage`: the process heap in bytes (all threads) right after the
    /// line's last run.
    pub mem_usage: u64,
    /// `Increment`: the process heap after the line minus before it, in
    /// bytes, summed over its runs.
    pub increment: i64,
    /// The calling thread's bytes allocated minus freed in the line, summed
    /// over its runs (equal to `increment` when no other thread allocated
    /// meanwhile).
    pub thread_net: i64,
    /// The most the calling thread's heap grew above the line's start at
    /// any moment inside it, the highest over its runs.
    pub peak_inside: u64,
    /// New blocks the calling thread allocated in the line (not counting
    /// reallocations), summed over its runs.
    pub allocs: u64,
    /// The resident set size in bytes after the line's last run, with
    /// `#[tracealloc::profile(rss)]` on systems that report it.
    pub rss: Option<u64>,
    /// The resident set size after the line minus before it, summed over
    /// its runs, when `rss` is.
    pub rss_increment: Option<i64>,
}

/// The table `#[tracealloc::profile]` prints for one call of a function:
/// memory_profiler's `Line #`, `Mem usage`, `Increment`, `Occurrences` and
/// `Line Contents`, and what memory_profiler cannot see.
///
/// `Mem usage` is the process heap (bytes in live blocks, all threads, as
/// [`stats`](crate::stats)`().current_bytes`) after the line, and
/// `Increment` its change across the line: exact counters where
/// memory_profiler samples RSS. The calling thread's share: `Thread net`
/// (its bytes allocated minus freed in the line), `Peak inside` (the most
/// its heap grew above the line's start inside the line: a line that
/// allocates 500 MiB and frees it shows an increment of 0 and a 500 MiB
/// peak) and `Allocs` (blocks it allocated). With
/// `#[tracealloc::profile(rss)]`, `RSS` and `RSS incr` (process-wide)
/// stand beside the heap.
///
/// Lines that run several times (in loops) add up: `Occurrences`, the
/// increments, the allocations; `Mem usage` is after the last run and
/// `Peak inside` the highest. The first row, the `fn` line, is the whole
/// call. A line holding a block (`if`, `match`, a loop) counts all that ran
/// in it, and the lines inside have their own rows. Every line from `fn` to
/// the closing brace has a row; those that are not statements, or did not
/// run, are empty, as in memory_profiler.
///
/// `Display` writes the table as printed (MiB with one decimal, or the
/// formatter's precision: `{:.3}`).
///
/// # Cost
///
/// A measured line costs about 0.25 µs each time it runs (release build,
/// x86-64: one sum of the per-thread counters for the process heap, and a
/// nested thread-scoped measure; the reading at a line's start is reused
/// from the previous line's end when this thread allocated nothing in
/// between). Reading RSS as well (`#[tracealloc::profile(rss)]`) costs about
/// 14 µs per line, two reads of `/proc/self/statm`: fifty times more, hence
/// opt-in. Profile functions whose lines do real work, not a hot inner
/// loop.
///
/// # Examples
///
#[cfg_attr(feature = "macros", doc = "```")]
#[cfg_attr(not(feature = "macros"), doc = "```ignore")]
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// #[tracealloc::profile]
/// fn load() -> Vec<u8> {
///     // A scratch buffer, freed on the same line.
///     drop(std::hint::black_box(vec![0u8; 8 << 20]));
///     std::hint::black_box(vec![1u8; 1 << 20])
/// }
///
/// fn main() {
///     // Keep the tables in memory only (the default prints them to stderr).
///     tracealloc::line_profile_output(tracealloc::LineOutput::Off).unwrap();
///     let weights = load();
///     let table = tracealloc::line_tables().pop().unwrap();
///     print!("{table}");
///
///     let scratch = table.rows.iter().find(|r| r.source.contains("drop(")).unwrap();
///     assert_eq!((scratch.thread_net, scratch.peak_inside), (0, 8 << 20));
///     let last = table.rows.iter().find(|r| r.source.contains("vec![1u8")).unwrap();
///     assert_eq!((last.thread_net, last.allocs), (1 << 20, 1));
///     drop(weights);
/// }
/// ```
///
/// prints
///
/// ```text
/// Filename: src/main.rs
/// Function: demo::load at line 5 (heap at entry: 0.0 MiB; its row: the whole call)
///
/// Line #    Mem usage    Increment  Occurrences    Thread net  Peak inside   Allocs   Line Contents
/// =================================================================================================
///      5      1.0 MiB      1.0 MiB            1       1.0 MiB      8.0 MiB        2   fn load() -> Vec<u8> {
///      6                                                                                  // A scratch buffer, freed on the same line.
///      7      0.0 MiB      0.0 MiB            1       0.0 MiB      8.0 MiB        1       drop(std::hint::black_box(vec![0u8; 8 << 20]));
///      8      1.0 MiB      1.0 MiB            1       1.0 MiB      1.0 MiB        1       std::hint::black_box(vec![1u8; 1 << 20])
///      9                                                                              }
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineTable {
    /// The function's name.
    pub function: String,
    /// The module it is in (`module_path!()`).
    pub module: String,
    /// The source file (`file!()`).
    pub file: String,
    /// The line of the `fn` (the first row).
    pub line: u32,
    /// The process heap in bytes when the call began.
    pub heap_at_entry: u64,
    /// Whether the call ended by unwinding (a panic): the figures go up to
    /// the panic, and the panic went on.
    pub panicked: bool,
    /// One row per line, from the `fn` line to the closing brace.
    pub rows: Vec<LineRow>,
}

impl LineTable {
    /// The row of source line `line`, if the table has it.
    ///
    /// # Examples
    ///
    /// ```
    /// for table in tracealloc::line_tables() {
    ///     let call = table.row(table.line).expect("the fn line has a row");
    ///     println!("{}: {} allocations", table.function, call.allocs);
    /// }
    /// ```
    pub fn row(&self, line: u32) -> Option<&LineRow> {
        self.rows.iter().find(|r| r.line == line)
    }
}

fn mib(bytes: f64, precision: usize) -> String {
    format!("{:.*} MiB", precision, bytes / (1u64 << 20) as f64)
}

impl fmt::Display for LineTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(1).min(9);
        let w = 12.max(p + 9);
        let with_rss = self.rows.iter().any(|r| r.rss.is_some());
        writeln!(f, "Filename: {}", self.file)?;
        write!(
            f,
            "Function: {}::{} at line {} (heap at entry: {:.p$} MiB; its row: the whole call)",
            self.module,
            self.function,
            self.line,
            self.heap_at_entry as f64 / (1u64 << 20) as f64
        )?;
        if self.panicked {
            write!(f, " (unwound by a panic: the figures go up to it)")?;
        }
        writeln!(f, "\n")?;
        let mut header = format!(
            "{:>6} {:>w$} {:>w$}  {:>11}  {:>w$} {:>w$} {:>8}",
            "Line #",
            "Mem usage",
            "Increment",
            "Occurrences",
            "Thread net",
            "Peak inside",
            "Allocs"
        );
        if with_rss {
            header += &format!("  {:>w$} {:>w$}", "RSS", "RSS incr");
        }
        header += "   Line Contents";
        writeln!(f, "{header}")?;
        writeln!(f, "{}", "=".repeat(header.chars().count()))?;
        for r in &self.rows {
            let mut line = if r.occurrences == 0 {
                format!(
                    "{:>6} {:>w$} {:>w$}  {:>11}  {:>w$} {:>w$} {:>8}",
                    r.line, "", "", "", "", "", ""
                )
            } else {
                format!(
                    "{:>6} {:>w$} {:>w$}  {:>11}  {:>w$} {:>w$} {:>8}",
                    r.line,
                    mib(r.mem_usage as f64, p),
                    mib(r.increment as f64, p),
                    r.occurrences,
                    mib(r.thread_net as f64, p),
                    mib(r.peak_inside as f64, p),
                    r.allocs
                )
            };
            if with_rss {
                match (r.rss, r.rss_increment) {
                    (Some(rss), Some(inc)) if r.occurrences > 0 => {
                        line += &format!("  {:>w$} {:>w$}", mib(rss as f64, p), mib(inc as f64, p))
                    }
                    _ => line += &format!("  {:>w$} {:>w$}", "", ""),
                }
            }
            if r.source.is_empty() {
                writeln!(f, "{}", line.trim_end())?;
            } else {
                writeln!(f, "{line}   {}", r.source)?;
            }
        }
        Ok(())
    }
}

/// Where `#[tracealloc::profile]` prints its tables (see
/// [`line_profile_output`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineOutput {
    /// The process's standard error, written directly (so the test harness
    /// does not capture it). The default.
    Stderr,
    /// Appended to this file, one table per call.
    File(PathBuf),
    /// Not printed: kept for [`line_tables`] only.
    Off,
}

/// Sets where `#[tracealloc::profile]` prints the table of each call, for
/// every thread: standard error (the default), a file appended to, or
/// nowhere. [`line_tables`] keeps the last tables in every case.
///
/// A file is created if needed and each table appended in one write, so
/// that several threads and processes can share it.
///
/// # Errors
///
/// [`LineOutput::File`] with a file that cannot be opened for appending (a
/// missing directory, no permission): the output stays as it was.
///
/// # Examples
///
/// ```
/// let path = std::env::temp_dir().join("line_tables.txt");
/// tracealloc::line_profile_output(tracealloc::LineOutput::File(path.clone())).unwrap();
/// // ... call #[tracealloc::profile] functions: their tables go to `path`.
/// tracealloc::line_profile_output(tracealloc::LineOutput::Stderr).unwrap();
/// # let _ = std::fs::remove_file(path);
/// ```
pub fn line_profile_output(output: LineOutput) -> Result<(), Error> {
    if let LineOutput::File(path) = &output {
        open_append(path)?;
    }
    // The setting is tracer memory: copied, and the old one dropped, under
    // the guard; `output` (the caller's) is dropped outside it.
    let guard = Guard::hold();
    let copy = match &output {
        LineOutput::File(p) => LineOutput::File(PathBuf::from(p.as_os_str())),
        LineOutput::Stderr => LineOutput::Stderr,
        LineOutput::Off => LineOutput::Off,
    };
    drop(std::mem::replace(&mut *lock(&OUTPUT), copy));
    drop(guard);
    drop(output);
    Ok(())
}

fn open_append(path: &Path) -> Result<std::fs::File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            Error::about(
                "line table",
                "append to",
                path,
                "cannot open it for appending",
            )
            .because(e)
        })
}

/// The tables of the last calls (up to 64) of `#[tracealloc::profile]`
/// functions, on every thread, oldest first.
///
/// # Examples
///
/// ```
/// for table in tracealloc::line_tables() {
///     println!("{table}");
/// }
/// ```
pub fn line_tables() -> Vec<LineTable> {
    untraced(|| lock(&TABLES).iter().cloned().collect())
}

/// One line's figures so far in a call (see [`LineRow`]).
#[derive(Clone, Copy, Default)]
struct Acc {
    occurrences: u64,
    mem_after: u64,
    increment: i64,
    thread_net: i64,
    peak: u64,
    allocs: u64,
    rss_after: Option<u64>,
    rss_increment: i64,
    /// This thread's net bytes in the current run of the line so far: the
    /// base of the next statement's peak when several share the line.
    run_net: i64,
}

/// The resident set size, read under the guard (the read allocates).
fn rss_now() -> Option<u64> {
    let _guard = Guard::hold();
    crate::rss::rss()
}

/// What `#[tracealloc::profile]` knows of a function at compile time; not
/// public API.
#[doc(hidden)]
pub struct __ProfileSite {
    /// The function's name.
    pub function: &'static str,
    /// `module_path!()`.
    pub module: &'static str,
    /// `file!()`.
    pub file: &'static str,
    /// The line of the `fn`.
    pub line: u32,
    /// The function's lines as written, by line number, in order.
    pub source: &'static [(u32, &'static str)],
    /// The line of each slot the line guards name.
    pub lines: &'static [u32],
    /// Whether to read RSS before and after each line.
    pub rss: bool,
    /// Decimals of MiB in the printed table.
    pub precision: u8,
}

/// One call of a profiled function: prints its table when dropped; not
/// public API.
#[doc(hidden)]
pub struct __ProfiledFn {
    site: &'static __ProfileSite,
    accs: Internal<Box<[Cell<Acc>]>>,
    heap_at_entry: u64,
    rss_at_entry: Option<u64>,
    /// The last heap reading of this call, with this thread's
    /// [`thread_bytes`] then: while they are unchanged, this thread has not
    /// touched the heap since, and a line starting now reuses the reading
    /// instead of summing the counters again (half the cost of a line; what
    /// other threads did in the few nanoseconds between is theirs either
    /// way).
    last_heap: Cell<((u64, u64), u64)>,
    scope: MeasureScope,
}

impl __ProfiledFn {
    /// Begins a call (before its first line).
    ///
    /// # Panics
    ///
    /// When no [`TraceAlloc`](crate::TraceAlloc) is the global allocator.
    #[track_caller]
    pub fn enter(site: &'static __ProfileSite) -> Self {
        require_installed("#[tracealloc::profile]");
        // mprof's bracket, when a timeline is running.
        crate::timeline::enter(site.function);
        let accs = Internal::make(|_| {
            site.lines
                .iter()
                .map(|_| Cell::new(Acc::default()))
                .collect::<Box<[_]>>()
        });
        let rss_at_entry = if site.rss { rss_now() } else { None };
        let heap_at_entry = heap_bytes_now();
        let scope = MeasureScope::begin();
        __ProfiledFn {
            site,
            accs,
            heap_at_entry,
            rss_at_entry,
            last_heap: Cell::new((thread_bytes(), heap_at_entry)),
            scope,
        }
    }

    /// The process heap now (see `last_heap`).
    #[inline]
    fn heap_now(&self) -> u64 {
        let mine = thread_bytes();
        let (then, heap) = self.last_heap.get();
        if mine == then {
            return heap;
        }
        let heap = heap_bytes_now();
        self.last_heap.set((mine, heap));
        heap
    }

    /// Begins the line of `slot`; `count` is false for a second statement
    /// on a line already counted in this run.
    #[inline]
    pub fn line(&self, slot: u32, count: bool) -> __ProfiledLine<'_> {
        let rss_before = if self.site.rss { rss_now() } else { None };
        let heap_before = self.heap_now();
        __ProfiledLine {
            call: self,
            slot,
            count,
            heap_before,
            rss_before,
            scope: MeasureScope::begin(),
        }
    }

    fn table(&self, heap_now: u64, rss_now: Option<u64>, panicked: bool) -> LineTable {
        let site = self.site;
        let d = self.scope.delta();
        let whole = Acc {
            occurrences: 1,
            mem_after: heap_now,
            increment: diff(heap_now, self.heap_at_entry),
            thread_net: d.net_bytes(),
            peak: d.peak_bytes,
            allocs: d.allocs,
            rss_after: rss_now,
            rss_increment: match (rss_now, self.rss_at_entry) {
                (Some(a), Some(b)) => diff(a, b),
                _ => 0,
            },
            run_net: 0,
        };
        let mut lines: Vec<(u32, &str)> = site.source.to_vec();
        if !lines.iter().any(|&(l, _)| l == site.line) {
            lines.push((site.line, ""));
        }
        for &l in site.lines {
            if !lines.iter().any(|&(k, _)| k == l) {
                lines.push((l, ""));
            }
        }
        lines.sort_by_key(|&(l, _)| l);
        let rows = lines
            .into_iter()
            .map(|(line, source)| {
                let acc = if line == site.line {
                    whole
                } else {
                    site.lines
                        .iter()
                        .position(|&l| l == line)
                        .and_then(|slot| self.accs.get(slot))
                        .map_or_else(Acc::default, Cell::get)
                };
                let ran = acc.occurrences > 0;
                LineRow {
                    line,
                    source: source.to_string(),
                    occurrences: acc.occurrences,
                    mem_usage: acc.mem_after,
                    increment: acc.increment,
                    thread_net: acc.thread_net,
                    peak_inside: acc.peak,
                    allocs: acc.allocs,
                    rss: acc.rss_after.filter(|_| ran),
                    rss_increment: acc.rss_after.filter(|_| ran).map(|_| acc.rss_increment),
                }
            })
            .collect();
        LineTable {
            function: site.function.to_string(),
            module: site.module.to_string(),
            file: site.file.to_string(),
            line: site.line,
            heap_at_entry: self.heap_at_entry,
            panicked,
            rows,
        }
    }
}

impl Drop for __ProfiledFn {
    fn drop(&mut self) {
        let heap_now = heap_bytes_now();
        let rss = if self.site.rss { rss_now() } else { None };
        let panicked = std::thread::panicking();
        crate::timeline::exit(self.site.function);
        // Everything from here is tracer memory, allocated and freed under
        // the guard: the caller's figures never see it.
        let _guard = Guard::hold();
        let table = self.table(heap_now, rss, panicked);
        let text = format!("{:.*}\n", usize::from(self.site.precision), table);
        print_table(&text);
        let mut tables = lock(&TABLES);
        if tables.len() == KEPT {
            tables.pop_front();
        }
        tables.push_back(table);
    }
}

/// Writes a table where [`line_profile_output`] says; never panics (this
/// runs while unwinding too). Called under the guard.
fn print_table(text: &str) {
    let output = lock(&OUTPUT);
    match &*output {
        LineOutput::Stderr => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
        LineOutput::File(path) => {
            let written = open_append(path).and_then(|mut f| {
                f.write_all(text.as_bytes()).map_err(|e| {
                    Error::about("line table", "append to", path, "cannot write").because(e)
                })
            });
            if let Err(e) = written {
                let _ = writeln!(std::io::stderr().lock(), "{e}; the table follows\n{text}");
            }
        }
        LineOutput::Off => {}
    }
}

/// `a - b` as a signed number of bytes.
fn diff(a: u64, b: u64) -> i64 {
    (a as i64).wrapping_sub(b as i64)
}

/// One run of one line: records it when dropped (at the end of the
/// statement, or when a `return`, `?`, `break` or panic leaves it); not
/// public API.
#[doc(hidden)]
pub struct __ProfiledLine<'a> {
    call: &'a __ProfiledFn,
    slot: u32,
    count: bool,
    heap_before: u64,
    rss_before: Option<u64>,
    scope: MeasureScope,
}

impl Drop for __ProfiledLine<'_> {
    #[inline]
    fn drop(&mut self) {
        let d = self.scope.delta();
        let heap = heap_bytes_now();
        self.call.last_heap.set((thread_bytes(), heap));
        let rss = match self.rss_before {
            Some(_) => rss_now(),
            None => None,
        };
        let Some(cell) = self.call.accs.get(self.slot as usize) else {
            return;
        };
        let mut a = cell.get();
        // A second statement on the line continues the run's figures.
        let base = if self.count { 0 } else { a.run_net };
        if self.count {
            a.occurrences += 1;
        }
        a.run_net = base.wrapping_add(d.net_bytes());
        a.mem_after = heap;
        a.increment = a.increment.wrapping_add(diff(heap, self.heap_before));
        a.thread_net = a.thread_net.wrapping_add(d.net_bytes());
        a.peak = a
            .peak
            .max(base.saturating_add(d.peak_bytes as i64).max(0) as u64);
        a.allocs = a.allocs.wrapping_add(d.allocs);
        if let (Some(before), Some(after)) = (self.rss_before, rss) {
            a.rss_after = Some(after);
            a.rss_increment = a.rss_increment.wrapping_add(diff(after, before));
        }
        cell.set(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u32, source: &str, occurrences: u64, bytes: i64) -> LineRow {
        LineRow {
            line,
            source: source.to_string(),
            occurrences,
            mem_usage: if occurrences > 0 { 3 << 20 } else { 0 },
            increment: bytes,
            thread_net: bytes,
            peak_inside: bytes.max(0) as u64,
            allocs: occurrences,
            rss: None,
            rss_increment: None,
        }
    }

    fn table() -> LineTable {
        LineTable {
            function: "load".into(),
            module: "demo".into(),
            file: "src/demo.rs".into(),
            line: 4,
            heap_at_entry: 2 << 20,
            panicked: false,
            rows: vec![
                row(4, "fn load() -> Vec<u8> {", 1, 1 << 20),
                row(5, "    // comment", 0, 0),
                row(6, "    let v = vec![0u8; 1 << 20];", 1, 1 << 20),
                row(7, "    v", 1, 0),
                row(8, "}", 0, 0),
            ],
        }
    }

    #[test]
    fn display_has_memory_profilers_layout() {
        let text = table().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Filename: src/demo.rs");
        assert_eq!(
            lines[1],
            "Function: demo::load at line 4 (heap at entry: 2.0 MiB; its row: the whole call)"
        );
        assert_eq!(lines[2], "");
        assert_eq!(
            lines[3],
            "Line #    Mem usage    Increment  Occurrences    Thread net  Peak inside   Allocs   Line Contents"
        );
        assert_eq!(lines[4], "=".repeat(lines[3].len()));
        assert_eq!(
            lines[5],
            "     4      3.0 MiB      1.0 MiB            1       1.0 MiB      1.0 MiB        1   fn load() -> Vec<u8> {"
        );
        // Every row's text starts under `Line Contents`, empty rows too.
        let at = lines[3].find("Line Contents").unwrap();
        assert_eq!(lines[6].find("    // comment"), Some(at));
        assert_eq!(lines[7].find("    let v = vec!"), Some(at));
        assert_eq!(lines[9], format!("     8{}}}", " ".repeat(at - 6)));
    }

    #[test]
    fn display_takes_the_precision_and_shows_rss_when_read() {
        let mut t = table();
        t.rows[2].rss = Some(10 << 20);
        t.rows[2].rss_increment = Some(1 << 19);
        t.panicked = true;
        let text = format!("{t:.3}");
        assert!(text.contains("unwound by a panic"), "{text}");
        assert!(text.contains("RSS incr"), "{text}");
        assert!(text.contains("  10.000 MiB    0.500 MiB"), "{text}");
        assert!(text.contains("  1.000 MiB"), "{text}");
    }

    #[test]
    fn output_to_a_missing_directory_is_an_error() {
        let e = line_profile_output(LineOutput::File("/nonexistent/dir/t.txt".into())).unwrap_err();
        assert!(e.to_string().starts_with(
            "tracealloc: cannot append to line table /nonexistent/dir/t.txt: cannot open it for appending"
        ), "{e}");
        assert_eq!(*lock(&OUTPUT), LineOutput::Stderr);
    }
}
