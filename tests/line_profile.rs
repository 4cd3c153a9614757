//! `#[tracealloc::profile]`: the line table's figures for functions with
//! known allocations per line, and functions of every shape (early return,
//! `?`, panics, methods, generics, `impl Trait`, `let else`, `cfg`).
//!
//! The rows' thread columns (`thread_net`, `peak_inside`, `allocs`) are the
//! calling thread's: exact under the parallel test runner. The process
//! columns (`increment`, `mem_usage`) see every thread; they are checked
//! exactly in `process_columns_are_exact_in_a_quiet_run`.
#![cfg(feature = "macros")]
#![deny(warnings)]

use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use tracealloc::{LineOutput, LineRow, LineTable};

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// The file every test of this binary prints its tables to (one setting
/// for the whole process, so all tests set the same).
fn output_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("line_profile-{}.txt", std::process::id()))
}

fn to_file() {
    tracealloc::line_profile_output(LineOutput::File(output_file())).unwrap();
}

/// The last table of `function` (tests run in parallel; each profiles
/// functions of its own, found by name).
fn table_of(function: &str) -> LineTable {
    tracealloc::line_tables()
        .into_iter()
        .rev()
        .find(|t| t.function == function)
        .unwrap_or_else(|| panic!("no table for {function}"))
}

/// The row whose source line contains `text` (exactly one must).
fn row<'a>(t: &'a LineTable, text: &str) -> &'a LineRow {
    let mut found = t.rows.iter().filter(|r| r.source.contains(text));
    let r = found
        .next()
        .unwrap_or_else(|| panic!("no row with {text:?} in\n{t}"));
    assert!(found.next().is_none(), "two rows with {text:?} in\n{t}");
    r
}

/// The row whose source line is `source`.
fn exact<'a>(t: &'a LineTable, source: &str) -> &'a LineRow {
    t.rows
        .iter()
        .find(|r| r.source == source)
        .unwrap_or_else(|| panic!("no row {source:?} in\n{t}"))
}

/// (occurrences, thread_net, peak_inside, allocs) of a row.
fn figures(r: &LineRow) -> (u64, i64, u64, u64) {
    (r.occurrences, r.thread_net, r.peak_inside, r.allocs)
}

fn call(t: &LineTable) -> &LineRow {
    t.row(t.line).expect("the fn line has a row")
}

// ---------------------------------------------------------------------------

#[tracealloc::profile]
fn known_allocations() -> usize {
    let a = black_box(vec![0u8; 1000]);
    let b: Vec<u64> = black_box(Vec::with_capacity(125));
    // A comment line, and a blank one.

    let c = black_box(String::from("twelve bytes"));
    drop(a);
    b.capacity() + c.len()
}

#[test]
fn each_line_shows_its_own_allocations() {
    to_file();
    assert_eq!(known_allocations(), 137);
    let t = table_of("known_allocations");
    assert_eq!(figures(row(&t, "let a =")), (1, 1000, 1000, 1));
    assert_eq!(figures(row(&t, "let b:")), (1, 1000, 1000, 1));
    assert_eq!(figures(row(&t, "let c =")), (1, 12, 12, 1));
    assert_eq!(figures(row(&t, "drop(a)")), (1, -1000, 0, 0));
    // The tail: `b` and `c` are freed after it, at the closing brace.
    assert_eq!(figures(row(&t, "b.capacity()")), (1, 0, 0, 0));
    // Every line from `fn` to `}` has a row; the comment and the blank
    // line are empty.
    assert_eq!(t.rows.len(), 9, "{t}");
    assert_eq!(
        t.rows.first().unwrap().source,
        "fn known_allocations() -> usize {"
    );
    assert_eq!(t.rows.last().unwrap().source, "}");
    assert_eq!(row(&t, "// A comment").occurrences, 0);
    assert!(t
        .rows
        .iter()
        .any(|r| r.source.is_empty() && r.occurrences == 0));
    // The fn line: the whole call.
    assert_eq!(figures(call(&t)), (1, 0, 2012, 3));
    assert!(!t.panicked);
    assert_eq!(t.file, "tests/line_profile.rs");
    assert_eq!(t.module, "line_profile");
}

