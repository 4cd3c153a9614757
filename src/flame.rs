//! SVG flame graphs of a [`Profile`], drawn through `inferno` (feature
//! `flamegraph`).

use std::io::Write;
use std::path::Path;

use crate::dump::{write_atomic, Error};
use crate::profile::{Metric, Profile};
use crate::scope::untraced;
use crate::timeline::escape;

/// The graph's title and the unit of its figures.
fn labels(metric: Metric) -> (&'static str, &'static str) {
    match metric {
        Metric::BytesAllocated => ("Bytes allocated", "bytes"),
        Metric::Blocks => ("Blocks allocated", "blocks"),
        Metric::LiveBytes => ("Bytes live at the end", "bytes"),
        Metric::MaxLiveBytes => ("Most bytes live at once, per site", "bytes"),
        Metric::PeakBytes => ("Bytes live at the peak", "bytes"),
    }
}

/// A small SVG that says there is nothing to draw, and why.
fn empty_svg(title: &str, why: &str) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" standalone=\"no\"?>\n",
            "<svg version=\"1.1\" width=\"1200\" height=\"90\" viewBox=\"0 0 1200 90\" ",
            "xmlns=\"http://www.w3.org/2000/svg\">",
            "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#eeeeee\"/>",
            "<text x=\"600\" y=\"24\" font-family=\"Verdana\" font-size=\"17\" ",
            "text-anchor=\"middle\">{}</text>",
            "<text x=\"600\" y=\"60\" font-family=\"Verdana\" font-size=\"12\" ",
            "text-anchor=\"middle\">{}</text></svg>\n"
        ),
        escape(title),
        escape(why)
    )
}

