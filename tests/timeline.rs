//! The timeline: marks in order with the heap `stats()` gave at them,
//! samples at about the interval, the peak between samples, the sampler
//! thread joined on stop, its own memory out of the figures, the file round
//! trip and the chart's markup.
//!
//! The sampler is process-wide (one timeline at a time) and the exact
//! checks need a quiet process: libtest's own threads allocate when a test
//! starts or ends, so the checks run one after another inside a single
//! `#[test]` (the harness's main thread only waits meanwhile).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tracealloc::{mark, measure, stats, Mark, MarkKind, Sample, Timeline, TraceAlloc};

mod xml_check;

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

#[test]
fn timeline() {
    let checks: [(&str, fn()); 10] = [
        (
            "marks_in_order_with_the_heap_stats_gave",
            marks_in_order_with_the_heap_stats_gave,
        ),
        (
            "samples_come_at_about_the_interval",
            samples_come_at_about_the_interval,
        ),
        (
            "the_sampler_thread_is_joined_on_stop",
            the_sampler_thread_is_joined_on_stop,
        ),
        (
            "an_idle_program_stays_flat_and_the_sampler_costs_it_nothing",
            an_idle_program_stays_flat_and_the_sampler_costs_it_nothing,
        ),
        (
            "a_peak_between_samples_is_caught",
            a_peak_between_samples_is_caught,
        ),
        (
            "marks_without_a_timeline_are_ignored_and_free",
            marks_without_a_timeline_are_ignored_and_free,
        ),
        ("misuse_panics_clearly", misuse_panics_clearly),
        ("long_labels_are_cut", long_labels_are_cut),
        ("save_and_load_round_trip", save_and_load_round_trip),
        (
            "the_chart_is_well_formed_svg_with_everything_escaped",
            the_chart_is_well_formed_svg_with_everything_escaped,
        ),
    ];
    for (name, check) in checks {
        eprintln!("timeline: {name}");
        settle();
        check();
    }
}

/// Waits (up to 2 s) until no thread has allocated for 20 ms: libtest's
/// main thread still allocates for a moment after it spawned the test's
/// thread (its queue of running tests), which a busy machine can delay
/// into the first exact check.
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = stats().total_allocs;
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < ms(20) {
        std::thread::sleep(ms(1));
        let now = stats().total_allocs;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// A panic's message, whether it was formatted or a literal.
fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How many of this process's threads are the sampler (by name).
fn samplers() -> usize {
    let mut samplers = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("Linux /proc") {
        let task = task.expect("a task entry");
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // `comm` keeps 15 bytes of the name.
        if comm.trim() == "tracealloc-time" {
            samplers += 1;
        }
    }
    samplers
}

/// Waits up to a second for `samplers()` to be `n`: a joined thread can
/// linger in /proc for a moment after `pthread_join` returned (the kernel
/// wakes the joiner before it has removed the task).
fn samplers_become(n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while samplers() != n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(ms(1));
    }
    true
}

fn marks_in_order_with_the_heap_stats_gave() {
    let sampler = Timeline::start(ms(5));
    let s0 = stats();
    mark!("start");
    let model1 = black_box(vec![1u8; 3 << 20]);
    let s1 = stats();
    mark!("loaded model{}", 1);
    let model2 = black_box(vec![2u8; 5 << 20]);
    let s2 = stats();
    tracealloc::__timeline_enter("use<T>");
    mark!("loaded model{} & {}", 2, "<b>");
    tracealloc::__timeline_exit("use<T>");
    drop(model1);
    drop(model2);
    let s3 = stats();
    mark!("freed");
    let t = sampler.stop();

    let got: Vec<(&str, MarkKind)> = t.marks.iter().map(|m| (m.label.as_str(), m.kind)).collect();
    assert_eq!(
        got,
        [
            ("start", MarkKind::Mark),
            ("loaded model1", MarkKind::Mark),
            ("use<T>", MarkKind::Enter),
            ("loaded model2 & <b>", MarkKind::Mark),
            ("use<T>", MarkKind::Exit),
            ("freed", MarkKind::Mark),
        ]
    );
    assert!(
        t.marks.windows(2).all(|w| w[0].t <= w[1].t),
        "{:?}",
        t.marks
    );
    assert!(t.samples.windows(2).all(|w| w[0].t <= w[1].t));
    // The heap at each mark is what stats() said just before it, exactly
    // (the mark itself allocates nothing counted).
    let plain: Vec<&Mark> = t
        .marks
        .iter()
        .filter(|m| m.kind == MarkKind::Mark)
        .collect();
    let want = [s0, s1, s2, s3].map(|s| s.current_bytes);
    assert_eq!(plain.iter().map(|m| m.heap).collect::<Vec<_>>(), want);
    assert_eq!(
        plain[2].heap - plain[1].heap,
        5 << 20,
        "allocs {} frees {}",
        s2.total_allocs - s1.total_allocs,
        s2.total_frees - s1.total_frees
    );
    // Each mark has a sample at its moment, with the same heap.
    for m in &t.marks {
        assert!(
            t.samples.iter().any(|s| s.t == m.t && s.heap == m.heap),
            "no sample at {m:?}"
        );
    }
    // The peak: at least both models, never below a sample's heap.
    let peak = t.peak();
    assert!(peak >= s2.current_bytes, "{peak} < {}", s2.current_bytes);
    assert!(t.samples.iter().all(|s| s.heap_peak >= s.heap));
    assert!(t.samples.iter().any(|s| s.rss.is_some()));
}