/// The process columns (`increment`, `mem_usage`) count every thread, and
/// the other tests allocate meanwhile: a run in which the call's process
/// change equals this thread's is one in which no other thread changed the
/// heap, and there they must be exact. Were the profiler's own allocations
/// (rows, tables, text) counted in the heap, no run would be quiet, and the
/// test would fail.
#[test]
fn process_columns_are_exact_in_a_quiet_run() {
    to_file();
    for _ in 0..200 {
        assert_eq!(known_allocations(), 137);
        let t = table_of("known_allocations");
        let whole = call(&t);
        if whole.increment != whole.thread_net || t.rows.iter().any(|r| r.increment != r.thread_net)
        {
            std::thread::yield_now();
            continue;
        }
        let a = row(&t, "let a =");
        assert_eq!((a.increment, a.allocs), (1000, 1));
        assert_eq!(a.mem_usage, t.heap_at_entry + 1000);
        assert_eq!(row(&t, "let b:").mem_usage, t.heap_at_entry + 2000);
        assert_eq!(row(&t, "let c =").mem_usage, t.heap_at_entry + 2012);
        assert_eq!(row(&t, "drop(a)").increment, -1000);
        assert_eq!(row(&t, "drop(a)").mem_usage, t.heap_at_entry + 1012);
        assert_eq!((whole.increment, whole.mem_usage), (0, t.heap_at_entry));
        return;
    }
    panic!("no quiet run in 200: the process heap never matched this thread's figures");
}

#[tracealloc::profile]
fn scratch() -> usize {
    let kept = black_box(vec![1u8; 4096]);
    drop(black_box(vec![0u8; 1 << 20]));
    kept.len()
}

#[test]
fn a_peak_freed_on_its_line_shows_in_peak_inside() {
    to_file();
    assert_eq!(scratch(), 4096);
    let t = table_of("scratch");
    assert_eq!(figures(row(&t, "drop(black_box")), (1, 0, 1 << 20, 1));
    // The call's peak: the kept block and the scratch one at once.
    assert_eq!(figures(call(&t)), (1, 0, 4096 + (1 << 20), 2));
}

#[tracealloc::profile]
fn in_a_loop(n: usize) -> Vec<Vec<u8>> {
    let mut kept = Vec::with_capacity(n);
    for i in 0..n {
        kept.push(black_box(vec![0u8; 100]));
        if i % 2 == 0 {
            drop(black_box(vec![0u8; 1 << 20]));
        }
    }
    kept
}

#[test]
fn lines_in_loops_accumulate() {
    to_file();
    let kept = in_a_loop(5);
    let t = table_of("in_a_loop");
    assert_eq!(figures(row(&t, "kept.push")), (5, 500, 100, 5));
    // The `if` holds the drop: all it ran, each iteration.
    assert_eq!(figures(row(&t, "if i % 2")), (5, 0, 1 << 20, 3));
    assert_eq!(figures(row(&t, "drop(black_box")), (3, 0, 1 << 20, 3));
    // The `for` line is the whole loop, run once; its peak came at i = 4,
    // with 5 blocks kept.
    assert_eq!(figures(row(&t, "for i in")), (1, 500, 500 + (1 << 20), 8));
    assert_eq!(row(&t, "let mut kept").thread_net, 5 * 24);
    drop(kept);
}

#[tracealloc::profile]
fn early_return(stop: bool) -> usize {
    let a = black_box(vec![1u8; 10]);
    if stop {
        return a.len();
    }
    let b = black_box(vec![2u8; 20]);
    a.len() + b.len()
}

