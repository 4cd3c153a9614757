//! The HTML report: built from fixed data (snapshots, a timeline, a text
//! block, SVGs), it parses as well-formed markup, holds every section,
//! escapes every text that came from data, and names no external URL.

use std::time::Duration;

use tracealloc::{
    Content, Frame, KeyType, Mark, MarkKind, Report, Sample, Snapshot, Timeline, Trace, Traceback,
};

mod xml_check;

// The report needs no allocator of its own; installed as every test binary
// of this crate is, so that the crate's functions behave as in a program.
#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// A frame at a line of this file whose source needs escaping.
fn marked_line() -> u32 {
    let here = line!(); // let x: Vec<u8> = a & b; "quoted" 'too'
    here
}

fn at(file: &str, line: u32, function: &str) -> Traceback {
    Traceback::new(vec![Frame::new(file, line, function)])
}

fn snapshots() -> (Snapshot, Snapshot) {
    let load = at(file!(), marked_line(), "load<T>");
    let other = at("src/<odd> & name.rs", 7, "helper&co");
    let old = Snapshot::new(
        vec![
            Trace::new(64 << 20, load.clone()),
            Trace::new(4096, other.clone()),
        ],
        1,
    );
    let new = Snapshot::new(
        vec![
            Trace::new(64 << 20, load.clone()).with_content(Content::Hash(7)),
            Trace::new(64 << 20, load).with_content(Content::Hash(7)),
            Trace::new(100, other.clone()),
            Trace::new(100, other),
        ],
        1,
    );
    (new, old)
}

fn timeline() -> Timeline {
    let ms = Duration::from_millis;
    let mib = 1u64 << 20;
    let samples = (0..=20)
        .map(|i| {
            let heap = if (5..15).contains(&i) {
                128 * mib
            } else {
                64 * mib
            };
            Sample::new(
                ms(i * 10),
                heap,
                if i >= 5 { 128 * mib } else { 64 * mib },
                Some(heap + 20 * mib),
            )
        })
        .collect();
    Timeline::new(
        ms(10),
        samples,
        vec![
            Mark::new(ms(40), "duplicate<Model>", MarkKind::Enter, 64 * mib, None),
            Mark::new(
                ms(60),
                "loaded model1 & model2",
                MarkKind::Mark,
                128 * mib,
                None,
            ),
            Mark::new(ms(150), "duplicate<Model>", MarkKind::Exit, 64 * mib, None),
        ],
    )
}

const HOSTILE_SVG: &str = "<?xml version=\"1.0\" standalone=\"no\"?>\n\
<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n\
<svg version=\"1.1\" width=\"300\" height=\"60\" onload=\"init(evt)\" viewBox=\"0 0 300 60\" \
xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\">\
<!-- See https://github.com/brendangregg/FlameGraph -->\
<style type=\"text/css\">text { font-size:12px } #frames > *:hover { stroke:black }</style>\
<script type=\"text/ecmascript\"><![CDATA[ function init(evt) { fetch('https://evil.example/'); } ]]></script>\
<image href=\"https://evil.example/x.png\" width=\"1\" height=\"1\"/>\
<g id=\"frames\"><rect x=\"0\" y=\"0\" width=\"300\" height=\"20\" fill=\"#e0a050\"/>\
<text x=\"4\" y=\"14\">main &amp; load&lt;T&gt;</text></g></svg>\n";

fn report() -> Report {
    let (new, old) = snapshots();
    Report::new("Singleton <vs> duplicate & more")
        .timeline("Timeline: heap & RSS", &timeline())
        .snapshot_top("Top lines <now>", &new, 10, KeyType::Lineno)
        .snapshot_top("Top tracebacks", &new, 10, KeyType::Traceback)
        .snapshot_diff("What grew", &new, &old, 10, KeyType::Lineno)
        .duplicates("Duplicates", &new.duplicate_instances(1 << 20))
        .duplicates("No duplicates", &old.duplicate_instances(1 << 20))
        .text("Line table", "Line #    Mem usage    Increment\n    12    64.0 MiB     +64.0 MiB   let m = load::<Model>(&path);\n")
        .svg("Flame graph", HOSTILE_SVG)
        .svg("Not an SVG", "<html><body>no</body></html>")
}

