//! One self-contained HTML report: [`Report`].
//!
//! The page is one file with its CSS inline and its charts as inline SVG:
//! no script, no font, no stylesheet or image fetched, no `http://` or
//! `https://` anywhere in it, so it opens from disk (or an archived CI
//! artifact) as it was written. It is written as XHTML-compatible markup
//! (every element closed, every attribute quoted), so an XML parser reads
//! it too. Every text that comes from data (file and function names,
//! labels, titles, source lines) is escaped; embedded SVGs are sanitized
//! (see [`Report::svg`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::dump::{write_atomic, Error};
use crate::frame::Frame;
use crate::instances::DuplicateInstances;
use crate::scope::untraced;
use crate::snapshot::{format_size, KeyLabel, KeyType, Snapshot};
use crate::source::source_line;
use crate::timeline::{escape, MarkKind, Timeline};

/// The page's style: generic font families only (nothing fetched).
const CSS: &str = "
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1240px; padding: 0 20px 40px; color: #222; background: #fff; }
h1 { font-size: 1.6em; margin: 24px 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #ddd; }
p.meta { color: #666; margin: 0 0 12px; }
nav ol { margin: 4px 0 0; padding-left: 22px; columns: 2; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.site, td.src, pre { font-family: ui-monospace, monospace; }
td.src { color: #555; }
tr.sum td { background: #fafafa; font-style: italic; }
.up { color: #b00020; }
.down { color: #1b7a1b; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 8px 10px; overflow-x: auto; font-size: 0.88em; line-height: 1.35; }
div.figure { overflow-x: auto; margin: 8px 0; }
div.figure svg { max-width: 100%; height: auto; }
p.note { color: #8a5a00; }
";

/// A self-contained HTML report: a title, then sections in the order they
/// were added (the timeline chart, top-N tables, diffs, duplicates, text
/// blocks such as the line tables of `#[tracealloc::profile]`, SVGs such
/// as a flame graph), with a table of contents.
///
/// The page is one file with its CSS inline and its charts as inline SVG:
/// no script, no font, stylesheet or image fetched, no `http://` or
/// `https://` anywhere in it, so it opens from disk (or from an archived CI
/// artifact) as it was written. It is XHTML-compatible markup (every
/// element closed, every attribute quoted), so an XML parser reads it too.
/// Every text that comes from data (file and function names, labels,
/// titles, source lines) is escaped; embedded SVGs are sanitized (see
/// [`svg`](Self::svg)).
///
/// # Examples
///
/// ```
/// use tracealloc::{Frame, KeyType, Report, Snapshot, Trace, Traceback};
///
/// let site = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
/// let s = Snapshot::new(vec![Trace::new(4 << 20, site)], 1);
/// let html = Report::new("Model loading")
///     .snapshot_top("Where the memory is", &s, 10, KeyType::Lineno)
///     .text("Notes", "two strategies <compared>")
///     .to_html();
/// assert!(html.contains("src/model.rs:42") && html.contains("&lt;compared&gt;"));
/// assert!(!html.contains("http://") && !html.contains("https://"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    title: String,
    sections: Vec<Section>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Section {
    title: String,
    /// Markup, built escaped.
    body: String,
}

/// A size as the text reports write it (`5120 KiB`).
fn size(bytes: u64) -> String {
    format_size(bytes as f64, false)
}

fn signed(bytes: isize) -> String {
    format_size(bytes as f64, true)
}

fn class_of(diff: isize) -> &'static str {
    match diff.signum() {
        1 => " up",
        -1 => " down",
        _ => "",
    }
}

/// The source line of a traceback's allocating frame, escaped ("" when
/// there is none, and for [`KeyType::Traceback`], whose site column shows
/// every frame's line already).
fn source_of(t: &crate::frame::Traceback, key_type: KeyType) -> String {
    if key_type == KeyType::Traceback {
        return String::new();
    }
    t.frames()
        .first()
        .and_then(|f| source_line(f.path(), f.lineno()))
        .map(|s| escape(&s))
        .unwrap_or_default()
}

/// The site column: the key's label; a whole traceback for
/// [`KeyType::Traceback`], one frame a line.
fn site_of(t: &crate::frame::Traceback, key_type: KeyType) -> String {
    match key_type {
        KeyType::Traceback => t
            .format(None, true)
            .iter()
            .map(|l| escape(l.trim_end()))
            .collect::<Vec<_>>()
            .join("<br/>"),
        _ => escape(&KeyLabel(t, key_type).to_string()),
    }
}

impl Report {
    /// An empty report titled `title`.
    pub fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            sections: Vec::new(),
        }
    }

    fn push(mut self, title: &str, body: String) -> Report {
        self.sections.push(Section {
            title: title.to_string(),
            body,
        });
        self
    }

    /// A section with `timeline`'s chart ([`Timeline::svg`], 1180 × 440)
    /// and a table of its marks (time, kind, label, heap and RSS then),
    /// under a line giving its span, sample count, highest heap and RSS.
    pub fn timeline(self, title: &str, timeline: &Timeline) -> Report {
        let body = untraced(|| {
            let mut b = String::new();
            let max_rss = timeline.samples.iter().filter_map(|s| s.rss).max();
            let _ = writeln!(
                b,
                "<p>{:.3} s, {} samples every {:?}; highest heap {}{}.</p>",
                timeline.duration().as_secs_f64(),
                timeline.samples.len(),
                timeline.interval,
                size(timeline.peak()),
                max_rss.map_or(String::new(), |r| format!(", highest RSS {}", size(r)))
            );
            figure(&mut b, &timeline.svg(1180, 440));
            if !timeline.marks.is_empty() {
                b.push_str(
                    "<table><thead><tr><th>time (s)</th><th>kind</th><th>label</th>\
                     <th>heap</th><th>RSS</th></tr></thead><tbody>\n",
                );
                for m in &timeline.marks {
                    let kind = match m.kind {
                        MarkKind::Enter => "enter",
                        MarkKind::Exit => "exit",
                        _ => "mark",
                    };
                    let _ = writeln!(
                        b,
                        "<tr><td class=\"n\">{:.3}</td><td>{kind}</td><td class=\"site\">{}</td>\
                         <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                        m.t.as_secs_f64(),
                        escape(&m.label),
                        size(m.heap),
                        m.rss.map_or("-".to_string(), size)
                    );
                }
                b.push_str("</tbody></table>\n");
            }
            b
        });
        self.push(title, body)
    }

    /// A section with the `n` biggest keys of `snapshot` grouped by
    /// `key_type` ([`Snapshot::statistics`]), as
    /// [`Snapshot::top`] prints them: rank, site, size, count, average
    /// and the allocating source line, then the rest summed and the total.
    pub fn snapshot_top(
        self,
        title: &str,
        snapshot: &Snapshot,
        n: usize,
        key_type: KeyType,
    ) -> Report {
        let body = untraced(|| {
            let top = snapshot.top(n, key_type);
            let mut b = String::from(
                "<table><thead><tr><th>#</th><th>site</th><th>size</th><th>count</th>\
                 <th>average</th><th>source line</th></tr></thead><tbody>\n",
            );
            for (i, s) in top.entries().iter().enumerate() {
                // As tracemalloc's `average=`: the mean, unrounded.
                let avg = if s.count > 0 {
                    format_size(s.size as f64 / s.count as f64, false)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    b,
                    "<tr><td class=\"n\">{}</td><td class=\"site\">{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{avg}</td><td class=\"src\">{}</td></tr>",
                    i + 1,
                    site_of(&s.traceback, key_type),
                    size(s.size as u64),
                    s.count,
                    source_of(&s.traceback, key_type)
                );
            }
            let (others, other_bytes) = top.other();
            if others > 0 {
                let _ = writeln!(
                    b,
                    "<tr class=\"sum\"><td></td><td>{others} other</td><td class=\"n\">{}</td>\
                     <td></td><td></td><td></td></tr>",
                    size(other_bytes as u64)
                );
            }
            let _ = writeln!(
                b,
                "<tr class=\"sum\"><td></td><td>total</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td></td><td></td></tr></tbody></table>",
                size(top.total() as u64),
                snapshot.traces().len()
            );
            b
        });
        self.push(title, body)
    }

    /// A section with the `n` biggest changes from `old` to `new`
    /// ([`Snapshot::compare_to`]), as [`Snapshot::top_diff`] prints them:
    /// size now and its change, count now and its change, the source line;
    /// growth in red, shrinkage in green.
    pub fn snapshot_diff(
        self,
        title: &str,
        new: &Snapshot,
        old: &Snapshot,
        n: usize,
        key_type: KeyType,
    ) -> Report {
        let body = untraced(|| {
            let diff = new.top_diff(old, n, key_type);
            let mut b = String::from(
                "<table><thead><tr><th>#</th><th>site</th><th>size</th><th>change</th>\
                 <th>count</th><th>change</th><th>source line</th></tr></thead><tbody>\n",
            );
            for (i, d) in diff.entries().iter().enumerate() {
                let _ = writeln!(
                    b,
                    "<tr><td class=\"n\">{}</td><td class=\"site\">{}</td><td class=\"n\">{}</td>\
                     <td class=\"n{}\">{}</td><td class=\"n\">{}</td><td class=\"n{}\">{:+}</td>\
                     <td class=\"src\">{}</td></tr>",
                    i + 1,
                    site_of(&d.traceback, key_type),
                    size(d.size as u64),
                    class_of(d.size_diff),
                    signed(d.size_diff),
                    d.count,
                    class_of(d.count_diff),
                    d.count_diff,
                    source_of(&d.traceback, key_type)
                );
            }
            let (total, change) = diff.total();
            let _ = writeln!(
                b,
                "<tr class=\"sum\"><td></td><td>total</td><td class=\"n\">{}</td>\
                 <td class=\"n{}\">{}</td><td></td><td></td><td></td></tr></tbody></table>",
                size(total as u64),
                class_of(change),
                signed(change)
            );
            b
        });
        self.push(title, body)
    }

    /// A section with [`Snapshot::duplicate_instances`]' findings: per
    /// instance, the copies, the blocks and bytes of each, what sharing one
    /// would save, and the lines that loaded each copy (the user's) and
    /// that allocated its blocks; the blocks the content could not tell;
    /// or the sentence that there is none.
    pub fn duplicates(self, title: &str, duplicates: &DuplicateInstances) -> Report {
        let body = untraced(|| {
            let text = |f: &Frame| escape(&format!("{f} ({})", f.function()));
            let mut b = String::new();
            if duplicates.instances().is_empty() {
                b.push_str("<p>No duplicated instances: no content is held twice.</p>\n");
            } else {
                let _ = writeln!(
                    b,
                    "<p>The same content held more than once; sharing one copy of each \
                     would save {} in all.</p>\n<table><thead><tr><th>copies</th>\
                     <th>blocks each</th><th>bytes each</th><th>sharing saves</th>\
                     <th>loaded at</th><th>allocated at</th></tr></thead><tbody>",
                    size(duplicates.saved_bytes() as u64)
                );
                for i in duplicates.instances() {
                    let loaded: Vec<String> = i.callers().iter().map(text).collect();
                    let at: Vec<String> = i.allocated_at().iter().take(3).map(text).collect();
                    let _ = writeln!(
                        b,
                        "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                         <td class=\"n up\">{}</td><td class=\"site\">{}</td><td class=\"site\">{}{}</td></tr>",
                        i.copies(),
                        i.blocks(),
                        size(i.bytes() as u64),
                        size(i.saved_bytes() as u64),
                        loaded.join("<br/>"),
                        at.join("<br/>"),
                        if i.allocated_at().len() > 3 { "<br/>…" } else { "" }
                    );
                }
                b.push_str("</tbody></table>\n");
            }
            let (n, bytes) = duplicates.undecidable();
            if n > 0 {
                let _ = writeln!(
                    b,
                    "<p>Undecidable: {n} blocks ({}) hold one value repeated (zeros, or a fill): \
                     their content cannot tell copies from buffers not yet written.</p>",
                    size(bytes as u64)
                );
            }
            b
        });
        self.push(title, body)
    }

    /// A section with `text` as it is, in a preformatted block (escaped):
    /// for reports printed as text, such as `#[tracealloc::profile]`'s
    /// line tables or [`Snapshot::top`]'s output.
    pub fn text(self, title: &str, text: &str) -> Report {
        let body = untraced(|| format!("<pre>{}</pre>\n", escape(text)));
        self.push(title, body)
    }

    /// A section with an SVG drawn inline (a flame graph from
    /// `Profile::flamegraph`, a [`Timeline::svg`], ...), sanitized so that
    /// the page stays self-contained and script-free:
    ///
    /// - only text that starts with `<?xml`, `<!DOCTYPE svg` or `<svg`
    ///   (after white space) is taken, and only up to its root element's
    ///   end; the XML prolog, document type, comments and processing
    ///   instructions are dropped (a document type with an internal subset,
    ///   which can define entities, refuses the SVG);
    /// - `<script>` and `<foreignObject>` elements are dropped with their
    ///   content, and so are event attributes (`on...`), `xmlns`
    ///   declarations (inline SVG in HTML needs none), links other than to
    ///   a fragment of the page (`href="#id"`) and any attribute whose
    ///   value holds `://` or `javascript:`;
    /// - a `<style>` element that imports or refers to a URL is dropped;
    ///   the others have each selector scoped to this section's figure, so
    ///   they style this SVG only;
    /// - text and attribute values are re-escaped.
    ///
    /// Markup that does not parse (a tag left open, an end tag that
    /// matches none) refuses the SVG: the section then says so in place of
    /// the figure. Interactive flame graphs lose their script (zoom and
    /// search); their tooltips (`<title>`) still work.
    pub fn svg(self, title: &str, svg: &str) -> Report {
        let id = format!("fig{}", self.sections.len() + 1);
        let body = untraced(|| match sanitize(svg, &id) {
            Ok(clean) => format!("<div class=\"figure\" id=\"{id}\">\n{clean}</div>\n"),
            Err(why) => format!(
                "<p class=\"note\">The SVG was not embedded: {}.</p>\n",
                escape(&why)
            ),
        });
        self.push(title, body)
    }

    /// The page.
    pub fn to_html(&self) -> String {
        untraced(|| {
            let mut h = String::new();
            let _ = write!(
                h,
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
                 <title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
                 <p class=\"meta\">Written by tracealloc {}. Sizes as tracemalloc writes \
                 them (KiB = 1024 bytes).</p>\n",
                env!("CARGO_PKG_VERSION"),
                t = escape(&self.title),
            );
            if !self.sections.is_empty() {
                h.push_str("<nav><ol>\n");
                for (i, s) in self.sections.iter().enumerate() {
                    let _ = writeln!(
                        h,
                        "<li><a href=\"#s{}\">{}</a></li>",
                        i + 1,
                        escape(&s.title)
                    );
                }
                h.push_str("</ol></nav>\n");
            }
            for (i, s) in self.sections.iter().enumerate() {
                let _ = write!(
                    h,
                    "<section id=\"s{}\">\n<h2>{}</h2>\n{}</section>\n",
                    i + 1,
                    escape(&s.title),
                    s.body
                );
            }
            h.push_str("</body>\n</html>\n");
            h
        })
    }

    /// Writes [`to_html`](Self::to_html) to `path` through a temporary
    /// file renamed over it, as [`Snapshot::dump`] writes.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        untraced(|| {
            let html = self.to_html();
            write_atomic(path.as_ref(), "write", "report", |w| {
                w.write_all(html.as_bytes())
            })
        })
    }
}

/// Draws our own SVG inline (sanitized all the same: it drops the `xmlns`).
fn figure(b: &mut String, svg: &str) {
    match sanitize(svg, "") {
        Ok(clean) => {
            let _ = write!(b, "<div class=\"figure\">\n{clean}</div>\n");
        }
        Err(why) => {
            let _ = writeln!(
                b,
                "<p class=\"note\">The chart failed: {}.</p>",
                escape(&why)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The SVG sanitizer: a small XML tokenizer that re-writes what it keeps.

/// Elements dropped with everything inside them.
const DROPPED: &[&str] = &["script", "foreignobject", "iframe", "object", "embed"];

/// `svg` made safe to inline (see [`Report::svg`]); `scope` is the id of the
/// element around it, for its stylesheets ("" drops stylesheets).
fn sanitize(svg: &str, scope: &str) -> Result<String, String> {
    let text = svg.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if !(text.starts_with("<?xml") || text.starts_with("<svg") || text.starts_with("<!DOCTYPE svg"))
    {
        return Err("it does not start with <?xml, <!DOCTYPE svg or <svg".into());
    }
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<String> = Vec::new();
    // Depth inside a dropped element (0: keeping).
    let mut dropping = 0usize;
    let mut in_style: Option<String> = None;
    let mut rest = text;
    let mut seen_root = false;
    while !rest.is_empty() {
        if seen_root && stack.is_empty() {
            break; // what follows the root element is not drawn
        }
        if !rest.starts_with('<') {
            let end = rest.find('<').unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            if stack.is_empty() {
                if chunk.trim().is_empty() {
                    continue;
                }
                return Err("text outside the root element".into());
            }
            if dropping == 0 {
                match &mut in_style {
                    Some(css) => css.push_str(&unescape(chunk)),
                    None => out.push_str(&escape(&unescape(chunk))),
                }
            }
            continue;
        }
        if let Some(tail) = rest.strip_prefix("<!--") {
            let end = tail.find("-->").ok_or("a comment is never closed")?;
            rest = &tail[end + 3..];
            continue;
        }
        if let Some(tail) = rest.strip_prefix("<![CDATA[") {
            let end = tail.find("]]>").ok_or("a CDATA section is never closed")?;
            if stack.is_empty() {
                return Err("CDATA outside the root element".into());
            }
            if dropping == 0 {
                match &mut in_style {
                    Some(css) => css.push_str(&tail[..end]),
                    None => out.push_str(&escape(&tail[..end])),
                }
            }
            rest = &tail[end + 3..];
            continue;
        }
        if let Some(tail) = rest.strip_prefix("<?") {
            let end = tail
                .find("?>")
                .ok_or("a processing instruction is never closed")?;
            rest = &tail[end + 2..];
            continue;
        }
        if let Some(tail) = rest.strip_prefix("<!") {
            let end = tail.find('>').ok_or("a declaration is never closed")?;
            if tail[..end].contains('[') {
                return Err("a document type with an internal subset".into());
            }
            if seen_root {
                return Err("a declaration inside the document".into());
            }
            rest = &tail[end + 1..];
            continue;
        }
        if let Some(tail) = rest.strip_prefix("</") {
            let end = tail.find('>').ok_or("an end tag is never closed")?;
            let name = tail[..end].trim();
            rest = &tail[end + 1..];
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Err(format!("</{name}> closes <{open}>")),
                None => return Err(format!("</{name}> with nothing open")),
            }
            if dropping > 0 {
                dropping -= 1;
                continue;
            }
            if name.eq_ignore_ascii_case("style") {
                if let Some(css) = in_style.take() {
                    if let Some(scoped) = scope_css(&css, scope) {
                        let _ = write!(out, "<style>{}</style>", escape(&scoped));
                    }
                }
                continue;
            }
            let _ = write!(out, "</{name}>");
            continue;
        }
        // A start tag.
        let (tag, tail) = start_tag(&rest[1..])?;
        rest = tail;
        if stack.is_empty() {
            if seen_root || tag.name != "svg" {
                return Err(format!("the root element is <{}>, not <svg>", tag.name));
            }
            seen_root = true;
        }
        let lower = tag.name.to_ascii_lowercase();
        if dropping > 0 || DROPPED.contains(&lower.as_str()) || in_style.is_some() {
            if !tag.empty {
                stack.push(tag.name.to_string());
                dropping += 1;
            }
            continue;
        }
        if lower == "style" {
            if !tag.empty {
                stack.push(tag.name.to_string());
                in_style = Some(String::new());
            }
            continue;
        }
        out.push('<');
        out.push_str(tag.name);
        for (name, value) in &tag.attrs {
            if keep_attribute(name, value) {
                let _ = write!(out, " {name}=\"{}\"", escape(value));
            }
        }
        out.push_str(if tag.empty { "/>" } else { ">" });
        if !tag.empty {
            stack.push(tag.name.to_string());
        }
    }
    if !seen_root {
        return Err("no <svg> element".into());
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is never closed"));
    }
    out.push('\n');
    Ok(out)
}

struct Tag<'a> {
    name: &'a str,
    /// Values unescaped.
    attrs: Vec<(&'a str, String)>,
    empty: bool,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
}

/// Parses a start tag after its `<`; returns it and the text after its `>`.
fn start_tag(s: &str) -> Result<(Tag<'_>, &str), String> {
    let name_end = s
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .ok_or("a tag is never closed")?;
    let name = &s[..name_end];
    if !is_name(name) {
        return Err(format!("a bad tag name {:?}", truncate(name)));
    }
    let mut rest = &s[name_end..];
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(tail) = rest.strip_prefix("/>") {
            return Ok((
                Tag {
                    name,
                    attrs,
                    empty: true,
                },
                tail,
            ));
        }
        if let Some(tail) = rest.strip_prefix('>') {
            return Ok((
                Tag {
                    name,
                    attrs,
                    empty: false,
                },
                tail,
            ));
        }
        let eq = rest.find('=').ok_or("an attribute without a value")?;
        let attr = rest[..eq].trim();
        if !is_name(attr) {
            return Err(format!("a bad attribute name {:?}", truncate(attr)));
        }
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|&q| q == '"' || q == '\'')
            .ok_or("an unquoted attribute value")?;
        let close = after[1..]
            .find(quote)
            .ok_or("an attribute value is never closed")?;
        let value = &after[1..1 + close];
        if value.contains('<') {
            return Err("a < in an attribute value".into());
        }
        if attrs.iter().any(|(n, _)| *n == attr) {
            return Err(format!("attribute {attr} given twice"));
        }
        attrs.push((attr, unescape(value)));
        rest = &after[close + 2..];
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Whether an attribute stays (see [`Report::svg`]).
fn keep_attribute(name: &str, value: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let v: String = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if n.starts_with("on") || n == "xmlns" || n.starts_with("xmlns:") {
        return false;
    }
    if (n == "href" || n.ends_with(":href") || n == "src") && !v.starts_with('#') {
        return false;
    }
    !(v.contains("://") || v.contains("javascript:"))
}

/// The XML entities of `s` decoded (the five named ones and numeric ones;
/// anything else is left as it is, to be escaped again).
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let decoded = tail.find(';').filter(|&e| e <= 10).and_then(|e| {
            let name = &tail[..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A stylesheet with each rule's selectors prefixed by `#scope `, or `None`
/// to drop it: when it imports or refers to anything by URL, holds an
/// at-rule (`@import`, `@font-face`, `@media`, ...: not worth scoping), or
/// there is no scope to confine it to.
fn scope_css(css: &str, scope: &str) -> Option<String> {
    let lower = css.to_ascii_lowercase();
    if scope.is_empty() || lower.contains("://") || lower.contains('@') || lower.contains("url(") {
        return None;
    }
    let mut out = String::new();
    let mut rest = css;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}')?;
        let selectors = rest[..open].trim();
        let body = &rest[open + 1..close];
        if body.contains('{') {
            return None;
        }
        let scoped: Vec<String> = selectors
            .split(',')
            .map(|s| format!("#{scope} {}", s.trim()))
            .collect();
        let _ = writeln!(out, "{} {{{}}}", scoped.join(", "), body);
        rest = &rest[close + 1..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_urls_and_events_go() {
        let svg = "<?xml version=\"1.0\"?>\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \
                   \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n\
                   <svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"init(evt)\" width=\"10\">\
                   <!-- see https://example.com --><script><![CDATA[alert(1 < 2)]]></script>\
                   <style>text { fill: red } #a > b, .c { x: 1 }</style>\
                   <a href=\"https://x\"><rect fill=\"url(#g)\" x=\"1\"/></a>\
                   <text>a &lt; b &amp; c</text></svg>\n<!-- trailing -->";
        let clean = sanitize(svg, "fig1").unwrap();
        assert_eq!(
            clean,
            "<svg width=\"10\"><style>#fig1 text { fill: red }\n#fig1 #a &gt; b, #fig1 .c \
             { x: 1 }\n</style><a><rect fill=\"url(#g)\" x=\"1\"/></a>\
             <text>a &lt; b &amp; c</text></svg>\n"
        );
    }

    #[test]
    fn bad_svgs_are_refused() {
        for bad in [
            "<html></html>",
            "hello",
            "<svg><g></svg>",
            "<svg><g>",
            "<svg x=1></svg>",
            "<!DOCTYPE svg [<!ENTITY a \"b\">]><svg></svg>",
            "<svg></svg><svg></svg>x",
        ] {
            if bad == "<svg></svg><svg></svg>x" {
                // What follows the root is not drawn.
                assert_eq!(sanitize(bad, "f").unwrap(), "<svg></svg>\n");
                continue;
            }
            assert!(sanitize(bad, "f").is_err(), "{bad}");
        }
    }

    #[test]
    fn entities_round_trip() {
        assert_eq!(unescape("a&amp;b&#60;&#x3e;&nbsp;&"), "a&b<>&nbsp;&");
        assert_eq!(escape(&unescape("&nbsp;")), "&amp;nbsp;");
    }
}