#[test]
fn an_early_return_records_its_line_and_skips_the_rest() {
    to_file();
    assert_eq!(early_return(true), 10);
    let t = table_of("early_return");
    assert_eq!(figures(row(&t, "let a")), (1, 10, 10, 1));
    assert_eq!(row(&t, "if stop").occurrences, 1);
    assert_eq!(row(&t, "return a.len()").occurrences, 1);
    assert_eq!(row(&t, "let b").occurrences, 0);
    assert_eq!(row(&t, "a.len() + b.len()").occurrences, 0);
    // `a` was freed on the way out.
    assert_eq!(figures(call(&t)), (1, 0, 10, 1));

    assert_eq!(early_return(false), 30);
    let t = table_of("early_return");
    assert_eq!(row(&t, "return a.len()").occurrences, 0);
    assert_eq!(figures(row(&t, "let b")), (1, 20, 20, 1));
    assert_eq!(row(&t, "a.len() + b.len()").occurrences, 1);
}

#[tracealloc::profile]
fn parse_all(items: &[&str]) -> Result<Vec<u32>, std::num::ParseIntError> {
    let mut out = Vec::with_capacity(items.len());
    for s in items {
        let n: u32 = s.parse()?;
        out.push(n);
    }
    Ok(out)
}

#[test]
fn question_mark_returns_through_the_table() {
    to_file();
    assert_eq!(parse_all(&["1", "2"]), Ok(vec![1, 2]));
    let t = table_of("parse_all");
    assert_eq!(row(&t, "let n: u32").occurrences, 2);
    assert_eq!(row(&t, "Ok(out)").occurrences, 1);

    assert!(parse_all(&["1", "x", "3"]).is_err());
    let t = table_of("parse_all");
    // The second parse left through `?`: recorded, and nothing after it.
    assert_eq!(row(&t, "let n: u32").occurrences, 2);
    assert_eq!(row(&t, "out.push(n)").occurrences, 1);
    assert_eq!(row(&t, "Ok(out)").occurrences, 0);
    assert_eq!(figures(row(&t, "let mut out")), (1, 12, 12, 1));
    assert_eq!(call(&t).thread_net, 0);
}

#[tracealloc::profile]
fn panics_midway(len: usize) -> usize {
    let v = black_box(vec![0u8; len]);
    if v.len() == 64 {
        panic!("tracealloc test: a deliberate panic");
    }
    v.len()
}

#[test]
fn a_panic_still_records_the_table_and_goes_on() {
    to_file();
    let r = catch_unwind(AssertUnwindSafe(|| panics_midway(64)));
    let payload = r.expect_err("the panic goes on");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"tracealloc test: a deliberate panic")
    );
    let t = table_of("panics_midway");
    assert!(t.panicked);
    assert!(t.to_string().contains("unwound by a panic"));
    assert_eq!(figures(row(&t, "let v =")), (1, 64, 64, 1));
    assert_eq!(row(&t, "if v.len() == 64").occurrences, 1);
    assert_eq!(row(&t, "panic!(").occurrences, 1);
    assert_eq!(exact(&t, "    v.len()").occurrences, 0);

    // And the function still works, table and all, afterwards.
    assert_eq!(panics_midway(8), 8);
    assert!(!table_of("panics_midway").panicked);
}

struct Cache {
    items: Vec<Vec<u8>>,
}

impl Cache {
    /// A doc comment and attributes pass through.
    #[inline(never)]
    #[tracealloc::profile]
    pub fn add(&mut self, n: usize) -> &[u8] {
        self.items.push(black_box(vec![7u8; n]));
        self.items.last().unwrap()
    }

    #[tracealloc::profile]
    fn lens(&self) -> Vec<usize> {
        let lens: Vec<usize> = self.items.iter().map(Vec::len).collect();
        lens
    }

    #[tracealloc::profile]
    fn into_items(self) -> Vec<Vec<u8>> {
        let Cache { items } = self;
        items
    }
}

#[test]
fn methods_with_self_receivers() {
    to_file();
    let mut c = Cache {
        items: Vec::with_capacity(4),
    };
    assert_eq!(c.add(100), &[7u8; 100][..]);
    let t = table_of("add");
    assert_eq!(figures(row(&t, "self.items.push")), (1, 100, 100, 1));
    // The indentation inside the impl block is kept.
    assert_eq!(
        t.rows[0].source,
        "    pub fn add(&mut self, n: usize) -> &[u8] {"
    );
    assert_eq!(row(&t, "self.items.push").source.find('s'), Some(8));
    c.add(28);
    assert_eq!(c.lens(), [100, 28]);
    assert_eq!(figures(row(&table_of("lens"), "let lens")), (1, 16, 16, 1));
    assert_eq!(c.into_items().len(), 2);
    assert_eq!(call(&table_of("into_items")).thread_net, 0);
}