impl Profile {
    /// The profile as an SVG flame graph of `metric`: the collapsed stacks
    /// of [`folded`](Self::folded) drawn by `inferno` (the Rust port of
    /// `flamegraph.pl`), titled with the metric ("Bytes allocated",
    /// "Blocks allocated", "Bytes live at the end", "Most bytes live at
    /// once, per site", "Bytes live at the peak"), each frame's tooltip
    /// giving its figure in bytes (blocks for [`Metric::Blocks`]) and its
    /// share. Open the file in a web browser: frames can be clicked to zoom
    /// and searched.
    ///
    /// A profile with nothing to draw for `metric` (no site, or every
    /// site's figure 0, as the live bytes of a run that freed everything)
    /// gives a small SVG that says so ("No data: no site has any bytes
    /// live at the end"), where `inferno` alone would fail; so this never
    /// fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Metric, Profile, Snapshot, Trace, Traceback};
    ///
    /// let at = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
    /// let p = Profile::from_snapshot(&Snapshot::new(vec![Trace::new(4096, at)], 1));
    /// let svg = p.flamegraph(Metric::BytesAllocated);
    /// assert!(svg.starts_with("<?xml") && svg.contains("src/model.rs:42"));
    /// ```
    pub fn flamegraph(&self, metric: Metric) -> String {
        untraced(|| {
            let (title, unit) = labels(metric);
            let folded = self.folded(metric);
            if folded.is_empty() {
                let why = format!(
                    "No data: {}",
                    if self.sites().is_empty() {
                        "the profile has no sites".to_string()
                    } else {
                        format!("no site has any {}", title.to_lowercase())
                    }
                );
                return empty_svg(title, &why);
            }
            let mut options = inferno::flamegraph::Options::default();
            options.title = title.to_string();
            options.count_name = unit.to_string();
            options.name_type = "Site:".to_string();
            // flamegraph.pl's memory palette, each frame's colour from its
            // name: the same file draws the same, and a frame keeps its
            // colour from one graph to the next.
            options.colors = inferno::flamegraph::color::Palette::Basic(
                inferno::flamegraph::color::BasicPalette::Mem,
            );
            options.hash = true;
            let mut svg = Vec::new();
            match inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg) {
                Ok(()) => String::from_utf8(svg)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                // Writing to memory does not fail, and every line of
                // `folded` is valid; should inferno refuse anyway, say so.
                Err(e) => empty_svg(title, &format!("inferno could not draw it: {e}")),
            }
        })
    }

    /// Writes [`flamegraph`](Self::flamegraph)`(metric)` to `path`, as
    /// [`Profile::save`] writes (a temporary file renamed over `path`).
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Metric, Profile, Snapshot, Trace, Traceback};
    ///
    /// let at = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
    /// let p = Profile::from_snapshot(&Snapshot::new(vec![Trace::new(4096, at)], 1));
    /// let path = std::env::temp_dir().join(format!("tracealloc-doc-{}.svg", std::process::id()));
    /// p.write_flamegraph(&path, Metric::LiveBytes)?;
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), tracealloc::Error>(())
    /// ```
    pub fn write_flamegraph(&self, path: impl AsRef<Path>, metric: Metric) -> Result<(), Error> {
        untraced(|| {
            let svg = self.flamegraph(metric);
            write_atomic(path.as_ref(), "write", "flame graph", |w| {
                w.write_all(svg.as_bytes())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Traceback};
    use crate::snapshot::Snapshot;

    fn profile() -> Profile {
        use crate::profile::{RunInfo, Site};
        use std::time::{Duration, SystemTime};
        let site = |frames: &[(&str, u32, &str)], bytes: u64, blocks: u64| Site {
            traceback: Traceback::new(
                frames
                    .iter()
                    .map(|&(file, line, function)| Frame::new(file, line, function))
                    .collect(),
            ),
            allocs: blocks,
            frees: 0,
            bytes_allocated: bytes,
            live_blocks: blocks,
            live_bytes: bytes,
            max_live_bytes: bytes,
            max_live_blocks: blocks,
            peak_bytes: 0,
            peak_blocks: 0,
            total_lifetime: Duration::ZERO,
            addresses: vec![0; frames.len()],
        };
        Profile::new(
            vec![
                site(
                    &[
                        ("src/model.rs", 42, "model::load<&str>"),
                        ("src/main.rs", 7, "main"),
                    ],
                    4000,
                    2,
                ),
                site(
                    &[
                        ("src/buf.rs", 3, "<[u8; 4] as buf::Fill>::fill"),
                        ("src/main.rs", 9, "main"),
                    ],
                    24,
                    1,
                ),
            ],
            RunInfo {
                pid: 1,
                command: Vec::new(),
                traceback_limit: 2,
                sample_bytes: None,
                capture_method: None,
                tracer_memory: 0,
                started: SystemTime::UNIX_EPOCH,
                duration: Duration::ZERO,
                peak_bytes: 0,
                peak_at: None,
            },
        )
    }

    /// The SVG's text with XML's escapes undone.
    fn unescape(svg: &str) -> String {
        svg.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    #[test]
    fn draws_every_frame_with_title_and_unit() {
        let svg = profile().flamegraph(Metric::BytesAllocated);
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let text = unescape(&svg);
        for frame in [
            "main (src/main.rs:7)",
            "model::load<&str> (src/model.rs:42)",
            "main (src/main.rs:9)",
            "<[u8, 4] as buf::Fill>::fill (src/buf.rs:3)",
        ] {
            assert!(text.contains(frame), "{frame} missing");
        }
        assert!(text.contains(">Bytes allocated<"), "title");
        assert!(text.contains("4,000 bytes"), "model::load's 4000 bytes");
        assert!(text.contains("all (4,024 bytes, 100%)"), "the total");

        let blocks = unescape(&profile().flamegraph(Metric::Blocks));
        assert!(blocks.contains(">Blocks allocated<"));
        assert!(blocks.contains("all (3 blocks, 100%)"), "{blocks}");
    }

    #[test]
    fn nothing_to_draw_is_said_in_the_svg() {
        // Nothing at the peak.
        let svg = profile().flamegraph(Metric::PeakBytes);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("No data: no site has any bytes live at the peak"),
            "{svg}"
        );
        let empty = Profile::from_snapshot(&Snapshot::new(Vec::new(), 1));
        let svg = empty.flamegraph(Metric::BytesAllocated);
        assert!(svg.contains("No data: the profile has no sites"), "{svg}");
    }

    #[test]
    fn writes_the_file_or_names_it_in_the_error() {
        let dir = std::env::temp_dir().join(format!("tracealloc-flame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("heap.svg");
        profile()
            .write_flamegraph(&path, Metric::LiveBytes)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            profile().flamegraph(Metric::LiveBytes)
        );
        let bad = dir.join("no/such/heap.svg");
        let err = profile()
            .write_flamegraph(&bad, Metric::LiveBytes)
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "tracealloc: cannot write flame graph {}: ",
                bad.display()
            )),
            "{err}"
        );
    }
}
