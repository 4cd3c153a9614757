//! Call sites in the setup users run: `tracealloc::start` inside `#[test]`
//! functions under the default libtest harness (its worker threads), on the
//! test thread and on threads the test spawns, debug and release, with and
//! without frame pointers. Frame 0 must be the exact line of this file that
//! allocated.
//!
//! Tracing is process-wide, so these tests take `SESSION` for the length of
//! their session; other tests of this binary may allocate meanwhile, as in a
//! user's test suite. CI also runs this file with
//! `-C force-frame-pointers=yes` and `TRACEALLOC_EXPECT_CAPTURE=frame-pointers`,
//! and without them and `TRACEALLOC_EXPECT_CAPTURE=unwinder`.

use std::hint::black_box;
use std::sync::{Mutex, MutexGuard};

use tracealloc::{object_traceback, take_snapshot, CaptureMethod, KeyType, Snapshot};

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

static SESSION: Mutex<()> = Mutex::new(());

/// Holds the session lock; stops tracing when dropped. The tests call
/// `tracealloc::start` themselves, in their own body, as users do: what the
/// register holding the frame pointer contains there is what the capture
/// method's choice must not be fooled by.
struct Session(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Session {
    fn lock() -> Session {
        let guard = SESSION.lock().unwrap_or_else(|e| e.into_inner());
        tracealloc::stop();
        Session(guard)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tracealloc::stop();
    }
}

/// The method CI expects for this build, when it says.
fn check_method() {
    let method = tracealloc::capture_method();
    match std::env::var("TRACEALLOC_EXPECT_CAPTURE").as_deref() {
        Ok("frame-pointers") => assert_eq!(method, Some(CaptureMethod::FramePointers)),
        Ok("unwinder") => assert_eq!(method, Some(CaptureMethod::Unwinder)),
        _ => {}
    }
}

/// `(file, line)` of frame `i` of the traceback of the block at `ptr`.
fn frame<T: ?Sized>(ptr: *const T, i: usize) -> (String, u32) {
    let t = object_traceback(ptr).expect("the block is traced");
    let f = t
        .frames()
        .get(i)
        .unwrap_or_else(|| panic!("no frame {i} in {t:?}"));
    (f.filename().to_string(), f.lineno())
}

/// `(file, line)` of each frame of `t`.
fn file_lines(t: &tracealloc::Traceback) -> Vec<(String, u32)> {
    t.frames()
        .iter()
        .map(|f| (f.filename().to_string(), f.lineno()))
        .collect()
}

fn here(line: u32) -> (String, u32) {
    (file!().to_string(), line)
}

// Four sites in helpers, each on a line of its own.
#[inline(never)]
fn site_a(n: usize) -> Vec<u8> {
    vec![1u8; n]
}
const SITE_A: u32 = line!() - 2;

#[inline(never)]
fn site_b(n: usize) -> Vec<u8> {
    vec![2u8; n]
}
const SITE_B: u32 = line!() - 2;

#[inline(never)]
fn site_c(n: usize) -> Box<[u64]> {
    vec![3u64; n].into_boxed_slice()
}
const SITE_C: u32 = line!() - 2;

#[inline(never)]
fn site_d(n: usize) -> String {
    "d".repeat(n)
}
const SITE_D: u32 = line!() - 2;

fn lineno(s: &Snapshot, line: u32) -> Option<(usize, usize)> {
    s.statistics(KeyType::Lineno, false)
        .into_iter()
        .find(|st| {
            let f = &st.traceback.frames()[0];
            f.filename() == file!() && f.lineno() == line
        })
        .map(|st| (st.size, st.count))
}

/// Allocates at the four sites and checks each block's frame 0 and the
/// snapshot's lines: every site its own key, none merged into one frame; and
/// that no walk was rejected (walks from libtest's threads and spawned
/// threads reach the thread's first frame).
fn four_sites_on_this_thread() {
    check_method();
    four_sites();
}

fn four_sites() {
    let fallbacks = tracealloc::capture_fallbacks();
    let a = black_box(site_a(3 << 20));
    let b = black_box(site_b(2 << 20));
    let c = black_box(site_c(1 << 17));
    let d = black_box(site_d(5000));
    assert_eq!(frame(a.as_ptr(), 0), here(SITE_A));
    assert_eq!(frame(b.as_ptr(), 0), here(SITE_B));
    assert_eq!(frame(c.as_ptr(), 0), here(SITE_C));
    assert_eq!(frame(d.as_ptr(), 0), here(SITE_D));
    let s = take_snapshot();
    assert_eq!(lineno(&s, SITE_A), Some((3 << 20, 1)));
    assert_eq!(lineno(&s, SITE_B), Some((2 << 20, 1)));
    assert_eq!(lineno(&s, SITE_C), Some((1 << 20, 1)));
    assert_eq!(lineno(&s, SITE_D), Some((5000, 1)));
    // Every trace has a frame (tracemalloc's `<unknown>:0` at worst).
    assert!(s.traces().iter().all(|t| !t.traceback.frames().is_empty()));
    // Walks that reach a thread's first frame are not rejected.
    assert_eq!(tracealloc::capture_fallbacks(), fallbacks);
    drop((a, b, c, d));
}

#[test]
fn started_on_the_test_thread() {
    let _s = Session::lock();
    tracealloc::start(1);
    four_sites_on_this_thread();
}

#[test]
fn started_on_the_test_thread_with_the_site_inline() {
    let _s = Session::lock();
    tracealloc::start(1);
    check_method();
    let v = black_box(vec![5u8; 123_456]);
    let line = line!() - 1;
    assert_eq!(frame(v.as_ptr(), 0), here(line));
    assert_eq!(lineno(&take_snapshot(), line), Some((123_456, 1)));
}

#[test]
fn started_on_a_spawned_thread() {
    let _s = Session::lock();
    std::thread::spawn(|| {
        tracealloc::start(1);
        four_sites_on_this_thread();
        tracealloc::stop();
    })
    .join()
    .unwrap();
}

#[test]
fn started_on_the_test_thread_allocated_on_others() {
    let _s = Session::lock();
    tracealloc::start(1);
    check_method();
    let blocks: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| black_box(site_b(4096))))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for b in &blocks {
        assert_eq!(frame(b.as_ptr(), 0), here(SITE_B));
    }
    assert_eq!(lineno(&take_snapshot(), SITE_B), Some((3 * 4096, 3)));
}