fn samples_come_at_about_the_interval() {
    let interval = ms(10);
    let began = Instant::now();
    let sampler = Timeline::start(interval);
    std::thread::sleep(ms(300));
    let t = sampler.stop();
    let elapsed = began.elapsed();
    // Start and stop take one sample each; the thread one per interval,
    // fewer when the machine is busy (missed ticks are skipped, never
    // caught up).
    let expected = (elapsed.as_nanos() / interval.as_nanos()) as usize;
    let n = t.samples.len();
    assert!(
        n >= expected / 3 && n <= expected + 3,
        "{n} samples in {elapsed:?}"
    );
    let gaps: Vec<Duration> = t.samples.windows(2).map(|w| w[1].t - w[0].t).collect();
    let mut sorted = gaps.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median >= ms(8) && median <= ms(30),
        "median gap {median:?}: {gaps:?}"
    );
    assert_eq!(t.interval, interval);
    assert!(t.duration() <= elapsed);
}

fn the_sampler_thread_is_joined_on_stop() {
    assert_eq!(samplers(), 0);
    let sampler = Timeline::start(ms(2));
    std::thread::sleep(ms(20));
    assert_eq!(samplers(), 1, "the sampler runs");
    let t = sampler.stop();
    assert!(samplers_become(0), "the sampler thread is still there");
    // Nothing was recorded after stop returned: the thread was stopped.
    let n = t.samples.len();
    std::thread::sleep(ms(10));
    assert_eq!(t.samples.len(), n);

    // Dropping the handle stops it too, and a new one can start.
    let sampler = Timeline::start(ms(2));
    assert_eq!(samplers(), 1);
    drop(sampler);
    assert!(samplers_become(0));
    let _ = Timeline::start(ms(2)).stop();
}

fn an_idle_program_stays_flat_and_the_sampler_costs_it_nothing() {
    let before = stats();
    let tracer_before = tracealloc::tracer_memory();
    let sampler = Timeline::start(ms(1));
    std::thread::sleep(ms(200));
    let t = sampler.stop();
    assert!(t.samples.len() >= 50, "{} samples", t.samples.len());
    let first = t.samples[0];
    for s in &t.samples {
        assert_eq!(s.heap, first.heap, "the heap moved at {:?}", s.t);
        assert_eq!(s.heap_peak, first.heap_peak, "the peak moved at {:?}", s.t);
    }
    // What the figures hold of the sampler: its thread's handle, and only
    // that (the recording is tracer memory).
    let thread = first.heap - before.current_bytes;
    eprintln!("timeline: the sampler thread's handle: {thread} B");
    assert!(thread < 4096, "{thread} B");
    drop(t);
    // Joined and freed: the heap and the tracer's memory are back.
    assert_eq!(stats().current_bytes, before.current_bytes);
    assert_eq!(tracealloc::tracer_memory(), tracer_before);
}

fn a_peak_between_samples_is_caught() {
    // The peak is the user's to reset: here we are the user.
    tracealloc::reset_peak();
    let sampler = Timeline::start(ms(20));
    let base = stats().current_bytes;
    mark!("before");
    drop(black_box(vec![0u8; 8 << 20]));
    mark!("after");
    let t = sampler.stop();
    let after = t.marks[1].heap;
    assert!(after < base + (1 << 20), "freed again");
    // No sample saw the 8 MiB block, but the counters' peak did.
    assert!(t.samples.iter().all(|s| s.heap < base + (1 << 20)));
    // Within the counters' slack: 64 KiB per thread (see `Stats`).
    assert!(
        t.peak() + (64 << 10) >= base + (8 << 20),
        "{} < {}",
        t.peak(),
        base + (8 << 20)
    );
    // The samples before the block keep the lower peak.
    assert!(t.samples[0].heap_peak < base + (1 << 20));
}

fn marks_without_a_timeline_are_ignored_and_free() {
    let ((), d) = measure(|| {
        for i in 0..100 {
            mark!("nothing {}", black_box(i));
        }
    });
    assert_eq!((d.allocs, d.bytes_allocated), (0, 0));
    // And with one running, a mark allocates nothing counted either.
    let sampler = Timeline::start(ms(50));
    let ((), d) = measure(|| mark!("counted? {}", black_box(7)));
    assert_eq!((d.allocs, d.bytes_allocated), (0, 0));
    let t = sampler.stop();
    assert_eq!(t.marks[0].label, "counted? 7");
}