const TITLES: [&str; 9] = [
    "Timeline: heap &amp; RSS",
    "Top lines &lt;now&gt;",
    "Top tracebacks",
    "What grew",
    "Duplicates",
    "No duplicates",
    "Line table",
    "Flame graph",
    "Not an SVG",
];

#[test]
fn the_report_is_well_formed_complete_escaped_and_offline() {
    let html = report().to_html();
    xml_check::check(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("onload") && !html.contains("evil.example")
    );
    assert!(!html.contains("xmlns"));
    // Every section: a heading and a table-of-contents entry.
    for (i, t) in TITLES.iter().enumerate() {
        assert!(html.contains(&format!("<h2>{t}</h2>")), "{t}");
        assert!(
            html.contains(&format!("<a href=\"#s{}\">{t}</a>", i + 1)),
            "{t}"
        );
    }
    assert!(html.contains("<title>Singleton &lt;vs&gt; duplicate &amp; more</title>"));
    // Data escaped wherever it shows.
    for escaped in [
        "src/&lt;odd&gt; &amp; name.rs:7",
        "duplicate&lt;Model&gt;",
        "loaded model1 &amp; model2",
        "load::&lt;Model&gt;(&amp;path);",
        "main &amp; load&lt;T&gt;",
        // The source line read from this file.
        "let x: Vec&lt;u8&gt; = a &amp; b; &quot;quoted&quot; &#39;too&#39;",
    ] {
        assert!(html.contains(escaped), "{escaped} missing");
    }
    for raw in ["<odd>", "<Model>", "<T>", "<u8>", "<vs>", "<now>"] {
        assert!(!html.contains(raw), "{raw} unescaped");
    }
    // The tables hold the figures.
    let line = format!("{}:{}", file!(), marked_line());
    assert!(
        html.contains(&format!(
            "<td class=\"site\">{line}</td><td class=\"n\">128 MiB</td><td class=\"n\">2</td>"
        )),
        "{html}"
    );
    assert!(
        html.contains("<td class=\"n up\">+64.0 MiB</td>"),
        "the diff"
    );
    assert!(
        html.contains("sharing one copy of each would save 64.0 MiB in all"),
        "{html}"
    );
    assert!(html.contains("No duplicated instances"));
    // The timeline's chart is inline, with its marks' table.
    assert!(html.contains("<div class=\"figure\">\n<svg version=\"1.1\""));
    assert!(html.contains(">heap peak</text>"));
    assert!(html.contains("<td>enter</td><td class=\"site\">duplicate&lt;Model&gt;</td>"));
    // The SVG: sanitized, its stylesheet confined to its figure.
    assert!(html.contains("<div class=\"figure\" id=\"fig8\">\n<svg version=\"1.1\" width=\"300\""));
    assert!(html.contains("#fig8 text { font-size:12px }"));
    assert!(html.contains("#fig8 #frames &gt; *:hover"));
    assert!(html.contains("<p class=\"note\">The SVG was not embedded: it does not start with"));
}