#[inline(never)]
fn outer(n: usize) -> (Vec<u8>, u32) {
    (black_box(site_a(n)), line!())
}

#[test]
fn deeper_frames_are_the_callers_lines() {
    let _s = Session::lock();
    tracealloc::start(3);
    check_method();
    let (v, outer_line) = outer(1000);
    let test_line = line!() - 1;
    assert_eq!(frame(v.as_ptr(), 0), here(SITE_A));
    assert_eq!(frame(v.as_ptr(), 1), here(outer_line));
    assert_eq!(frame(v.as_ptr(), 2), here(test_line));
    let t = object_traceback(v.as_ptr()).unwrap();
    assert!(t.frames()[0].function().ends_with("site_a"), "{t:?}");
    assert!(t.total_nframe() > 3, "libtest's frames are below: {t:?}");
}

#[test]
fn the_same_in_a_thread_started_before_tracing() {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        let v = black_box(site_c(100));
        done_tx.send(frame(v.as_ptr(), 0)).unwrap();
    });
    let _s = Session::lock();
    tracealloc::start(1);
    check_method();
    go_tx.send(()).unwrap();
    assert_eq!(done_rx.recv().unwrap(), here(SITE_C));
    worker.join().unwrap();
}

/// Callers in assembly, with unwind information, that leave the frame
/// pointer register holding what non-frame-pointer code may leave there:
///
/// - `tracealloc_test_call_under_a_bad_frame_record(f)` points it at a
///   record whose return address is no code: a walk from `f` cannot go on
///   past it (the unwinder can);
/// - `tracealloc_test_call_under_stale_records(f)` calls `f` through two
///   frames that each write a true frame record (the next record, the
///   frame's return address) and point the register at it. Code built
///   without frame pointers leaves the register alone, so a walk from
///   anywhere inside `f` starts at these records, above `f`'s own frames,
///   and from there follows a true chain: the stale frame pointer of a
///   debug build on libtest's threads, made deterministic.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod asm_callers {
    /// One function in assembly: saves rbp, writes a frame record of two
    /// words below it (`$next`, then `$ret`, the sources of two `mov`s;
    /// `rax` holds the function's own return address), points rbp at the
    /// record and calls `$target`; the unwind information describes it all
    /// without rbp.
    macro_rules! record_and_call {
        ($name:literal, $next:literal, $ret:literal, $target:literal) => {
            concat!(
                ".type ",
                $name,
                ", @function\n",
                $name,
                ":\n",
                ".cfi_startproc\n",
                "push rbp\n",
                ".cfi_adjust_cfa_offset 8\n",
                ".cfi_rel_offset rbp, 0\n",
                "sub rsp, 16\n",
                ".cfi_adjust_cfa_offset 16\n",
                "mov rax, [rsp + 24]\n",
                "mov qword ptr [rsp], ",
                $next,
                "\n",
                "mov qword ptr [rsp + 8], ",
                $ret,
                "\n",
                "mov rbp, rsp\n",
                "call ",
                $target,
                "\n",
                "add rsp, 16\n",
                ".cfi_adjust_cfa_offset -16\n",
                "pop rbp\n",
                ".cfi_adjust_cfa_offset -8\n",
                ".cfi_restore rbp\n",
                "ret\n",
                ".cfi_endproc\n",
                ".size ",
                $name,
                ", . - ",
                $name,
                "\n",
            )
        };
    }

    std::arch::global_asm!(
        ".globl tracealloc_test_call_under_a_bad_frame_record",
        // A record that ends the chain with a return address that is no code.
        record_and_call!(
            "tracealloc_test_call_under_a_bad_frame_record",
            "0",
            "0x1234",
            "rdi"
        ),
        // The inner frame of two: a true record [the outer record, own
        // return address].
        record_and_call!("tracealloc_test_record_frame", "rbp", "rax", "rdi"),
        // The outer frame: the first record of the chain [0, own return
        // address]; then the inner frame, with the target still in rdi.
        ".globl tracealloc_test_call_under_stale_records",
        record_and_call!(
            "tracealloc_test_call_under_stale_records",
            "0",
            "rax",
            "tracealloc_test_record_frame"
        ),
    );

    extern "C" {
        pub fn tracealloc_test_call_under_a_bad_frame_record(f: extern "C" fn());
        pub fn tracealloc_test_call_under_stale_records(f: extern "C" fn());
    }
}