#[tracealloc::profile]
fn repeated<T>(x: T, n: usize) -> Vec<T>
where
    T: Clone,
{
    let mut v = Vec::with_capacity(n);
    v.resize(n, x);
    v
}

#[test]
fn generic_functions() {
    to_file();
    assert_eq!(repeated(3u64, 10), [3; 10]);
    let t = table_of("repeated");
    assert_eq!(figures(row(&t, "Vec::with_capacity")), (1, 80, 80, 1));
    assert_eq!(figures(row(&t, "v.resize")), (1, 0, 0, 0));
    let v = repeated(String::from("ab"), 3);
    let t = table_of("repeated");
    // 3 Strings of 24 bytes; the resize clones twice (2 bytes each) and
    // moves `x` in, freeing nothing.
    assert_eq!(figures(row(&t, "Vec::with_capacity")), (1, 72, 72, 1));
    assert_eq!(figures(row(&t, "v.resize")), (1, 4, 4, 2));
    assert_eq!(v.len(), 3);
    // The where clause is a line of its own in the table.
    assert_eq!(row(&t, "T: Clone,").occurrences, 0);
}

#[tracealloc::profile]
fn nested_inner() -> Vec<u8> {
    black_box(vec![0u8; 100])
}

#[tracealloc::profile]
fn nested_outer() -> usize {
    let v = nested_inner();
    let w = nested_inner();
    v.len() + w.len()
}

#[test]
fn a_profiled_call_inside_a_line_adds_only_its_own_allocations() {
    to_file();
    assert_eq!(nested_outer(), 200);
    let t = table_of("nested_outer");
    // The inner call's table (rows, text, file output) is not in the line.
    assert_eq!(figures(row(&t, "let v =")), (1, 100, 100, 1));
    assert_eq!(figures(row(&t, "let w =")), (1, 100, 100, 1));
    assert_eq!(figures(call(&t)), (1, 0, 200, 2));
}

#[tracealloc::profile]
#[rustfmt::skip]
fn arms(k: u8) -> Vec<u8> {
    let a = black_box(vec![0u8; 10]); let b = black_box(vec![0u8; 20]);
    let c = match k {
        0 => a,
        1 => {
            drop(a);
            b
        }
        _ => black_box(vec![0u8; 30]),
    };
    c
}

#[test]
fn match_arms_and_statements_sharing_a_line() {
    to_file();
    assert_eq!(arms(2).len(), 30);
    let t = table_of("arms");
    // Two statements on one line: one row, counted once per run.
    assert_eq!(figures(row(&t, "let a = black_box")), (1, 30, 30, 2));
    assert_eq!(figures(row(&t, "_ => black_box")), (1, 30, 30, 1));
    assert_eq!(row(&t, "0 => a").occurrences, 0);
    assert_eq!(figures(row(&t, "let c = match")), (1, 30, 30, 1));

    assert_eq!(arms(1).len(), 20);
    let t = table_of("arms");
    assert_eq!(figures(row(&t, "drop(a)")), (1, -10, 0, 0));
    assert_eq!(exact(&t, "            b").occurrences, 1);
    assert_eq!(row(&t, "_ => black_box").occurrences, 0);
}

#[tracealloc::profile]
fn shapes(v: &[u32]) -> impl Iterator<Item = u32> + '_ {
    let Some(&first) = v.first() else {
        return Box::new(std::iter::empty()) as Box<dyn Iterator<Item = u32>>;
    };
    #[cfg(any())]
    let never = vec![0u8; 1000];
    let make = |n: usize| black_box(vec![0u8; n]);
    let made = make(7);
    'outer: for i in 0..3 {
        for j in 0..3 {
            if j > i {
                continue 'outer;
            }
        }
    }
    println!("first is {first}, made {}", made.len());
    Box::new(v.iter().map(move |x| x + first))
}