#[test]
fn write_is_what_to_html_gives() {
    let dir = std::env::temp_dir().join(format!("tracealloc-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.html");
    let r = report();
    r.write(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), r.to_html());
    let e = r
        .write(dir.join("missing/report.html"))
        .expect_err("no folder");
    assert!(
        e.to_string()
            .starts_with("tracealloc: cannot write report "),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_report_is_a_page_too() {
    let html = Report::new("Nothing").to_html();
    xml_check::check(&html).unwrap();
    assert!(html.contains("<h1>Nothing</h1>") && !html.contains("<nav>"));
}

#[cfg(feature = "flamegraph")]
#[test]
fn a_real_flame_graph_embeds_offline() {
    use tracealloc::{Metric, Profile};
    let (new, _) = snapshots();
    let svg = Profile::from_snapshot(&new).flamegraph(Metric::BytesAllocated);
    assert!(
        svg.contains("http://"),
        "inferno's SVG names its namespaces"
    );
    let html = Report::new("Flame").svg("Flame graph", &svg).to_html();
    xml_check::check(&html).unwrap_or_else(|e| panic!("{e}"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("onload") && !html.contains("onclick"));
    assert!(html.contains("load&lt;T&gt;"));
    assert!(html.contains("#fig1 text"), "inferno's stylesheet, scoped");
}
/// The checker the other tests lean on, checked.
#[test]
fn the_checker_catches_what_it_should() {
    assert!(xml_check::check("<a><b x=\"1\"/>t &amp; &#39;</a>").is_ok());
    assert!(xml_check::check("<!DOCTYPE html>\n<html><!-- c --><p>x</p></html>\n").is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a>x & y</a>",
        "<a x=1></a>",
        "<a></a><b></b>",
        "<a>",
        "<a x=\"<\"></a>",
        "<a x=\"1\" x=\"2\"></a>",
        "<a>&nbsp;</a>",
        "text",
    ] {
        assert!(xml_check::check(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// A real traced run, for the check in headless Chromium
// (scripts/html_report_check.sh): not run by default.

fn weights(n_mib: usize) -> Vec<u8> {
    // Touched, so that RSS grows too.
    std::hint::black_box(vec![1u8; n_mib << 20])
}

fn load_twice() -> (Vec<u8>, Vec<u8>) {
    tracealloc::__timeline_enter("load_twice");
    let a = weights(48);
    tracealloc::mark!("model1 loaded");
    std::thread::sleep(Duration::from_millis(60));
    let b = weights(48);
    tracealloc::mark!("model2 loaded");
    std::thread::sleep(Duration::from_millis(60));
    tracealloc::__timeline_exit("load_twice");
    (a, b)
}

fn load_shared() -> (std::sync::Arc<Vec<u8>>, std::sync::Arc<Vec<u8>>) {
    tracealloc::__timeline_enter("load_shared<Registry>");
    let a = std::sync::Arc::new(weights(48));
    tracealloc::mark!("model1 loaded");
    std::thread::sleep(Duration::from_millis(60));
    let b = std::sync::Arc::clone(&a);
    tracealloc::mark!("model2 = model1");
    std::thread::sleep(Duration::from_millis(60));
    tracealloc::__timeline_exit("load_shared<Registry>");
    (a, b)
}

#[test]
#[ignore = "a real run for scripts/html_report_check.sh; writes target/report.html"]
fn real_run_report() {
    let out = std::env::var_os("TRACEALLOC_REPORT_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report.html")
        });
    let sampler = Timeline::start(Duration::from_millis(5));
    tracealloc::start(8);
    tracealloc::mark!("start");
    std::thread::sleep(Duration::from_millis(40));
    let (a, b) = load_twice();
    let twice = tracealloc::take_snapshot();
    drop((a, b));
    tracealloc::mark!("copies dropped");
    std::thread::sleep(Duration::from_millis(60));
    let shared = load_shared();
    let once = tracealloc::take_snapshot();
    drop(shared);
    tracealloc::mark!("end");
    std::thread::sleep(Duration::from_millis(40));
    tracealloc::stop();
    let timeline = sampler.stop();
    #[allow(unused_mut)]
    let mut report = Report::new("tracealloc report: load twice vs share one instance")
        .timeline("Timeline", &timeline)
        .snapshot_top(
            "Live blocks, two copies loaded (by line)",
            &twice,
            10,
            KeyType::Lineno,
        )
        .snapshot_diff(
            "Two copies vs shared, by line",
            &twice,
            &once,
            10,
            KeyType::Lineno,
        )
        .duplicates("Duplicates", &twice.duplicate_instances(1 << 20))
        .snapshot_top(
            "Two copies loaded (by traceback)",
            &twice,
            3,
            KeyType::Traceback,
        )
        .text(
            "Top 5 (text report)",
            &twice.top(5, KeyType::Lineno).to_string(),
        );
    #[cfg(feature = "flamegraph")]
    {
        let profile = tracealloc::Profile::from_snapshot(&twice);
        report = report.svg(
            "Flame graph: live bytes, two copies",
            &profile.flamegraph(tracealloc::Metric::BytesAllocated),
        );
    }
    report.write(&out).unwrap();
    timeline.save(out.with_extension("timeline.json")).unwrap();
    println!("report: {}", out.display());
    println!(
        "timeline: {} samples over {:?}, {} marks, peak heap {} MiB",
        timeline.samples.len(),
        timeline.duration(),
        timeline.marks.len(),
        timeline.peak() >> 20
    );
}