/// Starts tracing and allocates at four sites under stale frame records;
/// the verdict goes to `STALE_RESULT`.
///
/// Without frame pointers, the register points at the records the whole
/// time: a walk would start there. With them, a walk from `start` goes
/// through the probe and this function, then ends at the outer record (its
/// next is 0): the chain is cut short above the caller, as under C code that
/// uses the register for data. Either way the unwinder must be chosen.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
extern "C" fn start_and_allocate_under_stale_records() {
    let ok = std::panic::catch_unwind(|| {
        tracealloc::start(1);
        assert_eq!(tracealloc::capture_method(), Some(CaptureMethod::Unwinder));
        four_sites();
    });
    *STALE_RESULT.lock().unwrap_or_else(|e| e.into_inner()) = Some(ok.is_ok());
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
static STALE_RESULT: Mutex<Option<bool>> = Mutex::new(None);

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_stale_frame_pointer_does_not_fool_the_choice() {
    let _s = Session::lock();
    // SAFETY: the assembly functions call `f` with an aligned stack and
    // restore every callee-saved register they change.
    unsafe {
        asm_callers::tracealloc_test_call_under_stale_records(
            start_and_allocate_under_stale_records,
        )
    };
    let ok = STALE_RESULT.lock().unwrap().take();
    assert_eq!(ok, Some(true), "see the panic above");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
static ASM_BLOCK: Mutex<Option<(Vec<u8>, u32)>> = Mutex::new(None);

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
extern "C" fn allocate_for_asm_caller() {
    let v = black_box(vec![7u8; 1234]);
    let line = line!() - 1;
    if let Ok(mut slot) = ASM_BLOCK.lock() {
        *slot = Some((v, line));
    }
}

/// With tracing on (4 frames), allocates through the assembly `caller`,
/// then checks the block's traceback: the allocating line, `asm_frames`
/// frames without line information (the assembly), then the line here that
/// called it; and that the walk was redone and counted when frame pointers
/// are the method (never with the unwinder).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn walk_through_asm_is_redone(caller: unsafe extern "C" fn(extern "C" fn()), asm_frames: usize) {
    let _s = Session::lock();
    tracealloc::start(4);
    check_method();
    let before = tracealloc::capture_fallbacks();
    // SAFETY: the assembly functions call `f` with an aligned stack and
    // restore every callee-saved register they change.
    unsafe { caller(allocate_for_asm_caller) };
    let call_line = line!() - 1;
    let after = tracealloc::capture_fallbacks();
    let (v, line) = ASM_BLOCK.lock().unwrap().take().expect("allocated");
    let t = object_traceback(v.as_ptr()).expect("traced");
    let frames = file_lines(&t);
    assert_eq!(frames[0], here(line), "{t:?}");
    for f in &frames[1..=asm_frames] {
        assert_eq!(f.0, "<unknown>", "{t:?}");
    }
    // The unwinder gets past the assembly to the line that called it.
    assert_eq!(frames[asm_frames + 1], here(call_line), "{t:?}");
    if tracealloc::capture_method() == Some(CaptureMethod::FramePointers) {
        assert!(after > before, "the rejected walk is counted");
    } else {
        assert_eq!(after, before, "no walk with the unwinder");
    }
}

/// One allocation under a chain of frame records cut short above its caller
/// (the outer record's next is 0, as when a caller uses the register for
/// data): the walk ends early, away from the thread's first frame.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_walk_cut_short_is_redone_and_counted() {
    walk_through_asm_is_redone(asm_callers::tracealloc_test_call_under_stale_records, 2);
}