#[test]
fn let_else_cfg_closures_labels_and_impl_trait() {
    to_file();
    assert_eq!(shapes(&[1, 2]).collect::<Vec<_>>(), [2, 3]);
    let t = table_of("shapes");
    assert_eq!(row(&t, "let Some(&first)").occurrences, 1);
    assert_eq!(row(&t, "return Box::new").occurrences, 0);
    // Compiled out: never runs, records nothing.
    assert_eq!(row(&t, "let never").occurrences, 0);
    // A closure is measured where it is called.
    assert_eq!(figures(row(&t, "let make =")), (1, 0, 0, 0));
    assert_eq!(figures(row(&t, "let made =")), (1, 7, 7, 1));
    // i = 0: j = 0, 1 (continue); i = 1: j = 0..=2 (continue); i = 2:
    // j = 0..=2.
    assert_eq!(row(&t, "continue 'outer").occurrences, 2);
    assert_eq!(row(&t, "if j > i").occurrences, 8);
    assert_eq!(row(&t, "for j in").occurrences, 3);
    assert_eq!(row(&t, "println!").occurrences, 1);

    assert_eq!(shapes(&[]).count(), 0);
    assert_eq!(row(&table_of("shapes"), "return Box::new").occurrences, 1);
}

#[tracealloc::profile]
fn diverges(msg: &str) -> ! {
    let owned = msg.to_string();
    panic!("{owned}")
}

#[tracealloc::profile]
fn boxed_closure(n: usize) -> Box<dyn Fn(usize) -> usize> {
    let k = black_box(vec![0u8; n]).len();
    black_box(Box::new(move |x| x + k))
}

#[tracealloc::profile]
unsafe fn unsafe_and_extern(p: *const u8) -> u8 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *p }
}

#[tracealloc::profile]
extern "C" fn extern_c(x: u32) -> u32 {
    x + 1
}

#[test]
fn never_type_coercions_unsafe_and_extern() {
    to_file();
    let r = catch_unwind(|| diverges("tracealloc test: diverging"));
    assert!(r.is_err());
    assert!(table_of("diverges").panicked);
    // The tail's `Box<closure>` still coerces to `Box<dyn Fn>`, with the
    // closure's argument type inferred from the return type.
    assert_eq!(boxed_closure(5)(1), 6);
    assert_eq!(
        figures(row(&table_of("boxed_closure"), "black_box(Box::new(move")),
        (1, 8, 8, 1)
    );
    let x = 42u8;
    // SAFETY: a valid pointer.
    assert_eq!(unsafe { unsafe_and_extern(&x) }, 42);
    assert_eq!(extern_c(1), 2);
}

/// Pages outside the heap: an anonymous map, touched.
#[tracealloc::profile(rss, precision = 3)]
fn with_rss() -> usize {
    let mut map = memmap2::MmapMut::map_anon(32 << 20).unwrap();
    map.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let v = black_box(vec![1u8; 4 << 20]);
    v.len() + map.iter().step_by(4096).map(|&b| b as usize).sum::<usize>()
}

#[test]
fn rss_beside_the_heap_and_the_precision() {
    to_file();
    assert_eq!(with_rss(), (4 << 20) + 8192);
    let t = table_of("with_rss");
    assert_eq!(figures(row(&t, "let v =")), (1, 4 << 20, 4 << 20, 1));
    // Touching the map's pages: RSS grows by 32 MiB, the heap by nothing.
    let touch = row(&t, "map.iter_mut()");
    assert_eq!(figures(touch), (1, 0, 0, 0));
    if cfg!(target_os = "linux") {
        let inc = touch.rss_increment.expect("RSS read on Linux");
        assert!(touch.rss.expect("RSS read on Linux") >= 32 << 20);
        // RSS is the whole process's: the other tests of this file, running
        // meanwhile, hold and free a few MiB at most.
        assert!(
            inc > 24 << 20 && inc < 40 << 20,
            "RSS increment {inc} for 32 MiB of touched pages"
        );
        assert!(t.to_string().contains("RSS incr"));
    }
    // Printed with three decimals (`precision = 3`).
    let text = std::fs::read_to_string(output_file()).unwrap();
    // (`Thread net` and `Peak inside` of the `let v` line.)
    assert!(
        text.contains("    4.000 MiB    4.000 MiB        1"),
        "{text}"
    );
    // Without `rss`, no RSS column.
    assert_eq!(scratch(), 4096);
    assert!(table_of("scratch").rows.iter().all(|r| r.rss.is_none()));
    assert!(!table_of("scratch").to_string().contains("RSS"));
}