fn misuse_panics_clearly() {
    let sampler = Timeline::start(ms(50));
    let second = std::panic::catch_unwind(|| Timeline::start(ms(50)));
    let msg = second.expect_err("a second timeline");
    let msg = message(&*msg);
    assert!(
        msg.starts_with("tracealloc: a timeline is already running"),
        "{msg}"
    );
    drop(sampler);
    let zero = std::panic::catch_unwind(|| Timeline::start(Duration::ZERO));
    let msg = zero.expect_err("a zero interval");
    let msg = message(&*msg);
    assert!(
        msg.starts_with("tracealloc: the timeline's interval"),
        "{msg}"
    );
    // Neither left a timeline behind.
    let _ = Timeline::start(ms(50)).stop();
}

fn long_labels_are_cut() {
    let sampler = Timeline::start(ms(50));
    let long = "ü".repeat(300);
    mark!("{long}");
    let t = sampler.stop();
    assert_eq!(t.marks[0].label, "ü".repeat(128));
}

fn fixed() -> Timeline {
    let mib = 1u64 << 20;
    let samples = (0..=40)
        .map(|i| {
            let heap = if (10..30).contains(&i) {
                200 * mib
            } else {
                20 * mib
            };
            Sample::new(
                ms(i * 25),
                heap,
                if i >= 10 { 200 * mib } else { 20 * mib },
                Some(heap + 30 * mib),
            )
        })
        .collect();
    let marks = vec![
        Mark::new(ms(100), "load_twice<T>", MarkKind::Enter, 20 * mib, None),
        Mark::new(
            ms(250),
            "loaded \"model1\" & <model2>",
            MarkKind::Mark,
            200 * mib,
            Some(230 * mib),
        ),
        Mark::new(ms(750), "load_twice<T>", MarkKind::Exit, 20 * mib, None),
        Mark::new(ms(800), "singleton", MarkKind::Enter, 20 * mib, None),
    ];
    Timeline::new(ms(25), samples, marks)
}

fn save_and_load_round_trip() {
    let dir = std::env::temp_dir().join(format!("tracealloc-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.timeline.json");
    let t = fixed();
    t.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("{\"format\":\"tracealloc-timeline\",\"version\":1,"),
        "{text}"
    );
    assert_eq!(Timeline::load(&path).unwrap(), t);

    // Bad files are errors naming the path, never panics.
    for (name, body, says) in [
        ("missing.json", None, "cannot open"),
        ("garbage.json", Some("not json"), "not a valid timeline file"),
        ("other.json", Some("{\"format\":\"x\",\"version\":1,\"interval_ns\":1,\"samples\":[],\"marks\":[]}"), "the format is"),
        ("version.json", Some("{\"format\":\"tracealloc-timeline\",\"version\":9,\"interval_ns\":1,\"samples\":[],\"marks\":[]}"), "version 9"),
        ("kind.json", Some("{\"format\":\"tracealloc-timeline\",\"version\":1,\"interval_ns\":1,\"samples\":[],\"marks\":[[0,\"boom\",\"x\",0,null]]}"), "unknown mark kind"),
        ("short.json", Some("{\"format\":\"tracealloc-timeline\",\"version\":1,\"interval_ns\":1,\"samples\":[[0,1]],\"marks\":[]}"), "not a valid timeline file"),
    ] {
        let p = dir.join(name);
        if let Some(body) = body {
            std::fs::write(&p, body).unwrap();
        }
        let e = Timeline::load(&p).expect_err(name).to_string();
        assert!(e.starts_with("tracealloc: cannot load timeline "), "{e}");
        assert!(e.contains(name) && e.contains(says), "{name}: {e}");
    }
    let e = t
        .save(dir.join("no/such/dir/x.json"))
        .expect_err("no folder");
    assert!(
        e.to_string()
            .starts_with("tracealloc: cannot save timeline"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn the_chart_is_well_formed_svg_with_everything_escaped() {
    let svg = fixed().svg(900, 420);
    xml_check::check(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for text in [
        "load_twice&lt;T&gt;",
        "loaded &quot;model1&quot; &amp; &lt;model2&gt;",
        "singleton",
        ">heap<",
        ">heap peak<",
        ">RSS<",
        ">time (s)<",
        ">memory (MiB)<",
    ] {
        assert!(svg.contains(text), "{text} missing");
    }
    assert!(!svg.contains("<model2>") && !svg.contains("<T>"));
    // Three polylines (heap, peak, RSS) and the brackets' shaded bands.
    assert_eq!(svg.matches("<polyline").count(), 3);
    assert!(svg.contains("fill-opacity=\"0.13\"><title>load_twice&lt;T&gt; (0.100 s to 0.750 s)"));
    assert!(
        svg.contains("<title>singleton (0.800 s to 1.000 s)"),
        "unclosed runs to the end"
    );
    // y ticks reach the 230 MiB RSS.
    assert!(
        svg.contains(">250</text>") || svg.contains(">240</text>"),
        "{svg}"
    );
    // Empty timelines draw too.
    let empty = Timeline::default().svg(10, 10);
    xml_check::check(&empty).unwrap();
    assert!(empty.contains("No samples") && empty.contains("width=\"320\""));
}