/// One allocation under a frame record whose return address is no code.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_walk_through_a_bad_frame_record_is_redone_and_counted() {
    walk_through_asm_is_redone(
        asm_callers::tracealloc_test_call_under_a_bad_frame_record,
        1,
    );
}

/// The block the C library's callback allocated last.
static FROM_C: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn allocate_from_c() {
    let b = black_box(Box::new([5u8; 777]));
    let ptr = Box::into_raw(b) as usize;
    FROM_C.store(ptr, std::sync::atomic::Ordering::SeqCst);
}
const FROM_C_SITE: u32 = line!() - 4;

/// A C library built at test time without frame pointers (as distributions
/// build theirs), loaded with `dlopen` after tracing started: its function
/// calls back into Rust, which allocates. The traceback must go through the
/// library's frame to the line of this test that called it: with the method
/// `start` chose, and with the unwinder forced after it had already been
/// built (a second library, loaded after that).
#[test]
fn a_library_loaded_after_start_is_walked_through() {
    let dir = std::env::temp_dir().join(format!("tracealloc-dlopen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("callback.c");
    std::fs::write(
        &c,
        "typedef void (*cb_t)(void);\n\
         __attribute__((noinline)) void call_back(cb_t f) {\n\
         \x20   volatile char pad[64]; pad[0] = 1;\n\
         \x20   f();\n\
         \x20   pad[1] = 2;\n\
         }\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let build = |name: &str| {
        let lib = dir.join(name);
        let built = std::process::Command::new(&cc)
            .args([
                "-O2",
                "-g",
                "-fomit-frame-pointer",
                "-shared",
                "-fPIC",
                "-o",
            ])
            .arg(&lib)
            .arg(&c)
            .status()
            .unwrap_or_else(|e| panic!("running {cc}: {e}"));
        assert!(built.success(), "{cc} failed");
        lib
    };
    let (first, second) = (build("libcallback1.so"), build("libcallback2.so"));

    let _session = Session::lock();
    tracealloc::start(8);
    check_method();
    let fallbacks = tracealloc::capture_fallbacks();
    through_library(&first);
    if tracealloc::capture_method() == Some(CaptureMethod::FramePointers) {
        eprintln!(
            "walks redone through the library: {}",
            tracealloc::capture_fallbacks() - fallbacks
        );
    }
    tracealloc::stop();
    tracealloc::Config::new()
        .frames(8)
        .capture(CaptureMethod::Unwinder)
        .start();
    through_library(&second);
}

/// Loads `lib` and checks, three times, the traceback of a block allocated
/// by a callback it calls.
fn through_library(lib: &std::path::Path) {
    let path = std::ffi::CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: a library built by the test, with no initializers.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen failed");
    // SAFETY: a symbol of the library just loaded.
    let sym = unsafe { libc::dlsym(handle, c"call_back".as_ptr()) };
    assert!(!sym.is_null());
    // SAFETY: `call_back` has this signature (see the C source above).
    let call_back: extern "C" fn(extern "C" fn()) = unsafe { std::mem::transmute(sym) };
    let name = lib.file_name().unwrap().to_str().unwrap();
    for _ in 0..3 {
        call_back(allocate_from_c);
        let line = line!() - 1;
        let ptr = FROM_C.load(std::sync::atomic::Ordering::SeqCst) as *const [u8; 777];
        let t = object_traceback(ptr).expect("traced");
        let frames = file_lines(&t);
        assert_eq!(frames[0], here(FROM_C_SITE), "{t:?}");
        // With its line when the symbolizer read the library's debug
        // information; by the library and the function when it was loaded
        // after the symbolizer's first use (it reads the list of objects
        // once).
        assert!(
            frames[1].0.ends_with("callback.c") || frames[1].0.ends_with(name),
            "the library's frame: {frames:?}"
        );
        assert_eq!(t.frames()[1].function(), "call_back", "{t:?}");
        assert_eq!(frames[2], here(line), "{frames:?}");
        // SAFETY: allocated by `allocate_from_c` as a `Box<[u8; 777]>`.
        drop(unsafe { Box::from_raw(ptr as *mut [u8; 777]) });
    }
}

/// The whole-run profile in the test harness: exact per-site totals, the
/// peak's composition (a and b live at the peak; a freed; c smaller, later),
/// and a DHAT file naming this file's lines.
fn profile_of_the_four_sites() {
    check_method();
    let a = black_box(site_a(3 << 20));
    let b = black_box(site_b(2 << 20));
    drop(a);
    let c = black_box(site_c(1 << 17));
    drop(c);
    for _ in 0..10 {
        drop(black_box(site_d(5000)));
    }
    let p = tracealloc::profile();
    let site = |line: u32| {
        let found: Vec<_> = p
            .sites()
            .iter()
            .filter(|s| file_lines(&s.traceback).first() == Some(&here(line)))
            .collect();
        assert_eq!(found.len(), 1, "one site at line {line}: {p}");
        found[0].clone()
    };
    let (sa, sb, sc, sd) = (site(SITE_A), site(SITE_B), site(SITE_C), site(SITE_D));
    let figures = |s: &tracealloc::Site| (s.allocs, s.frees, s.bytes_allocated, s.live_bytes);
    assert_eq!(figures(&sa), (1, 1, 3 << 20, 0), "{p}");
    assert_eq!(figures(&sb), (1, 0, 2 << 20, 2 << 20), "{p}");
    assert_eq!(figures(&sc), (1, 1, 1 << 20, 0), "{p}");
    assert_eq!(figures(&sd), (10, 10, 50_000, 0), "{p}");
    assert_eq!(
        (sa.peak_bytes, sb.peak_bytes, sc.peak_bytes),
        (3 << 20, 2 << 20, 0),
        "{p}"
    );
    assert_eq!((sc.max_live_bytes, sc.max_live_blocks), (1 << 20, 1), "{p}");
    assert!(p.info().peak_bytes >= 5 << 20, "{:?}", p.info());
    assert!(sa.total_lifetime > std::time::Duration::ZERO, "{sa:?}");
    // DHAT: parsed, and naming these sites.
    let dhat: serde_json::Value = serde_json::from_str(&p.dhat()).unwrap();
    let ftbl = dhat["ftbl"].as_array().unwrap();
    for line in [SITE_A, SITE_B, SITE_C, SITE_D] {
        let at = format!("{}:{line}:", file!());
        assert!(
            ftbl.iter().any(|f| f.as_str().unwrap().contains(&at)),
            "no frame at {at} in {ftbl:?}"
        );
    }
    drop(b);
}

#[test]
fn profile_on_the_test_thread() {
    let _s = Session::lock();
    tracealloc::start(1);
    profile_of_the_four_sites();
}

#[test]
fn profile_on_a_spawned_thread() {
    let _s = Session::lock();
    std::thread::spawn(|| {
        tracealloc::start(1);
        profile_of_the_four_sites();
        tracealloc::stop();
    })
    .join()
    .unwrap();
}

/// A JSON document of `n` records, its numbers offset by `seed`.
fn document(n: usize, seed: u64) -> String {
    let items: Vec<String> = (0..n as u64)
        .map(|i| format!("[{}, \"word {}\", {}.5]", i + seed, i * 7 + seed, i))
        .collect();
    format!("[{}]", items.join(","))
}

/// `(file, line)` of each diff's key, for the diffs of `KeyType::UserLine`
/// from this file.
fn mine(diffs: &[tracealloc::StatisticDiff]) -> Vec<(u32, isize)> {
    diffs
        .iter()
        .filter(|d| d.traceback.frames()[0].filename() == file!())
        .map(|d| (d.traceback.frames()[0].lineno(), d.size_diff))
        .collect()
}

/// Memory a registry dependency allocates for the user (serde_json
/// parsing and writing, several frames below this file's line), at the
/// crate's default traceback limit of 1, on the test thread and on a spawned
/// one: by the allocating line (tracemalloc's key) it is serde_json's; by
/// `KeyType::UserLine` it is this file's lines. The same document written
/// out twice (once on each thread) is one duplicated instance named at the
/// two lines; parsed values (tables of pointers, each to its own strings)
/// and a document of the same shape with other values are no copies.
#[test]
fn the_users_line_and_copies_through_a_dependency() {
    let _session = Session::lock();
    let (doc, other) = (document(3000, 0), document(3000, 1));
    tracealloc::start(1);
    check_method();
    let before = take_snapshot();
    let first = line!() + 1;
    let a: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let (b, second) = std::thread::spawn(move || {
        let line = line!() + 1;
        let b: serde_json::Value = serde_json::from_str(&doc).unwrap();
        (b, line)
    })
    .join()
    .unwrap();
    let third = line!() + 1;
    let c: serde_json::Value = serde_json::from_str(&other).unwrap();
    // Boxed, at their length: a Vec's spare capacity holds whatever was
    // there before, which two copies need not share (docs/tracing.md).
    let out_a = line!() + 1;
    let bytes_a = serde_json::to_vec(&a).unwrap().into_boxed_slice();
    let (bytes_b, out_b) = std::thread::scope(|s| {
        s.spawn(|| {
            let line = line!() + 1;
            let v = serde_json::to_vec(&b).unwrap().into_boxed_slice();
            (v, line)
        })
        .join()
        .unwrap()
    });
    let out_c = line!() + 1;
    let bytes_c = serde_json::to_vec(&c).unwrap().into_boxed_slice();
    let after = take_snapshot();

    let by_line = after.compare_to(&before, KeyType::Lineno, false);
    let top = &by_line[0].traceback.frames()[0];
    assert_ne!(
        top.filename(),
        file!(),
        "the allocating line is serde_json's"
    );
    assert!(top.path().contains("serde"), "{top:?}");
    let by_user = mine(&after.compare_to(&before, KeyType::UserLine, false));
    let lines: Vec<u32> = by_user.iter().map(|d| d.0).collect();
    for l in [first, second, third, out_a, out_b, out_c] {
        assert!(lines.contains(&l), "line {l} in {by_user:?}");
    }
    // Each parse's bytes at its line (a traceback of one frame).
    let parsed = by_user.iter().find(|d| d.0 == first).unwrap().1;
    assert!(parsed > 3000 * 32, "{by_user:?}");

    let dups = after.duplicate_instances(4096);
    let lines_of = |i: &tracealloc::DuplicateInstance| -> Vec<u32> {
        i.callers().iter().map(|c| c.lineno()).collect()
    };
    assert_eq!(dups.instances().len(), 1, "{dups}");
    let i = &dups.instances()[0];
    assert_eq!(lines_of(i), [out_a.min(out_b), out_a.max(out_b)], "{dups}");
    assert_eq!(i.bytes(), bytes_a.len(), "{dups}");
    assert_eq!(bytes_a, bytes_b);
    assert_ne!(bytes_a, bytes_c);
    drop(black_box((a, b, c, bytes_a, bytes_b, bytes_c)));
}