#[test]
fn tables_are_appended_to_the_output_file() {
    to_file();
    assert_eq!(early_return(false), 30);
    let text = std::fs::read_to_string(output_file()).unwrap();
    assert!(text.contains("Function: line_profile::early_return at line "));
    assert!(text.contains(
        "Line #    Mem usage    Increment  Occurrences    Thread net  Peak inside   Allocs   Line Contents"
    ));
}

macro_rules! profiled_by_a_macro {
    ($name:ident, $n:expr) => {
        #[tracealloc::profile]
        fn $name<'a>(label: &'a str, unit: &str, extra: impl Into<usize>) -> (&'a str, usize) {
            #![allow(clippy::useless_vec)]
            let v = black_box(vec![1u8; $n + extra.into()]);
            (label, v.len() * unit.len())
        }
    };
}

profiled_by_a_macro!(made_by_a_macro, 40);

#[test]
fn functions_from_macro_rules_inner_attributes_and_lifetimes() {
    to_file();
    assert_eq!(made_by_a_macro("x", "u", 2usize), ("x", 42));
    let t = table_of("made_by_a_macro");
    assert_eq!(figures(row(&t, "let v =")), (1, 42, 42, 1));
}

/// The setting is the runtime's memory: what the caller allocated to pass
/// it is freed on the caller's account, and nothing stays on it.
#[test]
fn setting_the_output_leaves_the_callers_heap_as_it_was() {
    let ((), d) = tracealloc::measure(to_file);
    assert!(d.allocs > 0);
    assert_eq!(d.net_bytes(), 0, "{d}");
}

/// The attribute and the `profile()` function share the name (macros and
/// values live in different namespaces).
#[test]
fn the_attribute_and_the_profile_function_share_the_name() {
    let read_profile: fn() -> tracealloc::Profile = tracealloc::profile;
    let _ = read_profile;
}

#[test]
fn line_tables_keeps_the_last_64() {
    to_file();
    for _ in 0..70 {
        assert_eq!(extern_c(0), 1);
    }
    let tables = tracealloc::line_tables();
    assert!(tables.len() <= 64);
    assert!(tables.iter().filter(|t| t.function == "extern_c").count() >= 1);
}

/// The cost of a measured line, in release builds: `cargo test --release
/// --features macros --test line_profile -- --ignored --nocapture per_line_cost`.
#[test]
#[ignore]
fn per_line_cost() {
    tracealloc::line_profile_output(LineOutput::Off).unwrap();
    fn plain(n: u64) -> u64 {
        let mut s = 0;
        for i in 0..n {
            s += black_box(i);
        }
        s
    }
    #[tracealloc::profile]
    fn profiled(n: u64) -> u64 {
        let mut s = 0;
        for i in 0..n {
            s += black_box(i);
        }
        s
    }
    #[tracealloc::profile(rss)]
    fn profiled_rss(n: u64) -> u64 {
        let mut s = 0;
        for i in 0..n {
            s += black_box(i);
        }
        s
    }
    let time = |f: fn(u64) -> u64, n: u64| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t0 = std::time::Instant::now();
            black_box(f(n));
            best = best.min(t0.elapsed().as_nanos() as f64 / n as f64);
        }
        best
    };
    let base = time(plain, 1_000_000);
    let heap = time(profiled, 1_000_000) - base;
    let rss = time(profiled_rss, 100_000) - base;
    println!("per measured line: {heap:.0} ns (heap), {rss:.0} ns (heap and RSS)");
}
